//! The replication server: the set of databases being replicated, which can change at run time.
//!
//! One [`Server`] holds every database. The pieces:
//! - one file watcher ([`watcher::Watcher`], one inotify instance) for all databases;
//! - a bounded pool of blocking workers ([`Pool`]) that does all WAL work (syncs, snapshots,
//!   checkpoints), instead of a thread per database;
//! - per database, a few tasks that sleep until there is work: the WAL task
//!   ([`database`]), the uploader, the history task ([`crate::history::run`]) and the lease's
//!   renewal task ([`crate::lease::Guard::run`]);
//! - one cancellation token for shutdown, which reaches every task.
//!
//! An idle database costs nothing: its WAL task goes *cold* after
//! [`ServerOptions::cold_after`] without a write (connections and descriptors closed, no
//! timer), its history task has nothing owed, and its lease lapses.
//!
//! ```no_run
//! # async fn example(store: walstream::storage::DynStore) -> Result<(), walstream::server::ServerError> {
//! use walstream::server::{DbSpec, Server, ServerOptions};
//! let server = Server::new(ServerOptions::default());
//! server.add(DbSpec::new("/var/lib/app/app.db", store))?;
//! // ... until a signal:
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
pub mod database;
pub mod once;
pub mod watcher;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::db::{DbError, DbOptions};
use crate::lease::{LeaseError, LeaseOptions};
use crate::replica::ReplicaError;
use crate::storage::DynStore;

pub use database::DbStatus;

/// Server-wide settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Blocking workers for WAL work (default: twice the cores, at least 4).
    pub workers: usize,
    /// A database without a write for this long goes cold: it holds no connection, no
    /// descriptor and no timer until its next write (default 10 s; `$WALSTREAM_COLD_AFTER`).
    pub cold_after: Duration,
    /// How long after a write to the database file (a checkpoint running) the lock bytes are
    /// probed every [`ServerOptions::probe_fast`]; otherwise every `probe_slow` while warm.
    pub probe_fast_for: Duration,
    /// Fast probe interval (5 ms).
    pub probe_fast: Duration,
    /// Slow probe interval (50 ms).
    pub probe_slow: Duration,
    /// While an upload is in flight, new commits wait at most this long and then go up as one
    /// file (default 1 s, Litestream's sync interval). An idle replica ships at once.
    pub coalesce_for: Duration,
    /// Stores contacted at once while databases start (bounds the burst at start-up).
    pub connect_concurrency: usize,
    /// Final uploads keep retrying this long at shutdown (`shutdown-sync-timeout`).
    pub shutdown_timeout: Duration,
    /// Databases kept open (warm) at most; past it, quiet databases go cold sooner. Derived from
    /// RLIMIT_NOFILE by default (a warm database uses about 5 descriptors).
    pub max_open: usize,
    /// `max-local-backlog`: bytes of L0 files kept locally while the replica is unreachable;
    /// past it they are dropped and one snapshot replaces them when the replica is back
    /// (default 1 GiB; 0: no cap). A warning comes at half of it.
    pub max_local_backlog: u64,
}

/// Default [`ServerOptions::max_local_backlog`]: 1 GiB.
pub const DEFAULT_MAX_LOCAL_BACKLOG: u64 = 1 << 30;

impl Default for ServerOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let cold_after = std::env::var("WALSTREAM_COLD_AFTER")
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
            .unwrap_or(Duration::from_secs(10));
        let nofile = nofile_limit().unwrap_or(1024) as usize;
        ServerOptions {
            workers: (cores * 2).max(4),
            cold_after,
            probe_fast_for: Duration::from_secs(1),
            probe_fast: Duration::from_millis(5),
            probe_slow: Duration::from_millis(50),
            coalesce_for: Duration::from_secs(1),
            connect_concurrency: 32,
            shutdown_timeout: crate::replica::DEFAULT_SHUTDOWN_TIMEOUT,
            max_open: (nofile.saturating_sub(WARM_RESERVE) / WARM_FDS).max(16),
            max_local_backlog: DEFAULT_MAX_LOCAL_BACKLOG,
        }
    }
}

