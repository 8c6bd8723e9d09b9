//! The per-database replication loop: WAL growth -> L0 LTX file in the meta directory; the local
//! position; the checkpoint policy. Uploading is [`crate::replica`]'s job.
//!
//! # Position and the WAL generation
//! The newest L0 file records where its frames came from (WAL offset and size, salts), so the next
//! sync resumes at `offset + size`. When the WAL's salts change, SQLite restarted it, and whatever
//! was committed after our position in the old generation is gone from the WAL. walstream goes on
//! from the new generation's start only when it *knows* it had copied the old generation to its
//! end ([`Continuity`]); otherwise it takes a full snapshot into L0.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ltx::{Encoder, Header, TxId, FLAG_NO_CHECKSUM};
use tracing::{debug, info, warn};

use crate::meta::{MetaDir, MetaError};
use crate::sqlite::conn::{CheckpointMode, ConnError, DbConn};
use crate::sqlite::locks::ShmProbe;
use crate::sqlite::wal_reader::{
    self, WalError, WalHeader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};
use crate::storage::SNAPSHOT_LEVEL;

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

/// Why walstream may know that `pos` is the end of its WAL generation, so that a WAL restart lost
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continuity {
    /// Nothing known (after start-up, or after losing the guard).
    Unknown,
    /// The guard read transaction has been held since before the scan that reached `pos`. SQLite
    /// can then restart the WAL only if it was fully copied (see ARCHITECTURE.md).
    Guarded(u64),
    /// The guard was let go while another connection held the write lock for a checkpoint, right
    /// after a scan to the end; nobody could commit in between.
    Released,
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
    continuity: Continuity,
    guard_epoch: u64,
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
            continuity: Continuity::Unknown,
            guard_epoch: 0,
            force_snapshot: None,
            min_next_txid: TxId(1),
            snapshot_to_l9: false,
            want_l9: false,
            last_checkpoint: Instant::now(),
            synced_since_checkpoint: false,
            foreign_checkpoint_at: None,
            own_restart: false,
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
        if self.conn.is_some() && self.identity != Some(ident) {
            warn!(db = %self.path.display(), "database file was replaced; reopening and taking a snapshot");
            self.close("database replaced");
            self.force_snapshot = Some("database file replaced");
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
        self.guard_epoch += 1;
        self.continuity = Continuity::Unknown;
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

    /// Takes or moves the guard read transaction to the newest snapshot.
    fn renew_guard(&mut self) -> Result<(), DbError> {
        let had = self.conn().has_guard();
        if let Err(e) = self.conn().renew_guard() {
            self.guard_epoch += 1;
            return Err(e.into());
        }
        if !had {
            self.guard_epoch += 1;
        }
        Ok(())
    }

    /// One sync: copy newly committed WAL frames into a new L0 file (or a full snapshot when the
    /// position was lost). Returns what was written, if anything.
    pub fn sync(&mut self) -> Result<Option<SyncOutcome>, DbError> {
        self.ensure_open()?;
        // The guard is taken before the scan so that a WAL restart seen later is attributable.
        if !self.conn().has_guard() {
            self.renew_guard()?;
        }
        let epoch = self.guard_epoch;
        let r = self.sync_inner();
        let out = match r {
            Err(DbError::Raced(_)) => {
                debug!(db = %self.path.display(), "WAL restarted during a sync; retrying");
                self.sync_inner()?
            }
            r => r?,
        };
        if out.is_some() {
            self.synced_since_checkpoint = true;
        }
        if self.want_l9 {
            // Still under the guard taken before the scan: the database file is consistent with
            // the WAL up to the position.
            match self.snapshot_l9() {
                Ok(true) => self.want_l9 = false,
                Ok(false) => {}
                Err(DbError::Raced(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if self.guard_epoch == epoch && self.conn().has_guard() {
            self.continuity = Continuity::Guarded(epoch);
        }
        // Move the guard up to the newest snapshot so app FULL checkpoints need not wait for us.
        self.renew_guard()?;
        if let Continuity::Guarded(_) = self.continuity {
            self.continuity = Continuity::Guarded(self.guard_epoch);
        }
        Ok(out)
    }

    fn open_wal(&self) -> Result<Option<(File, Option<WalHeader>)>, DbError> {
        let f = match File::open(&self.wal_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&self.wal_path)(e)),
        };
        let h = match wal_reader::read_header(&f, &self.wal_path) {
            Ok(h) => h,
            Err(WalError::InvalidHeader { reason, .. }) => {
                debug!(wal = %self.wal_path.display(), reason, "WAL header not valid (yet)");
                None
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Some((f, h)))
    }

    fn sync_inner(&mut self) -> Result<Option<SyncOutcome>, DbError> {
        if let Some(reason) = self.force_snapshot {
            return self.snapshot(reason).map(Some);
        }
        let Some(pos) = self.pos else {
            return self.snapshot("no position yet").map(Some);
        };
        let Some((wal, Some(hdr))) = self.open_wal()? else {
            // Empty or missing WAL: everything is in the database file.
            return if self.position_is_generation_end(None) {
                Ok(None)
            } else {
                self.snapshot("WAL truncated while walstream was not watching")
                    .map(Some)
            };
        };
        if hdr.page_size != self.page_size {
            return Err(DbError::Invalid {
                path: self.path.clone(),
                reason: format!(
                    "WAL page size {} differs from database page size {}",
                    hdr.page_size, self.page_size
                ),
            });
        }
        let (start, seed) = if (hdr.salt1, hdr.salt2) == pos.salts {
            (pos.offset, pos.checksum)
        } else if self.position_is_generation_end(Some((&wal, &hdr, &pos))) {
            if !std::mem::take(&mut self.own_restart) {
                self.foreign_checkpoint_at = Some(Instant::now());
            }
            (WAL_HEADER_SIZE, Some(hdr.checksum))
        } else {
            return self
                .snapshot("WAL restarted past the replicated position")
                .map(Some);
        };
        if self.probe.is_none() {
            self.probe = ShmProbe::open(&self.path);
        }
        let shm = self.probe.as_ref().and_then(|p| p.committed_frames());
        // Frames past the WAL-index's mxFrame are not committed yet, checksums or not: a writer
        // writes its frames, then publishes them in the index. Killed in between, its commit
        // frame stays valid in the file but SQLite never counts it, and a later restart
        // overwrites it. (Regression: regression_frames_past_mxframe_were_replicated, found by
        // the crash loop killing the writer: a restore went back one commit.)
        let frame = WAL_FRAME_HEADER_SIZE + self.page_size as u64;
        let mut max_bytes = self.opts.max_sync_wal_bytes;
        if let Some((s1, s2, mx)) = shm {
            if (s1, s2) == (hdr.salt1, hdr.salt2) {
                let committed_end = WAL_HEADER_SIZE + u64::from(mx) * frame;
                max_bytes = max_bytes.min(committed_end.saturating_sub(start));
                if max_bytes == 0 {
                    return Ok(None);
                }
            }
        }
        let scan = match wal_reader::scan(&wal, &self.wal_path, &hdr, start, seed, Some(max_bytes))
        {
            Ok(s) => s,
            Err(WalError::PositionLost { reason, .. }) => {
                return self
                    .snapshot_with_detail("replicated position no longer in the WAL", &reason)
                    .map(Some);
            }
            Err(e) => return Err(e.into()),
        };
        if scan.end - scan.start < max_bytes || max_bytes < self.opts.max_sync_wal_bytes {
            self.check_scan_complete(shm, &hdr, scan.end)?;
        }
        if scan.commits == 0 {
            debug!(
                db = %self.path.display(),
                start,
                end = scan.end,
                salts = ?(hdr.salt1, hdr.salt2),
                pos_salts = ?pos.salts,
                wal_len = wal.metadata().map(|m| m.len()).unwrap_or(0),
                shm = ?shm,
                "nothing new in the WAL"
            );
            if start == WAL_HEADER_SIZE && (hdr.salt1, hdr.salt2) != pos.salts {
                // New generation, nothing committed in it yet: the position moves to its start
                // only when an L0 file records it.
            }
            return Ok(None);
        }
        let txid = self.next_txid();
        let header = Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: self.page_size,
            commit: scan.commit,
            min_txid: txid,
            max_txid: txid,
            timestamp: now_ms(),
            pre_apply_checksum: 0,
            wal_offset: scan.start as i64,
            wal_size: (scan.end - scan.start) as i64,
            wal_salt1: hdr.salt1,
            wal_salt2: hdr.salt2,
            node_id: 0,
        };
        let sources: Vec<(u32, PageSource)> = scan
            .pages
            .iter()
            .map(|(&p, &o)| (p, PageSource::Wal(o)))
            .collect();
        let n = sources.len();
        self.write_l0(&header, &wal, &hdr, sources, "L0 file")?;
        crate::failpoint::hit("l0.after_write");
        self.pos = Some(Pos {
            txid,
            salts: (hdr.salt1, hdr.salt2),
            offset: scan.end,
            checksum: Some(scan.checksum),
        });
        debug!(db = %self.path.display(), txid = %txid, pages = n, wal_offset = scan.start, wal_size = scan.end - scan.start, "synced");
        Ok(Some(SyncOutcome {
            txid,
            snapshot: false,
            pages: n,
        }))
    }

    /// Checks a scan against SQLite's own count of committed frames in the WAL-index, read before
    /// the scan: if SQLite says more frames of this generation were committed than the scan
    /// reached, the scan missed some (a torn read, or frames it could not verify), and building a
    /// file from it could mix database pages of different states. `Raced` makes the caller retry.
    fn check_scan_complete(
        &self,
        shm: Option<(u32, u32, u32)>,
        hdr: &WalHeader,
        end: u64,
    ) -> Result<(), DbError> {
        let Some((s1, s2, mx)) = shm else {
            return Ok(());
        };
        if (s1, s2) != (hdr.salt1, hdr.salt2) {
            return Ok(());
        }
        let frame = WAL_FRAME_HEADER_SIZE + self.page_size as u64;
        let reached = end.saturating_sub(WAL_HEADER_SIZE) / frame;
        if reached < mx as u64 {
            debug!(db = %self.path.display(), reached, committed = mx, "scan stopped before SQLite's last committed frame; retrying");
            return Err(DbError::Raced(self.path.clone()));
        }
        Ok(())
    }

    /// Whether a WAL restart (or truncation) since `pos` provably lost nothing.
    fn position_is_generation_end(&self, new: Option<(&File, &WalHeader, &Pos)>) -> bool {
        let known = match self.continuity {
            Continuity::Guarded(e) => e == self.guard_epoch,
            Continuity::Released => true,
            Continuity::Unknown => false,
        };
        if !known {
            return false;
        }
        let Some((wal, hdr, pos)) = new else {
            return true;
        };
        // The position was taken from an empty WAL under the guard: every frame of any later
        // generation came after it.
        if pos.salts == (0, 0) && pos.offset == WAL_HEADER_SIZE {
            return matches!(self.continuity, Continuity::Guarded(_));
        }
        // Exactly one restart: SQLite adds one to salt-1 at each restart.
        if hdr.salt1 != pos.salts.0.wrapping_add(1) {
            return false;
        }
        if self.continuity == Continuity::Released {
            // A writer-initiated restart leaves old frames in place: if a valid old-generation
            // frame follows our position, something was committed after it and is now lost.
            if old_frame_follows(wal, pos, self.page_size, hdr.big_endian_checksums) {
                return false;
            }
        }
        true
    }

    fn next_txid(&self) -> TxId {
        let after_pos = self.pos.map(|p| TxId(p.txid.0 + 1)).unwrap_or(TxId(1));
        after_pos.max(self.min_next_txid)
    }

    fn snapshot_with_detail(
        &mut self,
        reason: &'static str,
        detail: &str,
    ) -> Result<SyncOutcome, DbError> {
        debug!(db = %self.path.display(), detail, "position lost");
        self.snapshot(reason)
    }

    /// A full snapshot into L0: every page up to the commit size, from the WAL where it holds the
    /// page, else from the database file, under the guard read transaction.
    fn snapshot(&mut self, reason: &'static str) -> Result<SyncOutcome, DbError> {
        let txid = self.next_txid();
        info!(db = %self.path.display(), txid = %txid, reason, "taking a full snapshot into L0");
        let dbf = self.db_file()?;
        let dbf: &File = &dbf;
        let wal = self.open_wal()?;
        let shm = self.probe.as_ref().and_then(|p| p.committed_frames());
        let (scan, hdr) = match &wal {
            Some((f, Some(h))) if h.page_size == self.page_size => {
                let s = match wal_reader::scan(
                    f,
                    &self.wal_path,
                    h,
                    WAL_HEADER_SIZE,
                    Some(h.checksum),
                    None,
                ) {
                    Ok(s) => s,
                    Err(WalError::PositionLost { .. }) => {
                        return Err(DbError::Raced(self.path.clone()))
                    }
                    Err(e) => return Err(e.into()),
                };
                (Some(s), Some(*h))
            }
            _ => (None, None),
        };
        match (&scan, &hdr) {
            (Some(sc), Some(h)) => self.check_scan_complete(shm, h, sc.end)?,
            // No readable WAL header while SQLite counts committed frames: the header is being
            // rewritten; the database file alone may be mid-checkpoint.
            _ => {
                if shm.is_some_and(|(_, _, mx)| mx > 0) && wal.is_some() {
                    return Err(DbError::Raced(self.path.clone()));
                }
            }
        }
        let commit = match &scan {
            Some(s) if s.commits > 0 => s.commit,
            _ => db_file_page_count(dbf, &self.path, self.page_size)?,
        };
        if commit == 0 {
            return Err(DbError::Invalid {
                path: self.path.clone(),
                reason: "database has no pages".into(),
            });
        }
        let wal_pages: BTreeMap<u32, u64> =
            scan.as_ref().map(|s| s.pages.clone()).unwrap_or_default();
        let lock = ltx::lock_pgno(self.page_size);
        let sources: Vec<(u32, PageSource)> = (1..=commit)
            .filter(|&p| p != lock)
            .map(|p| {
                (
                    p,
                    wal_pages
                        .get(&p)
                        .map_or(PageSource::Db, |&o| PageSource::Wal(o)),
                )
            })
            .collect();
        let (end, checksum) = match &scan {
            Some(s) => (s.end, s.checksum),
            None => (WAL_HEADER_SIZE, (0, 0)),
        };
        let header = Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: self.page_size,
            commit,
            min_txid: txid,
            max_txid: txid,
            timestamp: now_ms(),
            pre_apply_checksum: 0,
            wal_offset: WAL_HEADER_SIZE as i64,
            wal_size: end.saturating_sub(WAL_HEADER_SIZE) as i64,
            wal_salt1: hdr.map_or(0, |h| h.salt1),
            wal_salt2: hdr.map_or(0, |h| h.salt2),
            node_id: 0,
        };
        let n = sources.len();
        let (wal_file, wal_hdr) = match &wal {
            Some((f, Some(h))) => (Some(f), Some(*h)),
            _ => (None, None),
        };
        let l9 = self.snapshot_to_l9 && txid.0 > 1;
        self.write_pages(
            &header,
            wal_file.zip(wal_hdr.as_ref()),
            dbf,
            &sources,
            0,
            l9,
        )?;
        self.pos = Some(Pos {
            txid,
            salts: (header.wal_salt1, header.wal_salt2),
            offset: end,
            checksum: if scan.is_some() { Some(checksum) } else { None },
        });
        self.force_snapshot = None;
        self.snapshot_to_l9 = false;
        Ok(SyncOutcome {
            txid,
            snapshot: true,
            pages: n,
        })
    }

    fn write_l0(
        &mut self,
        header: &Header,
        wal: &File,
        wal_hdr: &WalHeader,
        sources: Vec<(u32, PageSource)>,
        _what: &'static str,
    ) -> Result<(), DbError> {
        let dbf = self.db_file()?;
        let dbf: &File = &dbf;
        self.write_pages(header, Some((wal, wal_hdr)), dbf, &sources, 0, false)
    }

    /// Encodes the pages into `ltx/0/<txid>-<txid>.ltx` (and, for `l9`, the same pages as the
    /// snapshot `ltx/9/1-<txid>.ltx`). Afterwards re-reads the WAL header: if the salts changed
    /// while pages were read, the WAL was restarted under us and the file is discarded.
    fn write_pages(
        &mut self,
        header: &Header,
        wal: Option<(&File, &WalHeader)>,
        dbf: &File,
        sources: &[(u32, PageSource)],
        level: u8,
        l9: bool,
    ) -> Result<(), DbError> {
        let ps = self.page_size as usize;
        let mut buf = std::mem::take(&mut self.page_buf);
        buf.resize(ps + WAL_FRAME_HEADER_SIZE as usize, 0);
        let path = self.path.clone();
        let wal_path = self.wal_path.clone();
        let txid = header.max_txid;
        let ltx_err = |what: &'static str| {
            let path = path.clone();
            move |source: ltx::Error| DbError::Ltx {
                path,
                what,
                txid,
                source,
            }
        };
        let read_page = |buf: &mut [u8], pgno: u32, src: PageSource| -> Result<(), DbError> {
            match src {
                PageSource::Wal(off) => {
                    let Some((f, h)) = wal else {
                        return Err(DbError::Raced(path.clone()));
                    };
                    f.read_exact_at(buf, off).map_err(io_err(&wal_path))?;
                    let fpgno = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    let s1 = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    let s2 = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]);
                    if fpgno != pgno || (s1, s2) != (h.salt1, h.salt2) {
                        return Err(DbError::Raced(path.clone()));
                    }
                    Ok(())
                }
                PageSource::Db => {
                    let off = (pgno as u64 - 1) * ps as u64;
                    dbf.read_exact_at(&mut buf[WAL_FRAME_HEADER_SIZE as usize..], off)
                        .map_err(io_err(&path))
                }
            }
        };
        let body = WAL_FRAME_HEADER_SIZE as usize;
        let probe = self.probe.as_ref();
        let res =
            self.meta
                .write_atomic(level, header.min_txid, txid, |w| -> Result<(), DbError> {
                    let mut enc = Encoder::new(w, header).map_err(ltx_err("L0 header"))?;
                    for &(pgno, src) in sources {
                        read_page(&mut buf, pgno, src)?;
                        enc.write_page(pgno, &buf[body..])
                            .map_err(ltx_err("L0 page"))?;
                    }
                    if level == SNAPSHOT_LEVEL && !db_file_holds_nothing_past(probe, header) {
                        // Not provably the state at the position: drop it, retry next sync.
                        return Err(DbError::Raced(path.clone()));
                    }
                    let (w, _) = enc.finish(0).map_err(ltx_err("L0 trailer"))?;
                    w.flush().map_err(io_err(&path))?;
                    Ok(())
                });
        let res = res.and_then(|p| {
            // Header written before any frame of a new generation: unchanged salts mean no page
            // read above saw a new generation's bytes.
            if let Some((f, h)) = wal {
                match wal_reader::read_header(f, &self.wal_path) {
                    Ok(Some(now)) if (now.salt1, now.salt2) == (h.salt1, h.salt2) => {}
                    _ => {
                        let _ = std::fs::remove_file(&p);
                        return Err(DbError::Raced(self.path.clone()));
                    }
                }
            }
            Ok(p)
        });
        if let Err(e) = res {
            self.page_buf = buf;
            return Err(e);
        }
        if l9 {
            let mut h9 = header.clone();
            h9.min_txid = TxId(1);
            let src = self.meta.level_dir(0).join(ltx::file_name(txid, txid));
            self.meta
                .write_atomic(9, TxId(1), txid, |w| -> Result<(), DbError> {
                    let f = File::open(&src).map_err(io_err(&src))?;
                    let mut dec = ltx::Decoder::new(std::io::BufReader::new(f))
                        .map_err(ltx_err("L9 source"))?;
                    let mut enc = Encoder::new(w, &h9).map_err(ltx_err("L9 header"))?;
                    let mut page = vec![0u8; ps];
                    while let Some(pgno) = dec.next_page(&mut page).map_err(ltx_err("L9 source"))? {
                        enc.write_page(pgno, &page).map_err(ltx_err("L9 page"))?;
                    }
                    dec.finish().map_err(ltx_err("L9 source"))?;
                    enc.finish(0).map_err(ltx_err("L9 trailer"))?;
                    Ok(())
                })?;
        }
        self.page_buf = buf;
        Ok(())
    }

    /// If another process is running a blocking checkpoint (it holds the write and checkpoint
    /// locks) and is waiting for our guard: copy what is committed (nobody can commit meanwhile),
    /// let the guard go, wait until the checkpoint is over, and take the guard back. Returns
    /// whether it stepped aside.
    pub fn yield_to_app_checkpoint(&mut self) -> Result<bool, DbError> {
        let Some(probe) = &self.probe else {
            self.probe = ShmProbe::open(&self.path);
            return Ok(false);
        };
        let Some(pid) = probe.blocking_checkpointer() else {
            return Ok(false);
        };
        debug!(db = %self.path.display(), pid, "app checkpoint waiting; copying the WAL tail and stepping aside");
        self.sync()?;
        // Re-check: the checkpointer still holds the write lock, so nothing was committed after
        // the scan above.
        let still = self.probe.as_ref().and_then(|p| p.blocking_checkpointer()) == Some(pid);
        if !still {
            return Ok(false);
        }
        self.conn().release_guard();
        self.guard_epoch += 1;
        self.continuity = Continuity::Released;
        self.foreign_checkpoint_at = Some(Instant::now());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let busy = self
                .probe
                .as_ref()
                .map(|p| p.checkpoint_in_progress())
                .unwrap_or(false);
            if !busy {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        self.renew_guard()?;
        Ok(true)
    }

    /// Checkpoint policy, run after syncs: PASSIVE at `min-checkpoint-page-count` WAL pages or
    /// every `checkpoint-interval` if anything was synced; TRUNCATE plus a snapshot at
    /// `truncate-page-n`.
    pub fn maybe_checkpoint(&mut self) -> Result<(), DbError> {
        if self.conn.is_none() || self.page_size == 0 {
            return Ok(());
        }
        let frame = WAL_FRAME_HEADER_SIZE + self.page_size as u64;
        // The file only shrinks on TRUNCATE: its size is the disk the WAL takes.
        let wal_len = std::fs::metadata(&self.wal_path)
            .map(|m| m.len())
            .unwrap_or(0);
        let file_frames = wal_len.saturating_sub(WAL_HEADER_SIZE) / frame;
        if file_frames >= self.opts.truncate_page_n {
            return self.emergency_truncate(file_frames);
        }
        // Frames in use: the current generation up to the replicated position (after a restart
        // the file keeps its size, but its old frames are dead).
        let live = self.live_frames(frame);
        // SQLite refuses a checkpoint, busy handler or not, while another connection runs one,
        // so each checkpoint of ours can make an app's explicit checkpoint fail. When the app
        // checkpoints the WAL itself, walstream stays out of its way until the WAL is far past
        // the threshold.
        let app_manages = self.foreign_checkpoint_at.is_some_and(|t| {
            t.elapsed() < self.opts.checkpoint_interval.max(Duration::from_secs(1))
        });
        let threshold = if app_manages {
            self.opts.min_checkpoint_page_count.saturating_mul(8)
        } else {
            self.opts.min_checkpoint_page_count
        };
        let interval_due = !app_manages
            && self.synced_since_checkpoint
            && self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval;
        if live >= threshold || interval_due {
            if self
                .probe
                .as_ref()
                .is_some_and(|p| p.checkpoint_in_progress())
            {
                return Ok(());
            }
            self.checkpoint_passive()?;
        }
        Ok(())
    }

    fn live_frames(&self, frame: u64) -> u64 {
        let Some(pos) = self.pos else { return 0 };
        let Ok(Some((_, Some(h)))) = self.open_wal() else {
            return 0;
        };
        if (h.salt1, h.salt2) != pos.salts {
            return 0;
        }
        pos.offset.saturating_sub(WAL_HEADER_SIZE) / frame
    }

    /// PASSIVE checkpoint with the guard at the newest snapshot (so it copies everything), then,
    /// holding the write lock so nobody commits, a scan to the end, the guard let go, and one
    /// write to `_litestream_seq` so the WAL restarts from its beginning.
    pub fn checkpoint_passive(&mut self) -> Result<(), DbError> {
        self.ensure_open()?;
        self.sync()?;
        let r = self.conn().checkpoint(CheckpointMode::Passive)?;
        crate::failpoint::hit("checkpoint.after_passive");
        debug!(db = %self.path.display(), busy = r.busy, log = r.log, checkpointed = r.checkpointed, "PASSIVE checkpoint");
        self.last_checkpoint = Instant::now();
        self.synced_since_checkpoint = false;
        if r.busy != 0 || r.log != r.checkpointed {
            return Ok(());
        }
        // Restart the WAL. The spare connection takes the write lock first.
        let locked = self.conn().begin_immediate_spare();
        if let Err(e) = locked {
            debug!(error = %e, "could not take the write lock to restart the WAL");
            return Ok(());
        }
        let inner = (|| -> Result<(), DbError> {
            self.sync_inner()?;
            self.conn().release_guard_keep_writer();
            self.guard_epoch += 1;
            self.continuity = Continuity::Released;
            self.own_restart = true;
            self.conn().bump_seq_in_writer()?;
            Ok(())
        })();
        let commit = self.conn().commit_writer();
        inner?;
        commit?;
        crate::failpoint::hit("checkpoint.after_restart");
        self.renew_guard()?;
        Ok(())
    }

    fn emergency_truncate(&mut self, frames: u64) -> Result<(), DbError> {
        warn!(db = %self.path.display(), frames, limit = self.opts.truncate_page_n, "WAL over truncate-page-n; emergency TRUNCATE checkpoint");
        self.sync()?;
        self.conn().release_guard();
        self.guard_epoch += 1;
        self.continuity = Continuity::Unknown;
        let r = self.conn().checkpoint(CheckpointMode::Truncate);
        crate::failpoint::hit("checkpoint.after_truncate");
        self.last_checkpoint = Instant::now();
        self.renew_guard()?;
        let r = r?;
        debug!(busy = r.busy, "TRUNCATE checkpoint");
        self.force_snapshot = Some("after emergency TRUNCATE checkpoint");
        self.sync()?;
        Ok(())
    }

    /// Asks for an L9 snapshot (`ltx/9/1-<txid>.ltx` in the meta directory, uploaded by the
    /// replica) of the state at the position after the next sync.
    pub fn request_l9_snapshot(&mut self) {
        self.want_l9 = true;
    }

    /// Writes the L9 snapshot of the state at `pos`: WAL pages of the current generation up to
    /// the position, the rest from the database file. `Ok(false)` if the position is not in the
    /// current WAL generation and not provably its end (tried again at the next sync).
    fn snapshot_l9(&mut self) -> Result<bool, DbError> {
        let Some(pos) = self.pos else {
            return Ok(false);
        };
        if self.probe.is_none() {
            self.probe = ShmProbe::open(&self.path);
        }
        let dbf = self.db_file()?;
        let dbf: &File = &dbf;
        let wal = self.open_wal()?;
        let (map, commit, wal_file, wal_hdr) = match &wal {
            Some((f, Some(h)))
                if (h.salt1, h.salt2) == pos.salts && pos.offset > WAL_HEADER_SIZE =>
            {
                let s = match wal_reader::scan(
                    f,
                    &self.wal_path,
                    h,
                    WAL_HEADER_SIZE,
                    Some(h.checksum),
                    Some(pos.offset - WAL_HEADER_SIZE),
                ) {
                    Ok(s) => s,
                    Err(WalError::PositionLost { .. }) => return Ok(false),
                    Err(e) => return Err(e.into()),
                };
                if s.end != pos.offset || s.commits == 0 {
                    return Ok(false);
                }
                (s.pages, s.commit, Some(f), Some(*h))
            }
            _ if self.position_is_generation_end(None) || pos.offset <= WAL_HEADER_SIZE => (
                BTreeMap::new(),
                db_file_page_count(dbf, &self.path, self.page_size)?,
                None,
                None,
            ),
            _ => return Ok(false),
        };
        if commit == 0 {
            return Ok(false);
        }
        let lock = ltx::lock_pgno(self.page_size);
        let sources: Vec<(u32, PageSource)> = (1..=commit)
            .filter(|&p| p != lock)
            .map(|p| {
                (
                    p,
                    map.get(&p).map_or(PageSource::Db, |&o| PageSource::Wal(o)),
                )
            })
            .collect();
        let header = Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: self.page_size,
            commit,
            min_txid: TxId(1),
            max_txid: pos.txid,
            timestamp: now_ms(),
            pre_apply_checksum: 0,
            wal_offset: WAL_HEADER_SIZE as i64,
            wal_size: pos.offset.saturating_sub(WAL_HEADER_SIZE) as i64,
            wal_salt1: pos.salts.0,
            wal_salt2: pos.salts.1,
            node_id: 0,
        };
        self.write_pages(
            &header,
            wal_file.zip(wal_hdr.as_ref()),
            dbf,
            &sources,
            SNAPSHOT_LEVEL,
            false,
        )?;
        crate::failpoint::hit("snapshot.after_write");
        info!(db = %self.path.display(), txid = %pos.txid, pages = sources.len(), "L9 snapshot written");
        Ok(true)
    }

    /// Forces a full snapshot at the next sync.
    pub fn request_snapshot(&mut self, reason: &'static str) {
        self.force_snapshot = Some(reason);
    }

    /// The configured options.
    pub fn options(&self) -> &DbOptions {
        &self.opts
    }

    /// Whether any connection or descriptor of the database, its WAL or its `-shm` is held.
    pub fn is_open(&self) -> bool {
        self.conn.is_some() || self.db_file.is_some() || self.probe.is_some()
    }

    /// Goes cold after a quiet spell: copies what is committed into L0, then lets go of every
    /// connection and descriptor. The guard state becomes unknown, so a WAL restart seen at the
    /// next sync gives a full snapshot (see ARCHITECTURE.md, "Cold databases").
    pub fn close_idle(&mut self) -> Result<(), DbError> {
        if self.conn.is_some() {
            for _ in 0..10_000 {
                if self.sync()?.is_none() {
                    break;
                }
            }
        }
        self.close("idle");
        Ok(())
    }

    /// Whether another process runs a blocking checkpoint that waits for our guard (cheap: two
    /// `fcntl(F_GETLK)` calls on the already open `-shm`).
    pub fn has_blocking_checkpointer(&self) -> bool {
        self.probe
            .as_ref()
            .is_some_and(|p| p.blocking_checkpointer().is_some())
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

    /// Lets go of the database (at shutdown).
    pub fn shutdown(&mut self) {
        self.close("shutdown");
    }

    /// The `-wal` path.
    pub fn wal_path(&self) -> &Path {
        &self.wal_path
    }
}

