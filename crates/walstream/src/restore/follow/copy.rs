//! The followed copy: pages are written in place while SQLite's own EXCLUSIVE lock is held, so
//! concurrent readers of the copy see either the state before a batch or the state after it.
//!
//! - The copy is kept in rollback-journal mode (header bytes 18 and 19 set to 1). A header saying
//!   WAL would send readers to `-wal`/`-shm`, whose index knows nothing of writes made to the
//!   database file, so their page caches would never be invalidated.
//! - A batch runs inside `BEGIN EXCLUSIVE` on a rusqlite connection to the copy, held by this
//!   process. SQLite takes PENDING (no new readers) and waits out the readers' SHARED locks
//!   (busy timeout), then EXCLUSIVE. The pages are written through this module's own descriptor:
//!   POSIX locks belong to the process, so its writes are not blocked by the lock it holds.
//!   The descriptor stays open as long as the connection: closing any descriptor of the file
//!   would drop SQLite's locks.
//! - Page 1 goes last, with the file change counter (offset 24) and version-valid-for (92) set to
//!   the old counter plus one and the in-header database size (28) set to the batch's commit.
//!   A reader that takes its SHARED lock compares bytes 24..40 with what it cached and drops its
//!   cache when they differ. Since page 1 is written last, a follower killed mid-batch leaves the
//!   old counter (or the new one with every page written), which is how a restart knows the copy
//!   is still its own; re-applying the files after the recorded TXID repairs a torn batch, since
//!   every page it touched is in them.
//! - The connection never writes through SQLite, so no journal is created and COMMIT only
//!   releases the lock.
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{ErrorCode, OpenFlags};
use tracing::{debug, warn};

use super::FollowError;

/// The SQLite header magic.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Busy timeout of one `BEGIN EXCLUSIVE` attempt; attempts repeat until the lock is had.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the first 100 bytes of a database say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbHeader {
    /// Page size in bytes.
    pub page_size: u32,
    /// Bytes 18 and 19: 1 for rollback journal, 2 for WAL.
    pub write_version: u8,
    /// Byte 19.
    pub read_version: u8,
    /// File change counter (offset 24).
    pub change_counter: u32,
    /// In-header database size in pages (offset 28).
    pub db_size: u32,
}

impl DbHeader {
    /// Parses a header; `None` if it is not a SQLite database header.
    pub fn parse(b: &[u8]) -> Option<DbHeader> {
        if b.get(..16)? != MAGIC {
            return None;
        }
        let be16 = |o: usize| -> Option<u32> {
            let s = b.get(o..o + 2)?;
            Some(u32::from(u16::from_be_bytes([s[0], s[1]])))
        };
        let be32 = |o: usize| -> Option<u32> {
            let s: [u8; 4] = b.get(o..o + 4)?.try_into().ok()?;
            Some(u32::from_be_bytes(s))
        };
        let page_size = match be16(16)? {
            1 => 65536,
            n if n >= 512 && n.is_power_of_two() => n,
            _ => return None,
        };
        Some(DbHeader {
            page_size,
            write_version: *b.get(18)?,
            read_version: *b.get(19)?,
            change_counter: be32(24)?,
            db_size: be32(28)?,
        })
    }

    /// Whether SQLite opens it in rollback-journal mode.
    pub fn is_rollback(&self) -> bool {
        self.write_version == 1 && self.read_version == 1
    }
}

/// Sets page 1's header for the copy: rollback-journal mode, change counter and
/// version-valid-for = `counter`, in-header size = `commit`. A page shorter than the header is
/// left alone (it cannot be a valid page 1).
pub fn patch_page1(page: &mut [u8], counter: u32, commit: u32) {
    if page.len() < 100 {
        return;
    }
    page[18] = 1;
    page[19] = 1;
    page[24..28].copy_from_slice(&counter.to_be_bytes());
    page[28..32].copy_from_slice(&commit.to_be_bytes());
    page[92..96].copy_from_slice(&counter.to_be_bytes());
}