/// The soft RLIMIT_NOFILE.
pub fn nofile_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    (rc == 0).then_some(rl.rlim_cur)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, as Go's runtime does at start. Returns the
/// (soft) limit in force afterwards.
pub fn raise_nofile_limit() -> Option<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return None;
        }
        if rl.rlim_cur < rl.rlim_max {
            let want = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return Some(want.rlim_cur);
            }
        }
    }
    Some(rl.rlim_cur)
}

/// Errors of the server. Each names the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The database is already being replicated.
    #[error("database {0} is already being replicated")]
    Duplicate(PathBuf),
    /// The database is not being replicated.
    #[error("database {0} is not being replicated")]
    Unknown(PathBuf),
    /// The lease could not be taken (another owner, or a permanent store error).
    #[error("database {db}: {source}")]
    Lease {
        /// The database.
        db: PathBuf,
        /// The cause.
        source: LeaseError,
    },
    /// The replica failed permanently.
    #[error("database {db}: {source}")]
    Replica {
        /// The database.
        db: PathBuf,
        /// The cause.
        source: ReplicaError,
    },
    /// A sync requested through [`Server::sync`] did not finish in time.
    #[error("database {}: {what} did not finish within {timeout:?}{}", db.display(), last_error.as_deref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    SyncTimeout {
        /// The database.
        db: PathBuf,
        /// What was waited for.
        what: &'static str,
        /// The limit.
        timeout: Duration,
        /// The database's last error, if any.
        last_error: Option<String>,
    },
    /// The database side failed permanently.
    #[error("database {db}: {source}")]
    Db {
        /// The database.
        db: PathBuf,
        /// The cause.
        source: Box<DbError>,
    },
}

impl ServerError {
    /// The database the error is about.
    pub fn db(&self) -> &Path {
        match self {
            ServerError::Duplicate(db) | ServerError::Unknown(db) => db,
            ServerError::Lease { db, .. }
            | ServerError::Replica { db, .. }
            | ServerError::SyncTimeout { db, .. }
            | ServerError::Db { db, .. } => db,
        }
    }
}

/// One database to replicate.
#[derive(Debug, Clone)]
pub struct DbSpec {
    /// Database path.
    pub path: PathBuf,
    /// Its replica (not yet leased).
    pub store: DynStore,
    /// The lease (`None`: `lease: false`).
    pub lease: Option<LeaseOptions>,
    /// Per-database settings.
    pub opts: DbOptions,
}

impl DbSpec {
    /// `path` replicated to `store` with default settings and the default lease.
    pub fn new(path: impl Into<PathBuf>, store: DynStore) -> DbSpec {
        DbSpec {
            path: path.into(),
            store,
            lease: Some(LeaseOptions::default()),
            opts: DbOptions::default(),
        }
    }
}

/// The bounded pool of blocking workers that does all WAL work.
#[derive(Debug, Clone)]
pub struct Pool {
    sem: Arc<Semaphore>,
}

impl Pool {
    /// A pool of `n` workers.
    pub fn new(n: usize) -> Pool {
        Pool {
            sem: Arc::new(Semaphore::new(n.max(1))),
        }
    }

    /// Runs `f` on a worker once one is free. `None` if the task panicked.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let _permit = self.sem.acquire().await.ok()?;
        tokio::task::spawn_blocking(f).await.ok()
    }
}

pub(crate) struct Shared {
    pub(crate) opts: ServerOptions,
    pub(crate) pool: Pool,
    pub(crate) watcher: watcher::Watcher,
    pub(crate) cancel: CancellationToken,
    pub(crate) connect: Semaphore,
    /// Databases currently open (warm).
    pub(crate) open: AtomicUsize,
    /// Databases running (each keeps one descriptor while cold: its lease owner token).
    pub(crate) running: AtomicUsize,
    fatal: tokio::sync::mpsc::UnboundedSender<ServerError>,
    /// Databases that failed permanently (their task has ended), with the error: kept in
    /// [`Server::status`] as their last error until they are removed or added again.
    failed: Mutex<HashMap<PathBuf, String>>,
    /// Wakes the heap trimmer (a database went cold).
    pub(crate) trim: Arc<tokio::sync::Notify>,
}

