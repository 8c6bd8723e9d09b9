//! One database inside the [`super::Server`]: its WAL task (warm and cold), its uploader, its
//! history task and its lease.
//!
//! # Warm and cold
//! A database is *warm* while it is being written: the WAL task holds its SQLite connections
//! (the guard read transaction), syncs on every WAL event, and probes SQLite's lock bytes so
//! that an app's blocking checkpoint never waits for the guard: every `probe_fast` for a while
//! after the database file was written (a checkpoint is copying pages), else every
//! `probe_slow`. After `cold_after` without an event it goes *cold*: a last sync, then every
//! connection and descriptor is closed, and the task sleeps until the watcher reports a write.
//! A WAL restart while cold cannot be proven harmless, so the next file is then a full
//! snapshot (docs/ARCHITECTURE.md, "Cold databases").
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ltx::TxId;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

// Backlog cap hooks (h-metrics).
mod backlog;
mod wal;

use wal::wal_task;

use super::watcher::Signal;
use super::{DbSpec, ServerError, Shared};
use crate::db::{Db, DbError};
use crate::history::{self, HistoryLinks};
use crate::lease::{self, LeaseError, LeaseTask};
use crate::replica::{self, Replica, ReplicaError};
use crate::storage::retry::{Backoff, RetryPolicy};
use crate::storage::{DynStore, LtxFileInfo, StorageError, SNAPSHOT_LEVEL};

/// What a database is doing, for `status` and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbStatus {
    /// Database path.
    pub path: PathBuf,
    /// Newest local L0 TXID.
    pub local_txid: Option<TxId>,
    /// Newest TXID uploaded (L0).
    pub remote_txid: Option<TxId>,
    /// Whether it is warm (holds connections).
    pub open: bool,
    /// Whether the replica has been reached since start.
    pub connected: bool,
    /// The last error, until something succeeds.
    pub last_error: Option<String>,
    /// When the replica's TXID last advanced (or was first read from the replica).
    pub last_upload_at: Option<std::time::SystemTime>,
}

#[derive(Debug, Default)]
struct State {
    local: AtomicU64,
    remote: AtomicU64,
    open: AtomicBool,
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
    // --- hook for `Server::sync` (control socket, `sync -wait`) ---
    /// Sync requests made (`Handle::request_sync`).
    sync_req: AtomicU64,
    /// The newest request a WAL sync pass has completed (the pass started after it was made).
    sync_done: AtomicU64,
    // --- hook for the socket's `list` (`last_sync_at`) ---
    /// Milliseconds since the epoch when `remote` last changed (0: never).
    remote_at_ms: AtomicU64,
}

fn txid_opt(v: u64) -> Option<TxId> {
    (v > 0).then_some(TxId(v))
}

impl State {
    fn set_error(&self, e: Option<String>) {
        if let Ok(mut g) = self.last_error.lock() {
            *g = e;
        }
    }
    /// Stores the replica's TXID, stamping the time when it changes.
    fn set_remote(&self, t: TxId) {
        if self.remote.swap(t.0, Ordering::Relaxed) != t.0 {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            self.remote_at_ms.store(ms, Ordering::Relaxed);
        }
    }
}

/// A running database.
pub(crate) struct Handle {
    path: PathBuf,
    cancel: CancellationToken,
    signal: Arc<Signal>,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Handle {
    pub(crate) fn status(&self) -> DbStatus {
        let s = &self.state;
        DbStatus {
            path: self.path.clone(),
            local_txid: txid_opt(s.local.load(Ordering::Relaxed)),
            remote_txid: txid_opt(s.remote.load(Ordering::Relaxed)),
            open: s.open.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
            last_error: s.last_error.lock().ok().and_then(|g| g.clone()),
            last_upload_at: match s.remote_at_ms.load(Ordering::Relaxed) {
                0 => None,
                ms => Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)),
            },
        }
    }

    pub(crate) fn poke(&self) {
        self.signal.poke();
    }

    // --- hook for `Server::sync` (control socket, `sync -wait`) ---
    /// Asks the WAL task for a sync pass; returns the request's number for
    /// [`Handle::sync_done`].
    pub(crate) fn request_sync(&self) -> u64 {
        let r = self.state.sync_req.fetch_add(1, Ordering::SeqCst) + 1;
        self.signal.poke();
        r
    }

    /// The newest sync request a completed WAL sync pass began after.
    pub(crate) fn sync_done(&self) -> u64 {
        self.state.sync_done.load(Ordering::SeqCst)
    }

    pub(crate) fn begin_stop(&self) {
        self.cancel.cancel();
    }

    pub(crate) async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            error!(db = %self.path.display(), "database task failed: {e}");
        }
    }
}