#[derive(Debug, Clone, Copy)]
enum PageSource {
    Wal(u64),
    Db,
}

/// Whether the frame at `pos.offset` is a valid continuation of the old generation: its salts
/// are the old ones and its checksum continues the chain from `pos.checksum`.
fn old_frame_follows(wal: &File, pos: &Pos, page_size: u32, big_endian: bool) -> bool {
    let frame = WAL_FRAME_HEADER_SIZE as usize + page_size as usize;
    let mut buf = vec![0u8; frame];
    if wal.read_exact_at(&mut buf, pos.offset).is_err() {
        return false;
    }
    let word = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    if (word(8), word(12)) != pos.salts {
        return false;
    }
    let Some(seed) = pos.checksum else {
        // Without the running checksum the frame cannot be told apart from a stale one; assume
        // the worst.
        return true;
    };
    let sum = wal_reader::wal_checksum(big_endian, seed, &buf[..8]);
    let sum = wal_reader::wal_checksum(big_endian, sum, &buf[WAL_FRAME_HEADER_SIZE as usize..]);
    sum == (word(16), word(20))
}

/// Database size in pages from the header (when valid) or the file length.
fn db_file_page_count(f: &File, path: &Path, page_size: u32) -> Result<u32, DbError> {
    let len = f.metadata().map_err(io_err(path))?.len();
    let mut h = [0u8; 100];
    if len >= 100 && f.read_exact_at(&mut h, 0).is_ok() {
        let n = u32::from_be_bytes([h[28], h[29], h[30], h[31]]);
        let change = &h[24..28];
        let valid_for = &h[92..96];
        if n > 0 && change == valid_for {
            return Ok(n);
        }
    }
    Ok((len / page_size.max(1) as u64) as u32)
}

