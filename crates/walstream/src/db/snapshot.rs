//! Full snapshots into L0 (position lost, replica gap, emergency TRUNCATE) and L9 snapshots
//! (`snapshot.interval`).
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use ltx::{Header, TxId, FLAG_NO_CHECKSUM};
use tracing::{debug, info};

use super::sync::PageSource;
use super::{io_err, now_ms, Db, DbError, Pos, SyncOutcome};
use crate::sqlite::locks::ShmProbe;
use crate::sqlite::wal_reader::{self, WalError, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE};
use crate::storage::SNAPSHOT_LEVEL;

impl Db {
    pub(super) fn snapshot_with_detail(
        &mut self,
        reason: &'static str,
        detail: &str,
    ) -> Result<SyncOutcome, DbError> {
        debug!(db = %self.path.display(), detail, "position lost");
        self.snapshot(reason)
    }

    /// A full snapshot into L0: every page up to the commit size, from the WAL where it holds the
    /// page, else from the database file, under the guard read transaction.
    pub(super) fn snapshot(&mut self, reason: &'static str) -> Result<SyncOutcome, DbError> {
        let txid = self.next_txid();
        info!(db = %self.path.display(), txid = %txid, reason, "taking a full snapshot into L0");
        let dbf = self.db_file()?;
        let dbf: &File = &dbf;
        let wal = self.open_wal()?;
        let shm = self.probe.as_ref().and_then(|p| p.committed_frames());
        let (scan, hdr) = match &wal {
            Some((f, Some(h))) if h.page_size == self.page_size => {
                // Only what the WAL-index counts as committed: frames past mxFrame with valid
                // checksums may be a killed writer's commit that SQLite will overwrite (the same
                // rule as a sync's scan).
                let frame = WAL_FRAME_HEADER_SIZE + u64::from(self.page_size);
                let limit = shm
                    .filter(|&(s1, s2, _)| (s1, s2) == (h.salt1, h.salt2))
                    .map(|(_, _, mx)| u64::from(mx) * frame);
                let s = match wal_reader::scan(
                    f,
                    &self.wal_path,
                    h,
                    WAL_HEADER_SIZE,
                    Some(h.checksum),
                    limit,
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

    /// Asks for an L9 snapshot (`ltx/9/1-<txid>.ltx` in the meta directory, uploaded by the
    /// replica) of the state at the position after the next sync.
    pub fn request_l9_snapshot(&mut self) {
        self.want_l9 = true;
    }

    /// Writes the L9 snapshot of the state at `pos`: WAL pages of the current generation up to
    /// the position, the rest from the database file. `Ok(false)` if the position is not in the
    /// current WAL generation and not provably its end (tried again at the next sync).
    pub(super) fn snapshot_l9(&mut self) -> Result<bool, DbError> {
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
}

/// Database size in pages from the header (when valid) or the file length.
pub(super) fn db_file_page_count(f: &File, path: &Path, page_size: u32) -> Result<u32, DbError> {
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
pub(super) fn db_file_holds_nothing_past(probe: Option<&ShmProbe>, header: &Header) -> bool {
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
