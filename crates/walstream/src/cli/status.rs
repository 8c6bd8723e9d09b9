//! `walstream status [-json] [DB_PATH]`: per database, its local TXID, the replica's TXID, the
//! lag (age of the oldest local change not yet on the replica), the backlog (local L0 files not
//! yet uploaded) and the last error.
//!
//! When a `replicate` with its control socket enabled answers (`-socket`, else the config's
//! `socket:`), it is asked (`GET /status`). Otherwise the meta directories and replicas of the
//! config's databases are read.
//!
//! `walstream reset [-dry-run] DB_PATH`: clears a database's local state (the LTX files of its
//! meta directory), as Litestream's `reset` does; the next replication takes a fresh snapshot.
//! It refuses while a `replicate` holds the database.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::control::{self, hex_txid, http, DbReport, StatusReport};
use crate::meta::MetaDir;

use super::replicate::{find_config, load_config};
use super::tabwrite;

/// `status [-config PATH] [-no-expand-env] [-json] [-socket PATH] [DB_PATH]`
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Config file (default: $LITESTREAM_CONFIG, /etc/litestream.yml, /etc/walstream.yml).
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// Print JSON instead of a table.
    #[arg(long = "json")]
    pub json: bool,
    /// Ask the `replicate` listening on this control socket (default: the config's `socket:`).
    #[arg(long = "socket")]
    pub socket: Option<PathBuf>,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// Only this database.
    pub path: Option<String>,
}

/// `reset [-config PATH] [-no-expand-env] [-dry-run] DB_PATH`
#[derive(Debug, Clone, clap::Args)]
pub struct ResetArgs {
    /// Config file (default: $LITESTREAM_CONFIG, /etc/litestream.yml, /etc/walstream.yml).
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// Print the local files that would be removed, remove nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// DB_PATH.
    pub path: Option<String>,
}

fn load(config: Option<&Path>, no_expand_env: bool) -> anyhow::Result<Option<Config>> {
    match find_config(config) {
        Some(p) => load_config(&p, no_expand_env).map(Some),
        None => Ok(None),
    }
}

async fn from_socket(socket: &Path) -> Option<StatusReport> {
    let (code, body) = http::request(socket, "GET", "/status", None, Duration::from_secs(10))
        .await
        .ok()?;
    if code != 200 {
        tracing::debug!(socket = %socket.display(), code, "the control socket has no /status");
        return None;
    }
    serde_json::from_slice(&body).ok()
}

async fn offline(cfg: &Config) -> anyhow::Result<StatusReport> {
    let mut databases = Vec::new();
    for d in cfg.databases()? {
        let meta = MetaDir::for_db(&d.path, d.options.meta_path.as_deref());
        let mut last_error = None;
        let remote = match crate::config::open_replica(&d.replica) {
            Ok(store) => {
                match tokio::time::timeout(
                    Duration::from_secs(15),
                    crate::history::list_all(&store),
                )
                .await
                {
                    Ok(Ok(files)) => files.iter().map(|f| f.max_txid).max(),
                    Ok(Err(e)) => {
                        last_error = Some(e.to_string());
                        None
                    }
                    Err(_) => {
                        last_error = Some(format!(
                            "replica {} did not answer within 15s",
                            store.describe()
                        ));
                        None
                    }
                }
            }
            Err(e) => {
                last_error = Some(e.to_string());
                None
            }
        };
        let b = control::backlog(&meta, remote);
        let status = if !d.path.exists() {
            "no database"
        } else if crate::server::meta_dir_in_use(meta.root()) {
            "replicating"
        } else {
            "not replicating"
        };
        databases.push(DbReport {
            database: d.path.display().to_string(),
            status: status.into(),
            local_txid: b.local_txid.map(hex_txid),
            replica_txid: remote.map(hex_txid),
            lag_seconds: last_error.is_none().then(|| b.lag_seconds()),
            backlog_files: b.files,
            backlog_bytes: b.bytes,
            last_error,
        });
    }
    Ok(StatusReport { databases })
}

