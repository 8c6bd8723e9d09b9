//! `walstream replicate`.
use std::path::{Path, PathBuf};

use anyhow::Context;
use tracing::{info, warn};

use crate::config::{Config, ReplicaConfig};
use crate::db::DbOptions;
use crate::server::once::OnceOptions;
use crate::server::{self, DbSpec, Server, ServerOptions};

/// `replicate [-config FILE] [-exec CMD] [-once [-force-snapshot] [-enforce-retention]] [DB_PATH REPLICA_URL]`
#[derive(Debug, Clone, clap::Args)]
pub struct ReplicateArgs {
    /// Config file (default: $LITESTREAM_CONFIG, /etc/litestream.yml, /etc/walstream.yml).
    #[arg(long = "config")]
    pub config: Option<PathBuf>,
    /// Run this command as a child and stop replicating when it exits.
    #[arg(long = "exec")]
    pub exec: Option<String>,
    /// Sync once and exit.
    #[arg(long = "once")]
    pub once: bool,
    /// With -once: take a snapshot.
    #[arg(long = "force-snapshot")]
    pub force_snapshot: bool,
    /// With -once: apply retention.
    #[arg(long = "enforce-retention")]
    pub enforce_retention: bool,
    /// Restore the database from the replica first if it does not exist.
    #[arg(long = "restore-if-db-not-exists")]
    pub restore_if_db_not_exists: bool,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// DB_PATH REPLICA_URL (instead of a config file).
    #[arg(num_args = 0..=2)]
    pub args: Vec<String>,
}

/// Finds the config file: `-config`, `$LITESTREAM_CONFIG`, `/etc/litestream.yml`,
/// `/etc/walstream.yml`. A path given by the flag or the variable is returned even if it does not
/// exist (loading it then says so); the two defaults only when they exist.
pub fn find_config(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("LITESTREAM_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    ["/etc/litestream.yml", "/etc/walstream.yml"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Loads a config file and logs its warnings (unknown keys, keys walstream does not act on).
pub fn load_config(path: &Path, no_expand_env: bool) -> anyhow::Result<Config> {
    let loaded = Config::load(path, !no_expand_env)?;
    for w in &loaded.warnings {
        warn!("{w}");
    }
    Ok(loaded.config)
}

/// The log level the config file asks for (`logging.level`), when neither `-log-level` nor
/// `$LOG_LEVEL` is given. A config that does not load gives `None`; `replicate` reports why.
pub fn config_log_level(args: &ReplicateArgs) -> Option<String> {
    if args.log_level.is_some()
        || std::env::var_os("LOG_LEVEL").is_some_and(|v| !v.is_empty())
        || args.args.len() == 2
    {
        return None;
    }
    let path = find_config(args.config.as_deref())?;
    let loaded = Config::load(&path, !args.no_expand_env).ok()?;
    loaded.config.log_level().map(str::to_string)
}

/// One database to replicate.
#[derive(Debug, Clone)]
pub struct Target {
    /// Database path.
    pub db: PathBuf,
    /// The replica.
    pub replica: ReplicaConfig,
    /// Options.
    pub opts: DbOptions,
}

/// The databases to replicate and the command to run (`-exec`, else the config's `exec`).
fn targets(args: &ReplicateArgs) -> anyhow::Result<(Vec<Target>, Option<String>)> {
    match args.args.as_slice() {
        [db, url] => {
            if args.config.is_some() {
                anyhow::bail!("cannot specify a replica URL and -config at the same time");
            }
            Ok((
                vec![Target {
                    db: PathBuf::from(db),
                    replica: ReplicaConfig {
                        url: Some(url.clone()),
                        ..Default::default()
                    },
                    opts: DbOptions::default(),
                }],
                args.exec.clone(),
            ))
        }
        [one] => anyhow::bail!("must specify a replica URL after the database path {one:?}"),
        _ => {
            let Some(path) = find_config(args.config.as_deref()) else {
                return Ok((embedded_default()?, args.exec.clone()));
            };
            let cfg = load_config(&path, args.no_expand_env)?;
            if cfg.dbs.is_empty() {
                anyhow::bail!("config {}: no databases specified", path.display());
            }
            let targets: Vec<Target> = cfg
                .databases()?
                .into_iter()
                .map(|d| Target {
                    db: d.path,
                    replica: d.replica,
                    opts: DbOptions {
                        history: cfg.history(),
                        ..d.options
                    },
                })
                .collect();
            if targets.is_empty() {
                warn!(
                    "config {}: no databases found yet (directory entries are watched for none)",
                    path.display()
                );
            }
            Ok((targets, args.exec.clone().or(cfg.exec)))
        }
    }
}

/// The embedded default, used when neither DB_PATH REPLICA_URL nor a config file is given:
/// `./demo.db` (created with a small table if missing) replicated to the directory `./backup`.
fn embedded_default() -> anyhow::Result<Vec<Target>> {
    let db = PathBuf::from("demo.db");
    if !db.exists() {
        let c =
            rusqlite::Connection::open(&db).with_context(|| format!("create {}", db.display()))?;
        c.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL, at TEXT DEFAULT CURRENT_TIMESTAMP);
             INSERT INTO notes(body) VALUES ('hello from walstream'), ('edit demo.db and watch ./backup');",
        )
        .with_context(|| format!("create demo database {}", db.display()))?;
        info!("created the demo database demo.db");
    }
    info!("no DB_PATH/REPLICA_URL and no config file found: using the embedded default, demo.db -> ./backup");
    Ok(vec![Target {
        db,
        replica: ReplicaConfig {
            path: Some("backup".into()),
            ..Default::default()
        },
        opts: DbOptions::default(),
    }])
}