/// Whether the database file, read for an L9 snapshot at `header`'s WAL position, can hold no
/// page newer than that position. The snapshot takes pages up to the position from the WAL and
/// the rest from the file, so a frame past the position already copied into the file (an app
/// checkpoint after walstream's guard moved on; the crash loop found a snapshot that mixed two
/// states) would tear it. Checked after every page was read: no other process is checkpointing,
/// and the WAL-index's nBackfill for the position's generation is within the position. A
/// checkpoint copies pages before it raises nBackfill, hence the lock check; after a WAL restart
/// (other salts), nothing of the new generation may have been copied yet.
fn db_file_holds_nothing_past(probe: Option<&ShmProbe>, header: &Header) -> bool {
    let Some(probe) = probe else { return false };
    if probe.checkpoint_in_progress() {
        return false;
    }
    let frame = WAL_FRAME_HEADER_SIZE + u64::from(header.page_size);
    let frames = u64::try_from(header.wal_size).unwrap_or(0) / frame;
    match probe.backfilled() {
        Some((s1, s2, n)) if (s1, s2) == (header.wal_salt1, header.wal_salt2) => {
            u64::from(n) <= frames
        }
        Some((_, _, n)) => n == 0,
        None => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn app(path: &Path) -> Connection {
        let c = Connection::open(path).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT);")
            .unwrap();
        c
    }

    fn insert(c: &Connection, n: usize) {
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..n {
            tx.execute(
                "INSERT INTO t(v) VALUES (?1)",
                [format!("{i}-{}", "v".repeat(300))],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    /// Applies every local L0 file in order into a database image.
    fn replay(db: &Db) -> Vec<u8> {
        let files = db.meta.list(0).unwrap();
        let mut image = Vec::new();
        let mut expect = files[0].min_txid.0;
        for f in files {
            assert_eq!(f.min_txid.0, expect, "gap before {:?}", f.path);
            expect = f.max_txid.0 + 1;
            let mut dec =
                ltx::Decoder::new(std::io::BufReader::new(File::open(&f.path).unwrap())).unwrap();
            let h = dec.header().clone();
            let ps = h.page_size as usize;
            image.resize(h.commit as usize * ps, 0);
            let mut page = vec![0u8; ps];
            while let Some(pgno) = dec.next_page(&mut page).unwrap() {
                let off = (pgno as usize - 1) * ps;
                image[off..off + ps].copy_from_slice(&page);
            }
            dec.finish().unwrap();
        }
        image
    }

    fn rows(image: &[u8], dir: &Path) -> i64 {
        let p = dir.join("replayed.db");
        std::fs::write(&p, image).unwrap();
        let c = Connection::open(&p).unwrap();
        assert_eq!(
            c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                .unwrap(),
            "ok"
        );
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    fn salts(wal: &Path) -> (u32, u32) {
        let f = File::open(wal).unwrap();
        let h = wal_reader::read_header(&f, wal).unwrap().unwrap();
        (h.salt1, h.salt2)
    }

    /// Regression (crash loop, seed 5029): an L9 snapshot at position P read pages from the
    /// database file that an app checkpoint had filled with frames past P (the guard had moved
    /// past P), so `restore -txid P` gave a state never committed. Now such a snapshot is
    /// refused and taken at the next sync, whose position covers the copied frames.
    #[test]
    fn regression_l9_snapshot_after_checkpoint_held_newer_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        insert(&c, 5);
        db.sync().unwrap().unwrap();
        insert(&c, 5);
        db.sync().unwrap().unwrap();
        // Committed after the position; the guard moves past it; the app checkpoints it in.
        insert(&c, 7);
        db.renew_guard().unwrap();
        let (_, log, done): (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert!(done > 0 && done == log, "checkpoint copied {done} of {log}");
        db.request_l9_snapshot();
        assert!(
            matches!(db.snapshot_l9(), Err(DbError::Raced(_)) | Ok(false)),
            "a snapshot at the old position must be refused"
        );
        assert!(db.meta.list(SNAPSHOT_LEVEL).unwrap().is_empty());
        // The next sync moves the position over the copied frames and takes the snapshot.
        db.sync().unwrap().unwrap();
        let l9 = db.meta.list(SNAPSHOT_LEVEL).unwrap();
        assert_eq!(l9.len(), 1);
        let mut dec =
            ltx::Decoder::new(std::io::BufReader::new(File::open(&l9[0].path).unwrap())).unwrap();
        let ps = dec.header().page_size as usize;
        let mut image = vec![0u8; dec.header().commit as usize * ps];
        let mut page = vec![0u8; ps];
        while let Some(pgno) = dec.next_page(&mut page).unwrap() {
            let off = (pgno as usize - 1) * ps;
            image[off..off + ps].copy_from_slice(&page);
        }
        dec.finish().unwrap();
        assert_eq!(rows(&image, dir.path()), 17);
    }

    /// Regression (crash loop, seed 5086): a writer killed after appending its frames to the WAL
    /// but before publishing them in the WAL-index leaves a valid commit frame that SQLite never
    /// counts (and later overwrites). walstream replicated it, so a later snapshot of the real
    /// database went back one commit. Now the scan stops at the index's mxFrame.
    #[test]
    fn regression_frames_past_mxframe_were_replicated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        insert(&c, 3);
        db.sync().unwrap().unwrap();
        let before = db.pos.unwrap();
        // Append one valid commit frame (the last page again) without touching the -shm.
        let wal_path = db.wal_path().to_path_buf();
        let wal = File::options()
            .read(true)
            .write(true)
            .open(&wal_path)
            .unwrap();
        let hdr = wal_reader::read_header(&wal, &wal_path).unwrap().unwrap();
        let ps = hdr.page_size as u64;
        let fsz = WAL_FRAME_HEADER_SIZE + ps;
        let end = wal.metadata().unwrap().len();
        assert_eq!(end, before.offset, "the WAL ends at the position");
        let mut last = vec![0u8; fsz as usize];
        wal.read_exact_at(&mut last, end - fsz).unwrap();
        let seed = (
            u32::from_be_bytes(last[16..20].try_into().unwrap()),
            u32::from_be_bytes(last[20..24].try_into().unwrap()),
        );
        let commit = u32::from_be_bytes(last[4..8].try_into().unwrap());
        let mut frame = vec![0u8; fsz as usize];
        frame[0..4].copy_from_slice(&last[0..4]);
        frame[4..8].copy_from_slice(&commit.to_be_bytes());
        frame[8..12].copy_from_slice(&hdr.salt1.to_be_bytes());
        frame[12..16].copy_from_slice(&hdr.salt2.to_be_bytes());
        frame[24..].copy_from_slice(&last[24..]);
        let mut summed = frame[0..8].to_vec();
        summed.extend_from_slice(&frame[24..]);
        let (c1, c2) = wal_reader::wal_checksum(hdr.big_endian_checksums, seed, &summed);
        frame[16..20].copy_from_slice(&c1.to_be_bytes());
        frame[20..24].copy_from_slice(&c2.to_be_bytes());
        wal.write_all_at(&frame, end).unwrap();
        // The frame is valid on its own: a scan without the index would take it.
        let scan = wal_reader::scan(&wal, &wal_path, &hdr, end, Some(seed), None).unwrap();
        assert_eq!(scan.commits, 1);
        // walstream does not: it is not committed until SQLite's index says so.
        assert!(
            db.sync().unwrap().is_none(),
            "replicated an unpublished frame"
        );
        assert_eq!(db.pos.unwrap().offset, before.offset);
    }

    #[test]
    fn db_passive_checkpoint_restarts_wal_without_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        let opts = DbOptions {
            min_checkpoint_page_count: 10,
            ..DbOptions::default()
        };
        let mut db = Db::new(&path, opts).unwrap();
        let first = db.sync().unwrap().unwrap();
        assert!(first.snapshot);
        insert(&c, 200);
        let before = salts(db.wal_path());
        assert!(db.sync().unwrap().is_some());
        db.maybe_checkpoint().unwrap();
        insert(&c, 10);
        let after = salts(db.wal_path());
        assert_ne!(
            before, after,
            "WAL did not restart after walstream's PASSIVE checkpoint"
        );
        assert_eq!(after.0, before.0.wrapping_add(1));
        let o = db.sync().unwrap().unwrap();
        assert!(!o.snapshot, "needless snapshot after our own checkpoint");
        assert_eq!(rows(&replay(&db), dir.path()), 210);
    }

    #[test]
    fn db_app_truncate_while_stopped_takes_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        insert(&c, 50);
        {
            let mut db = Db::new(&path, DbOptions::default()).unwrap();
            db.sync().unwrap();
            db.shutdown();
        }
        // While walstream is down: more commits, then the app truncates the WAL.
        insert(&c, 30);
        let busy: i64 = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0);
        insert(&c, 5);
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        let o = db.sync().unwrap().unwrap();
        assert!(
            o.snapshot,
            "frames lost from the WAL must lead to a full snapshot"
        );
        assert_eq!(o.txid, TxId(2), "TXIDs continue from the local position");
        assert_eq!(rows(&replay(&db), dir.path()), 85);
    }

    #[test]
    fn db_restart_resumes_from_local_position_without_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        insert(&c, 20);
        {
            let mut db = Db::new(&path, DbOptions::default()).unwrap();
            db.sync().unwrap();
        }
        insert(&c, 20);
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        let o = db.sync().unwrap().unwrap();
        assert!(!o.snapshot);
        assert_eq!(o.txid, TxId(2));
        assert_eq!(rows(&replay(&db), dir.path()), 40);
    }

    #[test]
    fn db_emergency_truncate_takes_snapshot_and_empties_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        let opts = DbOptions {
            truncate_page_n: 50,
            min_checkpoint_page_count: 1_000_000,
            ..DbOptions::default()
        };
        let mut db = Db::new(&path, opts).unwrap();
        db.sync().unwrap();
        insert(&c, 400);
        db.sync().unwrap();
        db.maybe_checkpoint().unwrap();
        let wal_len = std::fs::metadata(db.wal_path()).unwrap().len();
        assert!(
            wal_len < 50 * 4096,
            "WAL still {wal_len} bytes after the emergency TRUNCATE"
        );
        insert(&c, 1);
        db.sync().unwrap();
        assert_eq!(rows(&replay(&db), dir.path()), 401);
    }

    #[test]
    fn db_max_sync_wal_bytes_splits_backlog_at_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        let opts = DbOptions {
            max_sync_wal_bytes: 64 * 1024,
            ..DbOptions::default()
        };
        let mut db = Db::new(&path, opts).unwrap();
        db.sync().unwrap();
        for _ in 0..20 {
            insert(&c, 30);
        }
        let mut n = 0;
        while db.sync().unwrap().is_some() {
            n += 1;
        }
        assert!(n > 3, "backlog was not split: {n} files");
        assert_eq!(rows(&replay(&db), dir.path()), 600);
    }

    #[test]
    fn db_not_in_wal_mode_is_switched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
            .unwrap();
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        db.sync().unwrap();
        let mode: String = Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn db_l9_snapshot_equals_replayed_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let c = app(&path);
        let mut db = Db::new(&path, DbOptions::default()).unwrap();
        db.sync().unwrap();
        insert(&c, 300);
        c.execute("DELETE FROM t WHERE id % 3 = 0", []).unwrap();
        db.request_l9_snapshot();
        db.sync().unwrap();
        let l9 = db.meta.list(SNAPSHOT_LEVEL).unwrap();
        assert_eq!(l9.len(), 1);
        assert_eq!(l9[0].min_txid, TxId(1));
        assert_eq!(Some(l9[0].max_txid), db.local_txid());
        let mut dec =
            ltx::Decoder::new(std::io::BufReader::new(File::open(&l9[0].path).unwrap())).unwrap();
        let h = dec.header().clone();
        let ps = h.page_size as usize;
        let mut image = vec![0u8; h.commit as usize * ps];
        let mut page = vec![0u8; ps];
        while let Some(pgno) = dec.next_page(&mut page).unwrap() {
            image[(pgno as usize - 1) * ps..pgno as usize * ps].copy_from_slice(&page);
        }
        dec.finish().unwrap();
        assert_eq!(image, replay(&db));
        assert_eq!(rows(&image, dir.path()), 200);
        // Asked once, written once.
        insert(&c, 1);
        db.sync().unwrap();
        assert_eq!(db.meta.list(SNAPSHOT_LEVEL).unwrap().len(), 1);
    }
}