/// Descriptors a warm database may take beyond its cold one (see [`Shared::over_open_limit`]).
const WARM_FDS: usize = 8;
/// Descriptors kept for everything else: the runtime, sockets, uploads, compactions, leases.
const WARM_RESERVE: usize = 512;

impl Shared {
    pub(crate) fn fatal(&self, e: ServerError) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(e.db().to_path_buf(), e.to_string());
        let _ = self.fatal.send(e);
    }
    fn clear_failed(&self, path: &Path) {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(path);
    }
    pub(crate) fn open_count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
    /// Whether more databases are warm than the descriptors allow: `max_open` less one in
    /// [`WARM_FDS`] of the running databases. A cold database keeps one descriptor and a warm
    /// one up to [`WARM_FDS`] more (two SQLite connections on the database, `-wal` and `-shm`,
    /// the `-shm` probe, the WAL and database files read for a sync), so warm ones may take
    /// `(nofile - reserve - running) / WARM_FDS`. With one sixth, 10,000 databases under a
    /// 20,000 limit reached `Too many open files` (leases, uploads and syncs failed for seconds).
    pub(crate) fn over_open_limit(&self) -> bool {
        let limit = self
            .opts
            .max_open
            .saturating_sub(self.running.load(Ordering::Relaxed) / WARM_FDS)
            .max(16);
        self.open_count() > limit
    }
}

/// The running server.
pub struct Server {
    shared: Arc<Shared>,
    dbs: Mutex<HashMap<PathBuf, database::Handle>>,
    fatal_rx: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<ServerError>>,
}

/// Gives freed heap back to the system a few seconds after databases go cold. Opening and
/// syncing many databases at once (a fleet's start, a compaction round) leaves glibc's arenas
/// holding what they used: 3,000 databases kept 440 MiB RSS for 118 MiB in use, until
/// `malloc_trim`. Sleeps until woken, so an idle process pays nothing.
fn trimmer(cancel: CancellationToken) -> Arc<tokio::sync::Notify> {
    let notify = Arc::new(tokio::sync::Notify::new());
    let n = notify.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = n.notified() => {}
            }
            // Let the rest of a wave go cold first; wakes during the wait fold into this one.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
            let _ = tokio::task::spawn_blocking(trim_heap).await;
        }
    });
    notify
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only walks and releases the allocator's free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