fn spec(t: Target) -> anyhow::Result<DbSpec> {
    let store = crate::config::open_replica(&t.replica)
        .with_context(|| format!("replica for {}", t.db.display()))?;
    Ok(DbSpec {
        path: t.db,
        store,
        lease: t.replica.lease_options(),
        opts: t.opts,
    })
}

/// Runs replication until SIGINT/SIGTERM (or once, or until the -exec child exits).
pub async fn run(args: ReplicateArgs) -> anyhow::Result<()> {
    if let (Some(before), Some(after)) = (server::nofile_limit(), server::raise_nofile_limit()) {
        if after > before {
            tracing::debug!(before, after, "raised the open-file limit");
        }
    }
    let (targets, exec) = targets(&args)?;
    if args.once {
        let opts = OnceOptions {
            force_snapshot: args.force_snapshot,
            enforce_retention: args.enforce_retention,
        };
        for t in targets {
            server::once::replicate_once(spec(t)?, opts).await?;
        }
        return Ok(());
    }
    let specs = targets
        .into_iter()
        .map(spec)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let server = Server::new(ServerOptions::default());
    for s in specs {
        server.add(s)?;
    }
    let mut child = match &exec {
        Some(cmd) => Some(
            tokio::process::Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .spawn()
                .with_context(|| format!("-exec {cmd:?}"))?,
        ),
        None => None,
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut fatal = None;
    let code = tokio::select! {
        _ = tokio::signal::ctrl_c() => { info!("signal received, walstream shutting down"); None }
        _ = term.recv() => { info!("signal received, walstream shutting down"); None }
        e = server.next_fatal() => { fatal = e; None }
        st = async { match child.as_mut() { Some(c) => c.wait().await.ok(), None => std::future::pending().await } } => {
            info!("subprocess exited, walstream shutting down");
            st.and_then(|s| s.code())
        }
    };
    server.shutdown().await;
    if let Some(e) = fatal {
        return Err(e.into());
    }
    info!("walstream shut down");
    if let Some(c) = code.filter(|c| *c != 0) {
        std::process::exit(c);
    }
    Ok(())
}