/// Everything a database's tasks share.
struct Ctx {
    shared: Arc<Shared>,
    path: PathBuf,
    db: Arc<Mutex<Db>>,
    signal: Arc<Signal>,
    state: Arc<State>,
    cancel: CancellationToken,
    /// Set by the history task: write an L9 snapshot at the next sync.
    want_l9: AtomicBool,
    /// Whether the watcher covers this database (else the WAL is polled).
    watched: bool,
    /// The replica failed for good at start: the database is not touched.
    doomed: AtomicBool,
    /// Woken by the uploader after each pass: the WAL task may sync what it held back.
    drained: tokio::sync::Notify,
    /// The meta directory's replicate lock (`reset` refuses while it is held), until the lease
    /// owner file's flock takes over.
    replicate_lock: Mutex<Option<std::fs::File>>,
    /// The local backlog cap's state (h-metrics).
    backlog: backlog::Backlog,
}

impl Ctx {
    /// Whether the uploader has not yet put everything written locally on the store (an upload
    /// in flight, or the store away). While it has not, the WAL task holds commits back and
    /// ships them as one file: pages rewritten meanwhile go up once.
    fn uploading(&self) -> bool {
        self.state.local.load(Ordering::Relaxed) > self.state.remote.load(Ordering::Relaxed)
    }

