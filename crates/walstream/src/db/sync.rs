//! One sync: newly committed WAL frames into an L0 file, the position it leaves, and the guard
//! renewal around it; building LTX files from WAL and database pages.
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Instant;

use ltx::{Encoder, Header, TxId, FLAG_NO_CHECKSUM};
use tracing::debug;

use super::guard::Proof;
use super::snapshot::db_file_holds_nothing_past;
use super::{io_err, now_ms, Db, DbError, Pos, SyncOutcome};
use crate::sqlite::locks::ShmProbe;
use crate::sqlite::wal_reader::{
    self, WalError, WalHeader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};
use crate::storage::SNAPSHOT_LEVEL;

impl Db {
    /// Takes or moves the guard read transaction to the newest snapshot.
    pub(super) fn renew_guard(&mut self) -> Result<(), DbError> {
        let had = self.conn().has_guard();
        if let Err(e) = self.conn().renew_guard() {
            self.guard.maybe_lost();
            return Err(e.into());
        }
        if !had {
            self.guard.taken();
        }
        Ok(())
    }

    /// One sync: copy newly committed WAL frames into a new L0 file (or a full snapshot when the
    /// position was lost). Returns what was written, if anything.
    pub fn sync(&mut self) -> Result<Option<SyncOutcome>, DbError> {
        // Metrics hook (litestream_sync_*): the sync itself is `sync_unmeasured`.
        let timer = crate::metrics::db::SyncTimer::start();
        let r = self.sync_unmeasured();
        let wal_bytes = match &r {
            Ok(Some(o)) => o.pages as u64 * (u64::from(self.page_size) + 24),
            _ => 0,
        };
        timer.finish(&self.path, wal_bytes, &r);
        r
    }

    fn sync_unmeasured(&mut self) -> Result<Option<SyncOutcome>, DbError> {
        self.ensure_open()?;
        // The guard is taken before the scan so that a WAL restart seen later is attributable.
        if !self.conn().has_guard() {
            self.renew_guard()?;
        }
        let ticket = self.guard.scan_ticket();
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
        let held = self.conn().has_guard();
        self.guard.scan_reached_position(ticket, held);
        // Move the guard up to the newest snapshot so app FULL checkpoints need not wait for us.
        // (Moving it keeps the holding unbroken: the new read transaction begins before the old
        // one ends, so the claim just made stays valid.)
        self.renew_guard()?;
        Ok(out)
    }

    pub(super) fn open_wal(&self) -> Result<Option<(File, Option<WalHeader>)>, DbError> {
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

    pub(super) fn sync_inner(&mut self) -> Result<Option<SyncOutcome>, DbError> {
        self.unpublished = false;
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
                self.unpublished = wal_reader::frame_continues(
                    &wal,
                    &self.wal_path,
                    committed_end,
                    self.page_size,
                    hdr.big_endian_checksums,
                    (hdr.salt1, hdr.salt2),
                    None,
                )
                .unwrap_or(false);
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
    pub(super) fn check_scan_complete(
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
    pub(super) fn position_is_generation_end(
        &self,
        new: Option<(&File, &WalHeader, &Pos)>,
    ) -> bool {
        let Some(proof) = self.guard.proof() else {
            return false;
        };
        let Some((wal, hdr, pos)) = new else {
            return true;
        };
        // The position was taken from an empty WAL under the guard: every frame of any later
        // generation came after it.
        if pos.salts == (0, 0) && pos.offset == WAL_HEADER_SIZE {
            return proof == Proof::Guarded;
        }
        // Exactly one restart: SQLite adds one to salt-1 at each restart.
        if hdr.salt1 != pos.salts.0.wrapping_add(1) {
            return false;
        }
        if proof == Proof::Released {
            // A writer-initiated restart leaves old frames in place: if a valid old-generation
            // frame follows our position, something was committed after it and is now lost.
            if old_frame_follows(
                wal,
                &self.wal_path,
                pos,
                self.page_size,
                hdr.big_endian_checksums,
            ) {
                return false;
            }
        }
        true
    }

    pub(super) fn next_txid(&self) -> TxId {
        let after_pos = self.pos.map(|p| TxId(p.txid.0 + 1)).unwrap_or(TxId(1));
        after_pos.max(self.min_next_txid)
    }

    pub(super) fn write_l0(
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
    pub(super) fn write_pages(
        &mut self,
        header: &Header,
        wal: Option<(&File, &WalHeader)>,
        dbf: &File,
        sources: &[(u32, PageSource)],
        level: u8,
        l9: bool,
    ) -> Result<(), DbError> {
        let page_size = self.page_size;
        let ps = page_size as usize;
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
                    // The frame may have been reused by a restart since the scan.
                    match wal_reader::read_frame_at(
                        f,
                        &wal_path,
                        off,
                        page_size,
                        pgno,
                        (h.salt1, h.salt2),
                        buf,
                    ) {
                        Ok(()) => Ok(()),
                        Err(WalError::PositionLost { .. }) => Err(DbError::Raced(path.clone())),
                        Err(e) => Err(e.into()),
                    }
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
}

#[derive(Debug, Clone, Copy)]
pub(super) enum PageSource {
    Wal(u64),
    Db,
}

/// Whether the frame at `pos.offset` is a valid continuation of the old generation: its salts
/// are the old ones and its checksum continues the chain from `pos.checksum`. Without the running
/// checksum the frame cannot be told apart from a stale one, so salts alone count (the worst is
/// assumed). An unreadable frame is no continuation.
fn old_frame_follows(
    wal: &File,
    wal_path: &Path,
    pos: &Pos,
    page_size: u32,
    big_endian: bool,
) -> bool {
    matches!(
        wal_reader::frame_continues(
            wal,
            wal_path,
            pos.offset,
            page_size,
            big_endian,
            pos.salts,
            pos.checksum,
        ),
        Ok(true)
    )
}