impl Server {
    /// Starts an empty server on the current tokio runtime.
    pub fn new(opts: ServerOptions) -> Server {
        let cancel = CancellationToken::new();
        let trim = trimmer(cancel.child_token());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pool: Pool::new(opts.workers),
            watcher: watcher::Watcher::start(cancel.child_token()),
            connect: Semaphore::new(opts.connect_concurrency.max(1)),
            open: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            cancel,
            trim,
            opts,
            fatal: tx,
            failed: Mutex::new(HashMap::new()),
        });
        Server {
            shared,
            dbs: Mutex::new(HashMap::new()),
            fatal_rx: tokio::sync::Mutex::new(rx),
        }
    }

    /// Starts replicating a database. Returns at once: the replica is contacted in the
    /// background (retrying while it is unreachable), and the WAL is guarded meanwhile.
    pub fn add(&self, spec: DbSpec) -> Result<(), ServerError> {
        let path = std::path::absolute(&spec.path).unwrap_or_else(|_| spec.path.clone());
        let mut dbs = self.lock_dbs();
        if dbs.contains_key(&path) {
            return Err(ServerError::Duplicate(path));
        }
        self.shared.clear_failed(&path);
        info!(db = %path.display(), replica = %spec.store.describe(), "replicating");
        let meta = crate::meta::MetaDir::for_db(&path, spec.opts.meta_path.as_deref());
        // Held until the lease owner file's flock takes over (one descriptor per idle database).
        let lock = replicate_lock(meta.root());
        let handle = database::start(
            self.shared.clone(),
            DbSpec {
                path: path.clone(),
                ..spec
            },
            lock,
        );
        dbs.insert(path, handle);
        Ok(())
    }

    fn lock_dbs(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, database::Handle>> {
        // A panic while holding this lock leaves the map as it was: keep using it.
        self.dbs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops replicating a database: a final sync and upload (bounded by the shutdown
    /// timeout), then the lease is released. The replica is kept.
    pub async fn remove(&self, path: &Path) -> Result<(), ServerError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let handle = self.lock_dbs().remove(&path);
        let Some(h) = handle else {
            return Err(ServerError::Unknown(path));
        };
        h.stop().await;
        self.shared.clear_failed(&path);
        Ok(())
    }

    /// The databases and their state. A database that failed permanently stays in the list
    /// (until removed), its last error the one that stopped it.
    pub fn status(&self) -> Vec<DbStatus> {
        let mut v: Vec<DbStatus> = self.lock_dbs().values().map(|h| h.status()).collect();
        let failed = self
            .shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for s in &mut v {
            if let Some(e) = failed.get(&s.path) {
                if s.last_error.is_none() {
                    s.last_error = Some(e.clone());
                }
            }
        }
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    /// The databases that failed permanently and are still in the set (their task has ended;
    /// [`Server::remove`] or a new [`Server::add`] clears them).
    pub fn failed(&self) -> Vec<PathBuf> {
        let dbs = self.lock_dbs();
        let mut v: Vec<PathBuf> = self
            .shared
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|p| dbs.contains_key(*p))
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Databases in the set that have not failed permanently.
    pub fn live_count(&self) -> usize {
        let n = self.lock_dbs().len();
        n.saturating_sub(self.failed().len())
    }

    /// Databases open right now (warm).
    pub fn open_databases(&self) -> usize {
        self.shared.open_count()
    }

    /// Waits for a database to fail permanently (a configuration error, a lease held by
    /// another process, a 403, a missing bucket): the caller decides whether to stop.
    pub async fn next_fatal(&self) -> Option<ServerError> {
        self.fatal_rx.lock().await.recv().await
    }

    /// Pokes every database as if its files had changed (after lost events).
    pub fn rescan(&self) {
        for h in self.lock_dbs().values() {
            h.poke();
        }
    }

    /// Stops every database (final syncs and uploads, leases released) and the watcher.
    pub async fn shutdown(&self) {
        let handles: Vec<database::Handle> = self.lock_dbs().drain().map(|(_, h)| h).collect();
        for h in &handles {
            h.begin_stop();
        }
        futures::future::join_all(handles.into_iter().map(|h| h.stop())).await;
        self.shared.cancel.cancel();
    }

    // --- control socket: `sync [-wait]` ---

    /// Syncs a database now: a WAL sync pass that starts after this call (so every commit made
    /// before it is in the local L0 files), then, with `wait`, until the replica holds the TXID
    /// that pass reached. All within `timeout`.
    pub async fn sync(
        &self,
        path: &Path,
        wait: bool,
        timeout: Duration,
    ) -> Result<SyncOutcome, ServerError> {
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let (req, before) = {
            let dbs = self.lock_dbs();
            let h = dbs
                .get(&path)
                .ok_or_else(|| ServerError::Unknown(path.clone()))?;
            (h.request_sync(), h.status().local_txid)
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = |what, st: &DbStatus| ServerError::SyncTimeout {
            db: path.clone(),
            what,
            timeout,
            last_error: st.last_error.clone(),
        };
        let mut synced: Option<Option<ltx::TxId>> = None;
        loop {
            let (st, done) = {
                let dbs = self.lock_dbs();
                let h = dbs
                    .get(&path)
                    .ok_or_else(|| ServerError::Unknown(path.clone()))?;
                (h.status(), h.sync_done())
            };
            if synced.is_none() && done >= req {
                synced = Some(st.local_txid);
                if !wait {
                    return Ok(SyncOutcome {
                        before,
                        txid: st.local_txid,
                        replicated: st.remote_txid,
                    });
                }
            }
            if let Some(target) = synced {
                if st.remote_txid >= target {
                    return Ok(SyncOutcome {
                        before,
                        txid: target,
                        replicated: st.remote_txid,
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let what = if synced.is_none() {
                    "the local sync"
                } else {
                    "the upload to the replica"
                };
                return Err(timed_out(what, &st));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// What [`Server::sync`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    /// The local TXID when the call arrived.
    pub before: Option<ltx::TxId>,
    /// The local TXID after the sync pass.
    pub txid: Option<ltx::TxId>,
    /// The replica's TXID (with `wait`: at least `txid`).
    pub replicated: Option<ltx::TxId>,
}

/// The file in a database's meta directory that a running replicator holds `flock`ed
/// (`reset` refuses while it is held).
pub const REPLICATE_LOCK_FILE: &str = "walstream-replicate.lock";

/// How long [`Server::add`] waits for a database's [`REPLICATE_LOCK_FILE`] while someone else
/// holds it: a `reset` clearing the meta directory ([`lock_meta_dir`]) is done well within it.
/// Past it, the database starts anyway (another replicator holds it: its lease decides).
pub const REPLICATE_LOCK_WAIT: Duration = Duration::from_secs(5);

/// Creates and `flock`s [`REPLICATE_LOCK_FILE`] in `meta_dir`, waiting up to
/// [`REPLICATE_LOCK_WAIT`] while another holds it (a `reset` in progress). Best effort: `None`
/// if it cannot (another process holds it; the lease says more), with a debug line.
fn replicate_lock(meta_dir: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = meta_dir.join(REPLICATE_LOCK_FILE);
    let r = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(meta_dir)
        .and_then(|()| {
            std::fs::OpenOptions::new()
                .mode(0o600)
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
        });
    let f = match r {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(file = %path.display(), "replicate lock not taken: {e}");
            return None;
        }
    };
    let deadline = std::time::Instant::now() + REPLICATE_LOCK_WAIT;
    let mut waited = false;
    loop {
        match f.try_lock() {
            Ok(()) => {
                if waited {
                    info!(file = %path.display(), "replicate lock taken after waiting for its holder");
                }
                return Some(f);
            }
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                if !waited {
                    info!(file = %path.display(), "waiting for the replicate lock (a reset, or another replicator, holds it)");
                    waited = true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::debug!(file = %path.display(), "replicate lock not taken: {}", std::io::Error::from(e));
                return None;
            }
        }
    }
}

/// The locks `reset` holds while it clears a meta directory: the same `flock`s a running
/// replicator takes ([`REPLICATE_LOCK_FILE`] at start, then the lease owner file). Dropping it
/// lets them go.
#[derive(Debug)]
pub struct MetaDirLock {
    _files: Vec<std::fs::File>,
}

/// Takes `meta_dir`'s [`REPLICATE_LOCK_FILE`] and (if it exists) lease owner file
/// ([`crate::lease::OWNER_FILE`]) without waiting. `Ok(None)`: a replicator holds one of them.
/// While the lock is held, a replicator starting on the database waits (up to
/// [`REPLICATE_LOCK_WAIT`]) before it touches the directory, so a check-then-clear cannot race
/// with it. A meta directory that does not exist is not created (`Ok(Some)`, nothing locked).
pub fn lock_meta_dir(meta_dir: &Path) -> std::io::Result<Option<MetaDirLock>> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut files = Vec::new();
    if !meta_dir.is_dir() {
        return Ok(Some(MetaDirLock { _files: files }));
    }
    for (name, create) in [
        (REPLICATE_LOCK_FILE, true),
        (crate::lease::OWNER_FILE, false),
    ] {
        let path = meta_dir.join(name);
        let f = match std::fs::OpenOptions::new()
            .mode(0o600)
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("open {}: {e}", path.display()),
                ))
            }
        };
        match f.try_lock() {
            Ok(()) => files.push(f),
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("lock {}: {e}", path.display()),
                ))
            }
        }
    }
    Ok(Some(MetaDirLock { _files: files }))
}

/// Whether a running replicator holds `meta_dir`'s [`REPLICATE_LOCK_FILE`] or lease owner
/// file ([`crate::lease::OWNER_FILE`]).
pub fn meta_dir_in_use(meta_dir: &Path) -> bool {
    [REPLICATE_LOCK_FILE, crate::lease::OWNER_FILE]
        .iter()
        .any(|name| {
            let Ok(f) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(meta_dir.join(name))
            else {
                return false;
            };
            matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock))
        })
}
