//! The per-database replication loop: WAL growth -> L0 LTX file in the meta directory; the local
//! position; the checkpoint policy. Uploading is [`crate::replica`]'s job.
//!
//! # Position and the WAL generation
//! The newest L0 file records where its frames came from (WAL offset and size, salts), so the next
//! sync resumes at `offset + size`. When the WAL's salts change, SQLite restarted it, and whatever
//! was committed after our position in the old generation is gone from the WAL. walstream goes on
//! from the new generation's start only when it *knows* it had copied the old generation to its
//! end ([`guard::GuardState`]); otherwise it takes a full snapshot into L0.
//!
//! # Files
//! - `sync.rs`: one sync, the position, the guard's renewal, building L0 files from WAL pages.
//! - `snapshot.rs`: full snapshots into L0, and L9 snapshots.
//! - `checkpoint.rs`: the checkpoint policy and stepping aside for an app's checkpoint.
//! - `guard.rs`: what is known about the guard read transaction.
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ltx::TxId;
use tracing::{debug, info, warn};

use crate::meta::{MetaDir, MetaError};
use crate::sqlite::conn::{ConnError, DbConn};
use crate::sqlite::locks::ShmProbe;
use crate::sqlite::wal_reader::{WalError, WAL_HEADER_SIZE};

mod backlog;
mod checkpoint;
mod guard;
mod snapshot;
mod sync;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

use guard::GuardState;

/// Per-database settings (Litestream's `dbs[]` keys and defaults).
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// `meta-path`.
    pub meta_path: Option<PathBuf>,
    /// `monitor-interval`: the fallback poll when no file event arrives.
    pub monitor_interval: Duration,
    /// `checkpoint-interval`.
    pub checkpoint_interval: Duration,
    /// `busy-timeout`.
    pub busy_timeout: Duration,
    /// `min-checkpoint-page-count`.
    pub min_checkpoint_page_count: u64,
    /// `truncate-page-n`.
    pub truncate_page_n: u64,
    /// `max-sync-wal-bytes`.
    pub max_sync_wal_bytes: u64,
    /// How often to look for a blocked app checkpoint (walstream only).
    pub probe_interval: Duration,
    /// Compaction levels, snapshots and retention of the replica.
    pub history: crate::history::HistoryOptions,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            meta_path: None,
            monitor_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(60),
            busy_timeout: Duration::from_secs(1),
            min_checkpoint_page_count: 1000,
            truncate_page_n: 121_359,
            max_sync_wal_bytes: 64 << 20,
            probe_interval: Duration::from_millis(5),
            history: crate::history::HistoryOptions::default(),
        }
    }
}

/// Errors of the replication loop. Each names the database or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// SQLite connection.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// WAL file.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// Meta directory.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// Encoding an LTX file.
    #[error("writing {what} for {path} (TXID {txid}): {source}")]
    Ltx {
        /// The database.
        path: PathBuf,
        /// The file being written.
        what: &'static str,
        /// Its TXID.
        txid: TxId,
        /// The cause.
        source: ltx::Error,
    },
    /// Reading the database file.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database does not exist.
    #[error("database {0} does not exist")]
    Missing(PathBuf),
    /// The WAL moved under us while a file was being built; the sync is retried.
    #[error("WAL of {0} changed while reading it; retrying")]
    Raced(PathBuf),
    /// The database file is not usable.
    #[error("database {path}: {reason}")]
    Invalid {
        /// The database.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Where the last L0 file left off in the WAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    /// TXID of the newest L0 file.
    pub txid: TxId,
    /// WAL salts of the generation it came from.
    pub salts: (u32, u32),
    /// WAL offset just past its last frame.
    pub offset: u64,
    /// Cumulative frame checksum at `offset`, if known (else read from the frame before it).
    pub checksum: Option<(u32, u32)>,
}

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    /// TXID of the L0 file written.
    pub txid: TxId,
    /// Whether it is a full snapshot.
    pub snapshot: bool,
    /// Pages in it.
    pub pages: usize,
}

