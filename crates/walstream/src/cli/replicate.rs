//! `walstream replicate`.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{error, info, warn};

use crate::config::{Config, ReplicaConfig};
use crate::db::{Db, DbOptions};
use crate::history;
use crate::replica::{self, Replica};
use crate::storage;
use crate::TxId;

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

/// Runs replication until SIGINT/SIGTERM (or once, or until the -exec child exits).
pub async fn run(args: ReplicateArgs) -> anyhow::Result<()> {
    let (targets, exec) = targets(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in targets {
        let store = crate::config::open_replica(&t.replica)
            .with_context(|| format!("replica for {}", t.db.display()))?;
        if !args.once {
            info!(db = %t.db.display(), replica = %store.describe(), "replicating");
        }
        tasks.push(start_db(t, store, stop.clone(), &args).await?);
    }
    if args.once {
        for h in tasks {
            h.await.context("replication task")??;
        }
        return Ok(());
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
    let code = tokio::select! {
        _ = tokio::signal::ctrl_c() => { info!("signal received, walstream shutting down"); None }
        _ = term.recv() => { info!("signal received, walstream shutting down"); None }
        st = async { match child.as_mut() { Some(c) => c.wait().await.ok(), None => std::future::pending().await } } => {
            info!("subprocess exited, walstream shutting down");
            st.and_then(|s| s.code())
        }
    };
    stop.store(true, Ordering::SeqCst);
    for h in tasks {
        if let Err(e) = h.await.context("replication task")? {
            error!("{e:#}");
        }
    }
    info!("walstream shut down");
    if let Some(c) = code.filter(|c| *c != 0) {
        std::process::exit(c);
    }
    Ok(())
}

/// Sets up one database and starts its loop (a thread for the WAL, a task for uploads).
async fn start_db(
    t: Target,
    store: storage::DynStore,
    stop: Arc<AtomicBool>,
    args: &ReplicateArgs,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let once = args.once;
    let (force_snapshot, enforce_retention) = (args.force_snapshot, args.enforce_retention);
    let history = t.opts.history.clone();
    // The lease comes first: the replica's position is read under it.
    let abs_db = std::path::absolute(&t.db).unwrap_or_else(|_| t.db.clone());
    let meta_dir = crate::meta::MetaDir::for_db(&abs_db, t.opts.meta_path.as_deref());
    let (store, lease) =
        crate::lease::start(store, &abs_db, meta_dir.root(), t.replica.lease_options()).await?;
    let remote = replica::remote_max_txid(&store).await?;
    let db_path = t.db.clone();
    let opts = t.opts.clone();
    let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Db> {
        let mut db = Db::new(&db_path, opts)?;
        let complete = replica::local_chain_complete(db.meta(), remote)?;
        db.reconcile(remote, complete)?;
        Ok(db)
    })
    .await??;
    // Uploads retry until the store is back (bounded for -once), and for at most
    // shutdown-sync-timeout once shutting down.
    let retry = if once {
        crate::storage::retry::RetryPolicy::restore()
    } else {
        crate::storage::retry::RetryPolicy::upload()
    };
    let upload_from = replica::remote_upload_position(&store).await?;
    let mut rep = Replica::new(store, db.meta().clone(), upload_from)
        .with_retry(retry)
        .with_stop(stop.clone(), replica::DEFAULT_SHUTDOWN_TIMEOUT);
    if once {
        return Ok(tokio::spawn(async move {
            let mut db = db;
            let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Db> {
                if force_snapshot {
                    db.request_l9_snapshot();
                }
                db.sync()?;
                db.shutdown();
                Ok(db)
            })
            .await??;
            let r = async {
                rep.sync().await?;
                drop(db);
                if enforce_retention {
                    let n = history::enforce_retention(
                        rep.store(),
                        &history.retention,
                        std::time::SystemTime::now(),
                    )
                    .await?;
                    info!(files = n, "retention enforced");
                }
                anyhow::Ok(())
            }
            .await;
            if let Some(l) = lease {
                l.finish().await;
            }
            r
        }));
    }
    let sync_interval = t.replica.sync_interval_or_default();
    let (tx, mut rx) = tokio::sync::watch::channel(None::<TxId>);
    let stop2 = stop.clone();
    // Compaction, scheduled snapshots and retention (crate::history) run beside the uploader.
    // Local L0 files are kept until L1 covers them, so compaction reads them instead of
    // downloading them again.
    let snapshot_due = Arc::new(AtomicBool::new(false));
    rep.set_prune_uploaded(false);
    let hist = tokio::spawn(history::run(
        rep.store().clone(),
        db.meta().clone(),
        history,
        snapshot_due.clone(),
        stop.clone(),
    ));
    let thread = std::thread::Builder::new()
        .name(format!("db:{}", t.db.display()))
        .spawn(move || db_loop(db, tx, stop2, snapshot_due))
        .context("spawn database thread")?;
    Ok(tokio::spawn(async move {
        let mut last_err: Option<String> = None;
        loop {
            let stopping = stop.load(Ordering::SeqCst);
            match rep.sync().await {
                Ok(_) => last_err = None,
                Err(e) => {
                    let msg = format!("{e:#}");
                    if last_err.as_deref() != Some(&msg) {
                        warn!("replica sync failed: {msg}");
                    }
                    last_err = Some(msg);
                }
            }
            if stopping && rx.has_changed().map(|c| !c).unwrap_or(true) {
                break;
            }
            tokio::select! {
                r = rx.changed() => { if r.is_err() { /* thread ended: one last pass */ stop.store(true, Ordering::SeqCst); } }
                _ = tokio::time::sleep(sync_interval) => {}
            }
        }
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        let r = rep.sync().await;
        let _ = hist.await;
        if let Some(l) = lease {
            l.finish().await;
        }
        Ok(r.map(|_| ())?)
    }))
}