/// Reads the header of the database at `path` (without keeping the file open).
/// `Ok(None)` if the file is not a SQLite database.
///
/// Never call this on the copy while a [`Copy`] is open in this process: closing the descriptor
/// would drop the connection's locks.
pub fn read_header(path: &Path) -> std::io::Result<Option<DbHeader>> {
    let f = File::open(path)?;
    let mut b = [0u8; 100];
    match f.read_exact_at(&mut b, 0) {
        Ok(()) => Ok(DbHeader::parse(&b)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// Rewrites page 1 of a database that nobody has open yet (the staging file of a full restore)
/// for the copy; returns the change counter written.
pub fn prepare_new_copy(path: &Path, commit: u32) -> Result<u32, FollowError> {
    let io = |e| FollowError::io(path, e);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let mut b = [0u8; 100];
    f.read_exact_at(&mut b, 0).map_err(io)?;
    let Some(h) = DbHeader::parse(&b) else {
        return Err(FollowError::NotADatabase {
            path: path.to_path_buf(),
        });
    };
    let counter = h.change_counter.wrapping_add(1);
    patch_page1(&mut b, counter, commit);
    f.write_all_at(&b, 0).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(counter)
}

/// The copy, open for applying batches.
pub struct Copy {
    path: PathBuf,
    /// Declared before `file`: dropped first, so SQLite's descriptor closes before ours.
    conn: rusqlite::Connection,
    file: File,
    page_size: u32,
}

impl Copy {
    /// Opens the copy; it must be a database in rollback-journal mode.
    pub fn open(path: &Path) -> Result<Copy, FollowError> {
        let io = |e| FollowError::io(path, e);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io)?;
        let mut b = [0u8; 100];
        file.read_exact_at(&mut b, 0).map_err(io)?;
        let h = DbHeader::parse(&b).ok_or_else(|| FollowError::NotADatabase {
            path: path.to_path_buf(),
        })?;
        if !h.is_rollback() {
            return Err(FollowError::NotRollback {
                path: path.to_path_buf(),
            });
        }
        let sqlite = |source| FollowError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = rusqlite::Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
        Ok(Copy {
            path: path.to_path_buf(),
            conn,
            file,
            page_size: h.page_size,
        })
    }

    /// Page size of the copy.
    pub fn page_size(&self) -> u32 {
        self.page_size
    }

    /// The copy's header, read through the descriptor this `Copy` holds.
    pub fn header(&self) -> Result<DbHeader, FollowError> {
        let mut b = [0u8; 100];
        self.file.read_exact_at(&mut b, 0).map_err(|e| self.io(e))?;
        DbHeader::parse(&b).ok_or_else(|| FollowError::NotADatabase {
            path: self.path.clone(),
        })
    }

    fn sqlite(&self, source: rusqlite::Error) -> FollowError {
        FollowError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn io(&self, e: std::io::Error) -> FollowError {
        FollowError::io(&self.path, e)
    }

    /// Takes SQLite's EXCLUSIVE lock, waiting for readers as long as it takes.
    fn lock(&self) -> Result<(), FollowError> {
        let started = Instant::now();
        let mut warned = false;
        loop {
            match self.conn.execute_batch("BEGIN EXCLUSIVE") {
                Ok(()) => {
                    debug!(waited = ?started.elapsed(), "follow: exclusive lock taken");
                    return Ok(());
                }
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
                {
                    if !warned {
                        warn!(path = %self.path.display(), waited = ?started.elapsed(), "follow: readers hold the copy; still waiting for the exclusive lock");
                        warned = true;
                    }
                }
                Err(e) => return Err(self.sqlite(e)),
            }
        }
    }

    /// Applies one batch: every page `next_page` yields (ascending pgno, each at most once),
    /// then page 1 with the new counter, then the size `commit`. Returns the counter written.
    pub fn apply(
        &mut self,
        commit: u32,
        mut next_page: impl FnMut(&mut [u8]) -> Result<Option<u32>, FollowError>,
    ) -> Result<u32, FollowError> {
        let ps = self.page_size as usize;
        let lock_page = ltx::lock_pgno(self.page_size);
        self.lock()?;
        let result: Result<u32, FollowError> = (|| {
            let mut hdr = [0u8; 100];
            self.file
                .read_exact_at(&mut hdr, 0)
                .map_err(|e| self.io(e))?;
            let old = DbHeader::parse(&hdr).ok_or_else(|| FollowError::NotADatabase {
                path: self.path.clone(),
            })?;
            let mut buf = vec![0u8; ps];
            let mut page1: Option<Vec<u8>> = None;
            while let Some(pgno) = next_page(&mut buf)? {
                if pgno == lock_page || pgno == 0 || pgno > commit {
                    continue;
                }
                if pgno == 1 {
                    page1 = Some(buf.clone());
                    continue;
                }
                let off = u64::from(pgno - 1) * ps as u64;
                self.file.write_all_at(&buf, off).map_err(|e| self.io(e))?;
            }
            let mut p1 = match page1 {
                Some(p) => p,
                None => {
                    self.file
                        .read_exact_at(&mut buf, 0)
                        .map_err(|e| self.io(e))?;
                    buf
                }
            };
            let counter = old.change_counter.wrapping_add(1);
            patch_page1(&mut p1, counter, commit);
            self.file.write_all_at(&p1, 0).map_err(|e| self.io(e))?;
            self.file
                .set_len(u64::from(commit) * ps as u64)
                .map_err(|e| self.io(e))?;
            self.file.sync_data().map_err(|e| self.io(e))?;
            Ok(counter)
        })();
        // Nothing was written through SQLite: COMMIT (or ROLLBACK) only releases the lock.
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let released = self.conn.execute_batch(end).map_err(|e| self.sqlite(e));
        let counter = result?;
        released?;
        Ok(counter)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn make_db(path: &Path) {
        let c = rusqlite::Connection::open(path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1); PRAGMA wal_checkpoint(TRUNCATE);",
        )
        .unwrap();
    }

    #[test]
    fn patch_page1_sets_rollback_counter_and_size() {
        let mut p = vec![0u8; 512];
        p[18] = 2;
        p[19] = 2;
        patch_page1(&mut p, 0x01020304, 77);
        assert_eq!((p[18], p[19]), (1, 1));
        assert_eq!(&p[24..28], &[1, 2, 3, 4]);
        assert_eq!(&p[92..96], &[1, 2, 3, 4]);
        assert_eq!(&p[28..32], &77u32.to_be_bytes());
        let mut short = vec![9u8; 50];
        patch_page1(&mut short, 1, 1);
        assert_eq!(short, vec![9u8; 50]);
    }

    #[test]
    fn db_header_parse_rejects_non_databases() {
        assert_eq!(DbHeader::parse(&[0u8; 100]), None);
        assert_eq!(DbHeader::parse(b"SQLite format 3\0"), None);
        let mut b = [0u8; 100];
        b[..16].copy_from_slice(MAGIC);
        b[16] = 0;
        b[17] = 3; // page size 3
        assert_eq!(DbHeader::parse(&b), None);
        b[16] = 0;
        b[17] = 1; // 1 means 65536
        assert_eq!(DbHeader::parse(&b).unwrap().page_size, 65536);
    }

    #[test]
    fn copy_refuses_wal_mode_header_until_prepared() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.db");
        make_db(&p);
        assert!(matches!(
            Copy::open(&p),
            Err(FollowError::NotRollback { .. })
        ));
        let h = read_header(&p).unwrap().unwrap();
        let counter = prepare_new_copy(&p, h.db_size).unwrap();
        assert_eq!(counter, h.change_counter.wrapping_add(1));
        let copy = Copy::open(&p).unwrap();
        assert_eq!(copy.page_size(), h.page_size);
    }

    #[test]
    fn copy_apply_invalidates_a_readers_cache() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.db");
        let out = dir.path().join("out.db");
        make_db(&src);
        std::fs::copy(&src, &out).unwrap();
        let h = read_header(&out).unwrap().unwrap();
        prepare_new_copy(&out, h.db_size).unwrap();
        let reader = rusqlite::Connection::open_with_flags(
            &out,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .unwrap();
        let n: i64 = reader
            .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);

        // Change the source, then copy all of its pages into the copy as one batch.
        let c = rusqlite::Connection::open(&src).unwrap();
        c.execute_batch("INSERT INTO t VALUES (41); PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
        drop(c);
        let new = std::fs::read(&src).unwrap();
        let sh = DbHeader::parse(&new).unwrap();
        let ps = sh.page_size as usize;
        let pages = new.len() / ps;
        let mut copy = Copy::open(&out).unwrap();
        let before = read_header(&src).unwrap().unwrap();
        let mut next = 1usize;
        let counter = copy
            .apply(pages as u32, |buf| {
                if next > pages {
                    return Ok(None);
                }
                buf.copy_from_slice(&new[(next - 1) * ps..next * ps]);
                next += 1;
                Ok(Some((next - 1) as u32))
            })
            .unwrap();
        assert_ne!(counter, before.change_counter);
        // The same reader connection sees the new state: its cache was dropped.
        let n: i64 = reader
            .query_row("SELECT sum(x) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 42);
        drop(copy);
        let h = read_header(&out).unwrap().unwrap();
        assert!(h.is_rollback());
        assert_eq!(h.change_counter, counter);
        assert_eq!(h.db_size, pages as u32);
    }
}