    /// Runs `f` on the database in the worker pool. Keeps the server's open count right.
    async fn with_db<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Db) -> T + Send + 'static,
    ) -> Option<T> {
        let ctx = self.clone();
        self.shared
            .pool
            .run(move || {
                let mut db = ctx.db.lock().unwrap_or_else(|e| e.into_inner());
                let was = db.is_open();
                let out = f(&mut db);
                let now = db.is_open();
                if was != now {
                    if now {
                        ctx.shared.open.fetch_add(1, Ordering::Relaxed);
                    } else {
                        ctx.shared.open.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                ctx.state.open.store(now, Ordering::Relaxed);
                if let Some(t) = db.local_txid() {
                    ctx.state.local.store(t.0, Ordering::Relaxed);
                }
                out
            })
            .await
    }
}

pub(crate) fn start(
    shared: Arc<Shared>,
    spec: DbSpec,
    replicate_lock: Option<std::fs::File>,
) -> Handle {
    let cancel = shared.cancel.child_token();
    let signal = Arc::new(Signal::default());
    let state = Arc::new(State::default());
    let path = spec.path.clone();
    let task = tokio::spawn(run(
        shared,
        spec,
        signal.clone(),
        state.clone(),
        cancel.clone(),
        replicate_lock,
    ));
    Handle {
        path,
        cancel,
        signal,
        state,
        task,
    }
}

async fn run(
    shared: Arc<Shared>,
    spec: DbSpec,
    signal: Arc<Signal>,
    state: Arc<State>,
    cancel: CancellationToken,
    replicate_lock: Option<std::fs::File>,
) {
    let path = spec.path.clone();
    shared.running.fetch_add(1, Ordering::Relaxed);
    let _running = RunningGuard(shared.clone());
    let watched = shared.watcher.add(&path, &signal);
    let opts = spec.opts.clone();
    let p = path.clone();
    // Out of descriptors is a wait, not a failure: retried until it passes (or shutdown).
    let mut delay = Duration::from_millis(100);
    let opened = loop {
        let (p, opts) = (p.clone(), opts.clone());
        match shared.pool.run(move || Db::new(&p, opts)).await {
            Some(Err(e)) if out_of_descriptors(&e) => {
                tokio::select! {
                    _ = cancel.cancelled() => break None,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            r => break r,
        }
    };
    let db = match opened {
        Some(Ok(db)) => db,
        Some(Err(source)) => {
            error!(db = %path.display(), "cannot start: {source}");
            shared.fatal(ServerError::Db {
                db: path.clone(),
                source: Box::new(source),
            });
            shared.watcher.remove(&path, &signal);
            return;
        }
        None => {
            shared.watcher.remove(&path, &signal);
            return;
        }
    };
    let fresh = db.local_txid().is_none();
    // Metrics hook (h-metrics): /metrics and the heartbeat read this database's state.
    let _metrics = crate::metrics::track_db(
        &path,
        spec.store.describe(),
        db.meta().level_dir(0),
        metrics_view(state.clone()),
    );
    let l0_dir = db.meta().level_dir(0);
    let ctx = Arc::new(Ctx {
        backlog: backlog::Backlog::new(l0_dir),
        shared: shared.clone(),
        path: path.clone(),
        db: Arc::new(Mutex::new(db)),
        signal: signal.clone(),
        state,
        cancel,
        want_l9: AtomicBool::new(false),
        watched,
        doomed: AtomicBool::new(false),
        drained: tokio::sync::Notify::new(),
        replicate_lock: Mutex::new(replicate_lock),
    });
    let (wrote_tx, wrote_rx) = watch::channel(0u64);
    let (ready_tx, ready_rx) = watch::channel(false);
    let wal = tokio::spawn(wal_task(ctx.clone(), wrote_tx, ready_rx));
    upload_task(ctx.clone(), spec, fresh, wrote_rx, ready_tx, wal).await;
    shared.watcher.remove(&path, &signal);
}

/// Metrics hook (h-metrics): what /metrics and the heartbeat see of a database.
fn metrics_view(s: Arc<State>) -> impl Fn() -> crate::metrics::DbView + Send + Sync + 'static {
    move || crate::metrics::DbView {
        path: PathBuf::new(),
        local: s.local.load(Ordering::Relaxed),
        remote: s.remote.load(Ordering::Relaxed),
        connected: s.connected.load(Ordering::Relaxed),
        failing: s.last_error.lock().is_ok_and(|e| e.is_some()),
    }
}

/// Counts a database in [`Shared::running`] while its task lives.
struct RunningGuard(Arc<Shared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why contacting the replica failed.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    History(#[from] crate::history::HistoryError),
}

impl ConnectError {
    fn is_retryable(&self) -> bool {
        match self {
            ConnectError::Lease(e) => e.is_retryable(),
            ConnectError::History(crate::history::HistoryError::Storage { source, .. }) => {
                source.is_retryable()
            }
            ConnectError::History(_) => true,
        }
    }
}

/// Takes the lease and lists the replica, retrying transient failures without end. Tells the
/// WAL task to go ahead (locally) after the first failure.
async fn connect(
    ctx: &Arc<Ctx>,
    spec: &DbSpec,
    ready: &watch::Sender<bool>,
) -> Result<Option<(DynStore, Option<LeaseTask>, Vec<LtxFileInfo>, bool)>, ConnectError> {
    let meta_root = {
        let db = ctx.db.lock().unwrap_or_else(|e| e.into_inner());
        db.meta().root().to_path_buf()
    };
    let mut backoff = Backoff::new(RetryPolicy::upload());
    let mut failed = false;
    loop {
        let attempt = async {
            let _permit = ctx.shared.connect.acquire().await;
            let (store, lease) =
                lease::start(spec.store.clone(), &ctx.path, &meta_root, spec.lease).await?;
            // Upload temp files a kill left on the replica (under the lease: nobody else
            // uploads there now).
            match store.remove_stale_uploads().await {
                Ok(0) => {}
                Ok(n) => {
                    info!(db = %ctx.path.display(), files = n, "removed upload temp files a kill left on the replica")
                }
                Err(e) => {
                    warn!(db = %ctx.path.display(), "removing stale upload temp files failed: {e}")
                }
            }
            match history::list_all(&store).await {
                Ok(listing) => Ok((store, lease, listing)),
                Err(e) => {
                    if let Some(l) = lease {
                        l.finish().await;
                    }
                    Err(ConnectError::from(e))
                }
            }
        };
        // An attempt is not cut short by shutdown (the store's own timeouts bound it): a
        // database added just before shutdown still gets its final sync uploaded.
        let r = attempt.await;
        match r {
            Ok((store, lease, listing)) => {
                if failed {
                    info!(db = %ctx.path.display(), replica = %store.describe(), "replica reachable; uploading what was kept locally");
                }
                return Ok(Some((store, lease, listing, failed)));
            }
            Err(e) if e.is_retryable() => {
                if !failed {
                    warn!(db = %ctx.path.display(), "replica unreachable; replicating into the local meta directory and retrying: {e}");
                }
                ctx.state.set_error(Some(e.to_string()));
                failed = true;
                let _ = ready.send(true);
                let d = backoff.next_delay().unwrap_or(Duration::from_secs(5));
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(d) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn max_level_txid(listing: &[LtxFileInfo], max_level: u8) -> Option<TxId> {
    listing
        .iter()
        .filter(|f| f.level <= max_level)
        .map(|f| f.max_txid)
        .max()
}

async fn upload_task(
    ctx: Arc<Ctx>,
    spec: DbSpec,
    fresh: bool,
    mut wrote: watch::Receiver<u64>,
    ready: watch::Sender<bool>,
    wal: JoinHandle<()>,
) {
    let connected = match connect(&ctx, &spec, &ready).await {
        Ok(c) => c,
        Err(e) => {
            error!(db = %ctx.path.display(), "{e}");
            ctx.state.set_error(Some(e.to_string()));
            let source = match e {
                ConnectError::Lease(source) => ServerError::Lease {
                    db: ctx.path.clone(),
                    source,
                },
                ConnectError::History(h) => ServerError::Replica {
                    db: ctx.path.clone(),
                    source: ReplicaError::Storage {
                        replica: spec.store.describe(),
                        source: StorageError::Permanent {
                            backend: "replica",
                            key: String::new(),
                            message: h.to_string(),
                        },
                    },
                },
            };
            ctx.shared.fatal(source);
            ctx.doomed.store(true, Ordering::SeqCst);
            ctx.cancel.cancel();
            let _ = ready.send(true);
            let _ = wal.await;
            return;
        }
    };
    let Some((store, lease, listing, was_down)) = connected else {
        // Cancelled before the replica answered: the WAL task keeps what it wrote locally.
        let _ = ready.send(true);
        let _ = wal.await;
        return;
    };
    ctx.state.connected.store(true, Ordering::Relaxed);
    ctx.state.set_error(None);
    if lease.is_some() {
        ctx.replicate_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
    let remote = max_level_txid(&listing, SNAPSHOT_LEVEL);
    let upload_from = max_level_txid(&listing, SNAPSHOT_LEVEL - 1);
    let provisional = fresh && was_down;
    let mut delay = Duration::from_millis(100);
    let reconciled = loop {
        let r = ctx
            .with_db(move |db| -> Result<(), DbError> {
                if provisional {
                    // Files numbered before the replica's position was known cannot continue it.
                    if let Some(r) = remote {
                        return db.rebase_onto_remote(r);
                    }
                    return Ok(());
                }
                let complete = replica::local_chain_complete(db.meta(), remote)?;
                db.reconcile(remote, complete)
            })
            .await;
        match r {
            Some(Err(e)) if out_of_descriptors(&e) && !ctx.cancel.is_cancelled() => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            r => break r,
        }
    };
    if let Some(Err(source)) = reconciled {
        error!(db = %ctx.path.display(), "{source}");
        ctx.shared.fatal(ServerError::Db {
            db: ctx.path.clone(),
            source: Box::new(source),
        });
        ctx.cancel.cancel();
    }
    let _ = ready.send(true);
    ctx.signal.poke();

    let meta = {
        let db = ctx.db.lock().unwrap_or_else(|e| e.into_inner());
        db.meta().clone()
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let mut rep = Replica::new(store.clone(), meta.clone(), upload_from)
        .with_retry(RetryPolicy::upload())
        .with_stop(stopping.clone(), ctx.shared.opts.shutdown_timeout);
    // Local L0 files stay until L1 covers them: compaction reads them instead of downloading.
    rep.set_prune_uploaded(false);
    if let Some(t) = upload_from {
        ctx.state.set_remote(t);
    }
    let (up_tx, up_rx) = watch::channel(upload_from);
    let hist_cancel = CancellationToken::new();
    let ctx2 = ctx.clone();
    let hist = tokio::spawn(history::run(
        store.clone(),
        meta,
        spec.opts.history.clone(),
        listing,
        HistoryLinks {
            uploaded: up_rx,
            request_snapshot: Box::new(move || {
                ctx2.want_l9.store(true, Ordering::SeqCst);
                ctx2.signal.poke();
            }),
        },
        hist_cancel.clone(),
    ));
    {
        let cancel = ctx.cancel.clone();
        let stopping = stopping.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            stopping.store(true, Ordering::SeqCst);
        });
    }
    let mut last_err: Option<String> = None;
    let mut backoff = Backoff::new(RetryPolicy::upload());
    loop {
        let failed = match rep.sync().await {
            Ok(_) => {
                if last_err.take().is_some() {
                    info!(db = %ctx.path.display(), "uploads going through again");
                }
                backoff.reset();
                ctx.state.set_error(None);
                backlog::after_upload_ok(&ctx, rep.remote_txid()).await;
                false
            }
            Err(e) => {
                let msg = format!("{e:#}");
                let permanent =
                    matches!(&e, ReplicaError::Storage { source, .. } if !source.is_retryable());
                if last_err.as_deref() != Some(&msg) {
                    if permanent {
                        error!(db = %ctx.path.display(), "replica sync failed: {msg}");
                    } else {
                        warn!(db = %ctx.path.display(), "replica sync failed: {msg}");
                    }
                }
                ctx.state.set_error(Some(msg.clone()));
                last_err = Some(msg);
                if permanent && last_err.as_deref().is_some_and(|m| m.contains("fenced")) {
                    // Another walstream took the replica over: this database stops uploading
                    // (the error says who holds it), the others go on.
                    error!(db = %ctx.path.display(), "not uploading to this replica any more");
                    ctx.cancel.cancel();
                    break;
                }
                if permanent {
                    ctx.shared.fatal(ServerError::Replica {
                        db: ctx.path.clone(),
                        source: e,
                    });
                    ctx.cancel.cancel();
                    break;
                }
                true
            }
        };
        if let Some(t) = rep.remote_txid() {
            ctx.state.set_remote(t);
        }
        ctx.drained.notify_one();
        up_tx.send_if_modified(|cur| {
            let changed = *cur != rep.remote_txid();
            *cur = rep.remote_txid();
            changed
        });
        if ctx.cancel.is_cancelled() {
            break;
        }
        // No timer unless retrying: an idle database's uploader sleeps until the WAL task writes.
        let delay = failed.then(|| backoff.next_delay().unwrap_or(Duration::from_secs(5)));
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            r = wrote.changed() => { if r.is_err() { break; } }
            _ = async {
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
    // Shutdown: the WAL task's last sync first, then the last upload (bounded by the shutdown
    // timeout through `stopping`).
    let _ = wal.await;
    if !ctx
        .state
        .last_error
        .lock()
        .is_ok_and(|e| e.as_deref().is_some_and(|m| m.contains("fenced")))
    {
        if let Err(e) = rep.sync().await {
            warn!(db = %ctx.path.display(), "final upload failed: {e:#}");
        }
    }
    if let Some(t) = rep.remote_txid() {
        ctx.state.set_remote(t);
    }
    hist_cancel.cancel();
    let _ = hist.await;
    if let Some(l) = lease {
        l.finish().await;
    }
}

/// Whether an error comes from the process or system running out of file descriptors
/// (`EMFILE`, `ENFILE`): transient, as descriptors come back when other databases go cold.
fn out_of_descriptors(e: &DbError) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
                return true;
            }
        }
        cur = err.source();
    }
    e.to_string().contains("Too many open files")
}
