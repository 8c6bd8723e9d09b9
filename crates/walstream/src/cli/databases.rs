//! `walstream databases`: the databases of the config file and the type of each one's replica,
//! in Litestream's layout (`path  replica`, or `-json`: `[{"path": ..., "replica": ...}]`).
//! Nothing but the path and the type is shown, so no secret can appear.
use std::path::PathBuf;

use tracing::warn;

use crate::config::Config;

use super::replicate::find_config;
use super::tabwrite;

/// `databases [-config PATH] [-no-expand-env] [-json]`
#[derive(Debug, Clone, clap::Args)]
pub struct DatabasesArgs {
    /// Config file (default: $LITESTREAM_CONFIG, /etc/litestream.yml, /etc/walstream.yml).
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// Print JSON instead of a table.
    #[arg(long = "json")]
    pub json: bool,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
}

/// One row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    /// The database path (or `<dir>/<pattern>` for a directory entry).
    pub path: String,
    /// The replica type.
    pub replica: String,
}

/// The rows for a config: one per `dbs[]` entry, in file order.
pub fn rows(config: &Config) -> Vec<Row> {
    config
        .dbs
        .iter()
        .map(|db| Row {
            path: db.display_path(),
            replica: db
                .the_replica()
                .map(|r| r.replica_type())
                .unwrap_or_default(),
        })
        .collect()
}

/// Formats rows as Litestream prints them.
pub fn render(rows: &[Row], json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(format!("{}\n", serde_json::to_string_pretty(rows)?));
    }
    let mut table = vec![vec!["path".to_string(), "replica".to_string()]];
    table.extend(rows.iter().map(|r| vec![r.path.clone(), r.replica.clone()]));
    Ok(tabwrite(&table))
}

/// Runs `databases`.
pub async fn run(args: DatabasesArgs) -> anyhow::Result<()> {
    let Some(path) = find_config(args.config.as_deref()) else {
        anyhow::bail!(
            "no config file: pass -config, set $LITESTREAM_CONFIG, or create /etc/litestream.yml \
             or /etc/walstream.yml"
        );
    };
    let loaded = Config::load(&path, !args.no_expand_env)?;
    for w in &loaded.warnings {
        warn!("{w}");
    }
    print!("{}", render(&rows(&loaded.config), args.json)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::path::Path;

    #[test]
    fn databases_render_matches_litestream() {
        let c = Config::parse(
            "dbs:\n  - path: /data/users.db\n    replica:\n      url: s3://b/p\n  - path: /data/events.db\n    replica:\n      path: /bk\n",
            Path::new("x.yml"),
        )
        .unwrap()
        .config;
        let r = rows(&c);
        assert_eq!(
            render(&r, false).unwrap(),
            "path             replica\n/data/users.db   s3\n/data/events.db  file\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render(&r, true).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!([
                {"path": "/data/users.db", "replica": "s3"},
                {"path": "/data/events.db", "replica": "file"}
            ])
        );
        assert_eq!(render(&[], false).unwrap(), "path  replica\n");
        assert_eq!(render(&[], true).unwrap(), "[]\n");
    }
}