/// One replicated database.
pub struct Db {
    path: PathBuf,
    wal_path: PathBuf,
    meta: MetaDir,
    opts: DbOptions,
    conn: Option<DbConn>,
    probe: Option<ShmProbe>,
    page_size: u32,
    pos: Option<Pos>,
    /// What is known about the guard read transaction (whether it is held: `conn`).
    guard: GuardState,
    /// Reason to take a full snapshot at the next sync.
    force_snapshot: Option<&'static str>,
    /// The next TXID may not be lower than this (the replica's position + 1).
    min_next_txid: TxId,
    /// Write an L9 snapshot beside the next full snapshot (the replica has a gap before it).
    snapshot_to_l9: bool,
    /// Write an L9 snapshot of the current position at the next sync (`snapshot.interval`).
    want_l9: bool,
    last_checkpoint: Instant,
    synced_since_checkpoint: bool,
    /// When another connection last restarted or truncated the WAL (its own checkpoints).
    foreign_checkpoint_at: Option<Instant>,
    /// Set while walstream restarts the WAL itself, so that restart is not counted as foreign.
    own_restart: bool,
    /// The last sync found frames of the current generation past the WAL-index's mxFrame: a
    /// writer is between writing its commit and publishing it (no file event follows that).
    unpublished: bool,
    identity: Option<(u64, u64)>,
    /// The database file, opened once per connection lifetime and closed only after the SQLite
    /// connections: closing *any* descriptor of a file drops every POSIX lock this process holds
    /// on it, SQLite's own included (a read of the database through a short-lived `File` would
    /// silently release the guard's locks).
    db_file: Option<std::sync::Arc<File>>,
    page_buf: Vec<u8>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DbError {
    let path = path.to_path_buf();
    move |source| DbError::Io { path, source }
}

impl Db {
    /// Sets up state for `path` from its meta directory. Does not touch the database yet.
    pub fn new(path: &Path, opts: DbOptions) -> Result<Db, DbError> {
        let path = std::path::absolute(path).map_err(io_err(path))?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let meta = MetaDir::for_db(&path, opts.meta_path.as_deref());
        meta.remove_temp_files();
        let mut db = Db {
            wal_path: PathBuf::from(wal),
            path,
            meta,
            opts,
            conn: None,
            probe: None,
            page_size: 0,
            pos: None,
            guard: GuardState::new(),
            force_snapshot: None,
            min_next_txid: TxId(1),
            snapshot_to_l9: false,
            want_l9: false,
            last_checkpoint: Instant::now(),
            synced_since_checkpoint: false,
            foreign_checkpoint_at: None,
            own_restart: false,
            unpublished: false,
            identity: None,
            db_file: None,
            page_buf: Vec::new(),
        };
        db.load_local_position()?;
        Ok(db)
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The meta directory.
    pub fn meta(&self) -> &MetaDir {
        &self.meta
    }

    /// Whether the last sync saw frames written past the WAL-index's committed end (a commit
    /// being published, a rolled-back spill or a writer killed mid-commit). The publication
    /// itself is a write to the memory-mapped `-shm` that no file event reports, so the caller
    /// looks again shortly.
    pub fn saw_unpublished_frames(&self) -> bool {
        self.unpublished
    }

    /// Whether another process holds SQLite's writer lock (a commit may be on its way to the
    /// WAL-index). `false` while cold.
    pub fn writer_active(&self) -> bool {
        self.probe.as_ref().is_some_and(|p| p.writer().is_some())
    }

    /// TXID of the newest local L0 file.
    pub fn local_txid(&self) -> Option<TxId> {
        self.pos.map(|p| p.txid)
    }

    fn load_local_position(&mut self) -> Result<(), DbError> {
        self.pos = None;
        let Some(last) = self.meta.list(0)?.pop() else {
            return Ok(());
        };
        match MetaDir::read_header(&last.path) {
            Ok(h) => {
                let offset = (h.wal_offset.max(0) as u64).saturating_add(h.wal_size.max(0) as u64);
                self.pos = Some(Pos {
                    txid: h.max_txid,
                    salts: (h.wal_salt1, h.wal_salt2),
                    offset: offset.max(WAL_HEADER_SIZE),
                    checksum: None,
                });
                self.min_next_txid = self.min_next_txid.max(TxId(h.max_txid.0 + 1));
            }
            Err(e) => {
                warn!(error = %e, "unreadable newest L0 file in meta directory; will take a snapshot");
                self.min_next_txid = self.min_next_txid.max(TxId(last.max_txid.0 + 1));
                self.force_snapshot = Some("unreadable local position");
            }
        }
        Ok(())
    }

    /// Reconciles the local position with the replica's newest TXID (`None`: empty replica).
    /// `local_chain_complete`: every local L0 file after `remote` up to the local position exists,
    /// so uploading them continues the replica without a gap.
    pub fn reconcile(
        &mut self,
        remote: Option<TxId>,
        local_chain_complete: bool,
    ) -> Result<(), DbError> {
        let local = self.local_txid();
        match (local, remote) {
            (Some(l), Some(r)) if r >= l => {
                if r > l {
                    info!(db = %self.path.display(), local = %l, replica = %r, "replica is ahead of local state; resetting and taking a snapshot");
                }
                if r > l || !matches!(self.pos, Some(p) if p.txid == r) {
                    self.meta.reset()?;
                    self.pos = None;
                }
                self.min_next_txid = self.min_next_txid.max(TxId(r.0 + 1));
            }
            (None, Some(r)) => {
                self.min_next_txid = self.min_next_txid.max(TxId(r.0 + 1));
            }
            (Some(l), r) => {
                if !local_chain_complete {
                    info!(db = %self.path.display(), local = %l, replica = ?r.map(|t| t.to_string()), "replica is missing files this database made; taking a new snapshot");
                    self.force_snapshot = Some("replica has a gap");
                    self.snapshot_to_l9 = true;
                    self.min_next_txid = self.min_next_txid.max(TxId(l.0 + 1));
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    fn ensure_open(&mut self) -> Result<(), DbError> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.close("database file missing");
                return Err(DbError::Missing(self.path.clone()));
            }
            Err(e) => return Err(io_err(&self.path)(e)),
        };
        let ident = (meta.dev(), meta.ino());
        // Also while closed (after `close_idle`): the file opened last is the one the position
        // belongs to.
        if self.identity.is_some_and(|i| i != ident) {
            warn!(db = %self.path.display(), "database file was replaced; reopening and taking a snapshot");
            self.close("database replaced");
            self.force_snapshot = Some("database file replaced");
            self.identity = None;
        }
        if self.conn.is_none() {
            let conn = DbConn::open(&self.path, self.opts.busy_timeout)?;
            if conn.switched_to_wal() {
                info!(db = %self.path.display(), "database was not in WAL mode; switched it to journal_mode=WAL");
            }
            self.page_size = conn.page_size()?;
            self.conn = Some(conn);
            self.identity = Some(ident);
            match File::open(&self.path) {
                Ok(f) => self.db_file = Some(std::sync::Arc::new(f)),
                Err(e) => {
                    self.close("cannot open database file for reading");
                    return Err(io_err(&self.path)(e));
                }
            }
            self.probe = ShmProbe::open(&self.path);
        }
        if self.probe.is_none() {
            self.probe = ShmProbe::open(&self.path);
        }
        Ok(())
    }

    fn close(&mut self, why: &str) {
        if self.conn.take().is_some() {
            debug!(db = %self.path.display(), why, "closing database connections");
        }
        // Only after the connections: see `db_file`.
        self.probe = None;
        self.db_file = None;
        self.guard.closed();
    }

    fn conn(&mut self) -> &mut DbConn {
        #[allow(clippy::expect_used)]
        self.conn
            .as_mut()
            .expect("invariant: ensure_open ran first")
    }

    /// The long-lived database file handle (see the field's comment).
    fn db_file(&self) -> Result<std::sync::Arc<File>, DbError> {
        self.db_file
            .clone()
            .ok_or_else(|| DbError::Raced(self.path.clone()))
    }

    /// The configured options.
    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    /// Lets go of the database (at shutdown).
    pub fn shutdown(&mut self) {
        self.close("shutdown");
    }

    /// Whether anything of the database is held open: the SQLite connections, the `-shm` probe
    /// or the database file handle. (The WAL is opened only for the length of a sync.)
    pub fn is_open(&self) -> bool {
        self.conn.is_some() || self.probe.is_some() || self.db_file.is_some()
    }

    /// For a database that has been idle: one last sync, so that everything committed is in L0,
    /// then closes the connections, the `-shm` probe and the database file handle, so that the
    /// `Db` holds no descriptor of the database, its WAL or its `-shm`. The next [`Db::sync`]
    /// opens them again.
    ///
    /// Closing ends the guard, so nothing is known about the WAL afterwards: if the app restarts
    /// or truncates the WAL meanwhile, the next sync takes a full snapshot (the frames between
    /// the position and the restart cannot be proven to have been copied); if the app only
    /// appends, the next sync continues from the position with a normal L0 file.
    ///
    /// The database is closed even when the sync fails (its error is returned): what it did not
    /// copy is found by the next sync, or covered by that snapshot.
    pub fn close_idle(&mut self) -> Result<(), DbError> {
        let mut synced = Ok(());
        if self.conn.is_some() {
            // A backlog over max-sync-wal-bytes comes out as several L0 files.
            for _ in 0..10_000 {
                match self.sync() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        synced = Err(e);
                        break;
                    }
                }
            }
        }
        self.close("idle");
        synced
    }

    /// Drops local L0 files written before the replica's position was known (the store was
    /// unreachable at start and the meta directory was new): they were numbered without knowing
    /// the replica and cannot continue it. The next sync takes a snapshot at `remote + 1`.
    pub fn rebase_onto_remote(&mut self, remote: TxId) -> Result<(), DbError> {
        self.meta.reset()?;
        self.pos = None;
        self.min_next_txid = TxId(remote.0 + 1);
        self.force_snapshot = None;
        self.snapshot_to_l9 = false;
        Ok(())
    }

    /// The `-wal` path.
    pub fn wal_path(&self) -> &Path {
        &self.wal_path
    }
}