/// Runs `status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let cfg = load(args.config.as_deref(), args.no_expand_env)?;
    let socket = args
        .socket
        .clone()
        .or_else(|| cfg.as_ref().and_then(|c| c.control_socket()).map(|s| s.0));
    let mut report = None;
    if let Some(s) = &socket {
        report = from_socket(s).await;
        if report.is_none() && args.socket.is_some() {
            bail!(
                "no walstream replicate answered on control socket {}",
                s.display()
            );
        }
    }
    let mut report = match (report, &cfg) {
        (Some(r), _) => r,
        (None, Some(c)) => offline(c).await?,
        (None, None) => bail!(
            "config file not found: looked in {} (no -config flag, $LITESTREAM_CONFIG not set), and no -socket given",
            super::replicate::DEFAULT_CONFIGS.join(", ")
        ),
    };
    if let Some(p) = &args.path {
        let want = crate::config::expand_path(p).map_err(|e| anyhow::anyhow!("{p}: {e}"))?;
        report
            .databases
            .retain(|d| Path::new(&d.database) == want.as_path());
        if report.databases.is_empty() {
            bail!("database not found: {}", want.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.databases)?);
        return Ok(());
    }
    let mut rows = vec![[
        "database",
        "status",
        "local txid",
        "replica txid",
        "lag",
        "backlog",
        "last error",
    ]
    .map(String::from)
    .to_vec()];
    for d in &report.databases {
        rows.push(vec![
            d.database.clone(),
            d.status.clone(),
            d.local_txid.clone().unwrap_or_else(|| "-".into()),
            d.replica_txid.clone().unwrap_or_else(|| "-".into()),
            d.lag_seconds
                .map(|l| format!("{l:.1}s"))
                .unwrap_or_else(|| "-".into()),
            format!("{} files, {} B", d.backlog_files, d.backlog_bytes),
            d.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    print!("{}", tabwrite(&rows));
    Ok(())
}

/// Runs `reset`.
pub async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let Some(p) = args.path.as_deref().filter(|p| !p.is_empty()) else {
        bail!("database path required");
    };
    let db = crate::config::expand_path(p).map_err(|e| anyhow::anyhow!("{p}: {e}"))?;
    let meta_path = match load(args.config.as_deref(), args.no_expand_env)? {
        Some(cfg) => match cfg.find_db(&db)? {
            Some(d) => d.options.meta_path,
            None => bail!(
                "database not found in config {}: {}",
                cfg.file.display(),
                db.display()
            ),
        },
        None => None,
    };
    let meta = MetaDir::for_db(&db, meta_path.as_deref());
    // The replicator's own flocks, held until the files are gone: a `replicate` starting
    // meanwhile waits for them before it touches the meta directory.
    let lock = crate::server::lock_meta_dir(meta.root())
        .with_context(|| format!("reset {}", db.display()))?;
    let Some(_lock) = lock else {
        bail!(
            "{} is being replicated by a running walstream (its meta directory {} is locked); stop \
             it (or `walstream stop {}` through the control socket) before resetting",
            db.display(),
            meta.root().display(),
            db.display()
        );
    };
    let ltx_dir = meta.root().join("ltx");
    let mut files = Vec::new();
    for level in 0..=9u8 {
        files.extend(
            meta.list(level)
                .with_context(|| format!("reset {}", db.display()))?
                .into_iter()
                .map(|f| f.path),
        );
    }
    if args.dry_run {
        println!("Dry run: local state would be reset for: {}", db.display());
        println!("Would remove: {}", ltx_dir.display());
        println!("Files that would be removed:");
        for f in &files {
            println!("  {}", f.display());
        }
        println!("No files were removed.");
        return Ok(());
    }
    println!("Resetting local state for: {}", db.display());
    if ltx_dir.exists() {
        println!("Removing: {}", ltx_dir.display());
        std::fs::remove_dir_all(&ltx_dir)
            .with_context(|| format!("reset {}: remove {}", db.display(), ltx_dir.display()))?;
    }
    println!("Reset complete. Next replication sync will create a fresh snapshot.");
    Ok(())
}