/// The WAL side of one database: wake on file events (inotify) or the monitor interval, sync,
/// check the checkpoint policy, and step aside for app checkpoints.
fn db_loop(
    mut db: Db,
    tx: tokio::sync::watch::Sender<Option<TxId>>,
    stop: Arc<AtomicBool>,
    snapshot_due: Arc<AtomicBool>,
) {
    use notify::Watcher;
    let (ev_tx, ev_rx) = std::sync::mpsc::channel::<()>();
    let wal = db.wal_path().to_path_buf();
    let dbp = db.path().to_path_buf();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if ev.paths.iter().any(|p| p == &wal || p == &dbp) {
                let _ = ev_tx.send(());
            }
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => {
            let dir = db
                .path()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            if let Err(e) = w.watch(&dir, notify::RecursiveMode::NonRecursive) {
                warn!(error = %e, "cannot watch the database directory; polling instead");
            }
            Some(w)
        }
        Err(e) => {
            warn!(error = %e, "file notifications unavailable; polling instead");
            None
        }
    };
    let monitor = db.options().monitor_interval;
    let probe = db.options().probe_interval;
    let mut last_sync = Instant::now() - monitor;
    let mut last_err: Option<String> = None;
    let mut backoff_until = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let mut changed = matches!(ev_rx.recv_timeout(probe), Ok(()));
        while ev_rx.try_recv().is_ok() {
            changed = true;
        }
        if Instant::now() < backoff_until {
            continue;
        }
        if snapshot_due.swap(false, Ordering::SeqCst) {
            db.request_l9_snapshot();
            changed = true;
        }
        let r = (|| -> Result<(), crate::db::DbError> {
            if changed || last_sync.elapsed() >= monitor {
                last_sync = Instant::now();
                // A backlog over max-sync-wal-bytes comes out as several L0 files: keep going
                // until a sync finds nothing new.
                for _ in 0..10_000 {
                    match db.sync()? {
                        Some(o) => {
                            let _ = tx.send(Some(o.txid));
                        }
                        None => break,
                    }
                }
                db.maybe_checkpoint()?;
                if let Some(t) = db.local_txid() {
                    tx.send_if_modified(|cur| {
                        let changed = *cur != Some(t);
                        *cur = Some(t);
                        changed
                    });
                }
            }
            db.yield_to_app_checkpoint()?;
            Ok(())
        })();
        match r {
            Ok(()) => last_err = None,
            Err(e) => {
                let msg = e.to_string();
                if last_err.as_deref() != Some(&msg) {
                    warn!(db = %db.path().display(), "sync failed: {msg}");
                }
                last_err = Some(msg);
                backoff_until = Instant::now() + Duration::from_millis(100);
            }
        }
    }
    match db.sync() {
        Ok(Some(o)) => {
            let _ = tx.send(Some(o.txid));
        }
        Ok(None) => {}
        Err(e) => warn!(db = %db.path().display(), "final sync failed: {e}"),
    }
    db.shutdown();
}
