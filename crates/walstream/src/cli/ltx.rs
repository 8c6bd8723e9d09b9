//! `walstream ltx`: lists a replica's LTX files like `litestream ltx`.
use std::path::PathBuf;

use anyhow::Context;

use crate::storage::{self, LtxFileInfo, SNAPSHOT_LEVEL};

use super::{fmt_time, tabwrite, Source};

/// `ltx [-level N|all] [-json] DB_PATH|REPLICA_URL`
#[derive(Debug, Clone, clap::Args)]
pub struct LtxArgs {
    /// Config file.
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// Level to list, 0-9 or "all".
    #[arg(long = "level", value_name = "LEVEL", default_value = "0")]
    pub level: String,
    /// Print JSON instead of a table.
    #[arg(long = "json")]
    pub json: bool,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// DB_PATH or REPLICA_URL (or a replica directory).
    pub path: String,
}

/// One row of `-json` output, with Litestream's keys.
#[derive(serde::Serialize)]
struct JsonFile {
    level: u8,
    min_txid: String,
    max_txid: String,
    size: u64,
    timestamp: String,
}

/// Parses `-level`: a number 0..=9 or `all`.
pub fn parse_level(s: &str) -> anyhow::Result<Vec<u8>> {
    if s == "all" {
        return Ok((0..=SNAPSHOT_LEVEL).collect());
    }
    match s.parse::<u8>() {
        Ok(n) if n <= SNAPSHOT_LEVEL => Ok(vec![n]),
        _ => anyhow::bail!(
            "invalid value {s:?} for flag -level: level must be between 0 and 9 or \"all\""
        ),
    }
}

/// Runs `ltx`.
pub async fn run(args: LtxArgs) -> anyhow::Result<()> {
    let levels = parse_level(&args.level)?;
    let store = match Source::parse(&args.path) {
        // A database path: its replica as the config file lists it.
        Source::Database(db) => {
            let found =
                super::restore::db_from_config(&db, args.config.as_deref(), args.no_expand_env)?;
            found
                .replica
                .open_store()
                .with_context(|| format!("open the replica of {}", found.path.display()))?
        }
        source => {
            let url = source.replica_url(args.config.as_deref())?;
            storage::open_url(url)
                .with_context(|| format!("open replica {}", crate::paths::redact_url(url)))?
        }
    };
    let files = storage::list_levels(store.as_ref(), levels, None)
        .await
        .map_err(|e| {
            let level = e.level;
            anyhow::Error::new(e.source)
                .context(format!("list level {level} of {}", store.describe()))
        })?;
    print!("{}", render(&files, args.json)?);
    Ok(())
}

/// The table (or JSON) for `files`, in Litestream's layout.
pub fn render(files: &[LtxFileInfo], json: bool) -> anyhow::Result<String> {
    if json {
        let rows: Vec<JsonFile> = files
            .iter()
            .map(|f| JsonFile {
                level: f.level,
                min_txid: f.min_txid.to_string(),
                max_txid: f.max_txid.to_string(),
                size: f.size,
                timestamp: fmt_time(f.created_at),
            })
            .collect();
        return Ok(format!("{}\n", serde_json::to_string_pretty(&rows)?));
    }
    let mut rows = vec![["level", "min_txid", "max_txid", "size", "created"]
        .map(String::from)
        .to_vec()];
    for f in files {
        rows.push(vec![
            f.level.to_string(),
            f.min_txid.to_string(),
            f.max_txid.to_string(),
            f.size.to_string(),
            fmt_time(f.created_at),
        ]);
    }
    Ok(tabwrite(&rows))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::{Duration, UNIX_EPOCH};

    use ltx::TxId;

    use super::*;

    fn file() -> LtxFileInfo {
        LtxFileInfo {
            level: 0,
            min_txid: TxId(1),
            max_txid: TxId(1),
            size: 575,
            created_at: UNIX_EPOCH + Duration::from_secs(1_577_836_800),
        }
    }

    #[test]
    fn render_table_matches_litestream() {
        assert_eq!(
            render(&[file()], false).unwrap(),
            "level  min_txid          max_txid          size  created\n\
             0      0000000000000001  0000000000000001  575   2020-01-01T00:00:00Z\n"
        );
        assert_eq!(
            render(&[], false).unwrap(),
            "level  min_txid  max_txid  size  created\n"
        );
    }

    #[test]
    fn render_json_matches_litestream() {
        assert_eq!(render(&[], true).unwrap(), "[]\n");
        assert_eq!(
            render(&[file()], true).unwrap(),
            "[\n  {\n    \"level\": 0,\n    \"min_txid\": \"0000000000000001\",\n    \"max_txid\": \"0000000000000001\",\n    \"size\": 575,\n    \"timestamp\": \"2020-01-01T00:00:00Z\"\n  }\n]\n"
        );
    }

    #[test]
    fn parse_level_accepts_numbers_and_all() {
        assert_eq!(parse_level("0").unwrap(), vec![0]);
        assert_eq!(parse_level("all").unwrap().len(), 10);
        assert!(parse_level("10").is_err());
        assert!(parse_level("x").is_err());
    }
}
