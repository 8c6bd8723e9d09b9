//! The SQLite WAL file: header, frames, salts, cumulative checksums, commit boundaries. Reads only.
//!
//! Format (<https://www.sqlite.org/fileformat.html#the_write_ahead_log>): a 32-byte header, then frames
//! of a 24-byte header plus one page. A frame whose `commit` field is non-zero ends a transaction.
//!
//! A frame is valid only while its salts equal the header's and its stored checksum equals the
//! cumulative checksum of every earlier frame (seeded by the header's). SQLite itself stops
//! recovery at the first frame that fails either test; so does [`scan`], which then keeps only
//! the frames up to the last commit frame before it.
use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Size of the WAL header.
pub const WAL_HEADER_SIZE: u64 = 32;
/// Size of a frame header.
pub const WAL_FRAME_HEADER_SIZE: u64 = 24;

/// Header magic when checksums are computed over little-endian words.
const MAGIC_LE: u32 = 0x377f_0682;
/// Header magic when checksums are computed over big-endian words.
const MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL format version SQLite writes.
const WAL_VERSION: u32 = 3_007_000;
/// How much [`scan`] reads per system call, rounded down to whole frames (at least one).
const SCAN_CHUNK: usize = 256 * 1024;

/// Errors reading a WAL. Never panics on file content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// I/O on the WAL file failed.
    #[error("reading WAL {path}: {source}")]
    Io {
        /// The WAL file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Header magic, version, page size or header checksum is wrong.
    #[error("invalid WAL header in {path}: {reason}")]
    InvalidHeader {
        /// The WAL file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// `start` does not continue the frame chain of this WAL generation (salts or checksum differ,
    /// or the file is shorter): the WAL was restarted or truncated since that position was taken.
    #[error("WAL {path} no longer continues at offset {offset}: {reason}")]
    PositionLost {
        /// The WAL file.
        path: PathBuf,
        /// The offset asked for.
        offset: u64,
        /// What did not match.
        reason: String,
    },
}

impl WalError {
    /// Whether this is [`WalError::PositionLost`]: the caller must start over (offset 32 of the
    /// new generation, or a snapshot) rather than retry.
    pub fn is_position_lost(&self) -> bool {
        matches!(self, WalError::PositionLost { .. })
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        WalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn lost(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        WalError::PositionLost {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

/// The 32-byte WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// True for magic 0x377f0683 (checksums over big-endian words), false for 0x377f0682.
    pub big_endian_checksums: bool,
    /// Page size.
    pub page_size: u32,
    /// Checkpoint sequence number.
    pub checkpoint_seq: u32,
    /// Salt 1.
    pub salt1: u32,
    /// Salt 2.
    pub salt2: u32,
    /// Header checksum words (the seed of the frame checksum chain).
    pub checksum: (u32, u32),
}

impl WalHeader {
    /// Size of one frame: frame header plus page.
    pub fn frame_size(&self) -> u64 {
        WAL_FRAME_HEADER_SIZE + u64::from(self.page_size)
    }

    /// Byte offset of the frame header of frame `index` (0-based).
    pub fn frame_offset(&self, index: u64) -> u64 {
        WAL_HEADER_SIZE.saturating_add(index.saturating_mul(self.frame_size()))
    }

    /// WAL bytes needed for `frames` frames: `32 + (24 + page size) * frames`, the size that
    /// checkpoint thresholds count in.
    pub fn wal_size(&self, frames: u64) -> u64 {
        self.frame_offset(frames)
    }

    /// Parses and verifies the 32 header bytes.
    pub fn parse(b: &[u8; WAL_HEADER_SIZE as usize]) -> Result<WalHeader, String> {
        let magic = be32(b, 0);
        let big_endian_checksums = match magic {
            MAGIC_LE => false,
            MAGIC_BE => true,
            _ => return Err(format!("bad magic {magic:#010x}")),
        };
        let version = be32(b, 4);
        if version != WAL_VERSION {
            return Err(format!("unsupported version {version}"));
        }
        let page_size = match be32(b, 8) {
            // SQLite writes 65536 itself; 1 is how the database header spells it, accepted too.
            1 => 65536,
            n if (512..=65536).contains(&n) && n.is_power_of_two() => n,
            n => return Err(format!("invalid page size {n}")),
        };
        let stored = (be32(b, 24), be32(b, 28));
        let computed = wal_checksum(big_endian_checksums, (0, 0), &b[..24]);
        if stored != computed {
            return Err(format!(
                "header checksum {:08x}{:08x} != computed {:08x}{:08x}",
                stored.0, stored.1, computed.0, computed.1
            ));
        }
        Ok(WalHeader {
            big_endian_checksums,
            page_size,
            checkpoint_seq: be32(b, 12),
            salt1: be32(b, 16),
            salt2: be32(b, 20),
            checksum: stored,
        })
    }
}

/// Committed pages found by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalScan {
    /// The header the scan checked frames against.
    pub header: WalHeader,
    /// Where the scan started (a frame boundary).
    pub start: u64,
    /// Offset just past the last commit frame taken (== `start` if none).
    pub end: u64,
    /// Database size in pages at the last commit taken (0 if none).
    pub commit: u32,
    /// Latest committed version of each page, as pgno -> frame offset (frame header start).
    /// Pages above `commit` are dropped.
    pub pages: BTreeMap<u32, u64>,
    /// Cumulative checksum after the last commit frame taken: the seed to resume at `end`.
    pub checksum: (u32, u32),
    /// Number of commit frames taken.
    pub commits: usize,
}

/// SQLite's `walChecksumBytes`: a running checksum over pairs of u32 words. `b.len()` is a
/// multiple of 8 for every caller (24-byte header prefix, 8-byte frame prefix, power-of-two
/// pages); a ragged tail would be ignored.
pub fn wal_checksum(big_endian: bool, seed: (u32, u32), b: &[u8]) -> (u32, u32) {
    let (mut s0, mut s1) = seed;
    for w in b.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (
                u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_be_bytes([w[4], w[5], w[6], w[7]]),
            )
        } else {
            (
                u32::from_le_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_le_bytes([w[4], w[5], w[6], w[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

/// Big-endian u32 at `at`; callers pass fixed-size buffers at least `at + 4` long.
fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// Reads into `buf` at `offset` until it is full or the file ends; returns the bytes read.
/// A WAL that is concurrently truncated shows up as a short read, not an error.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Reads and verifies the header. `Ok(None)` if the file is shorter than 32 bytes (empty WAL).
pub fn read_header(file: &File, path: &std::path::Path) -> Result<Option<WalHeader>, WalError> {
    let mut b = [0u8; WAL_HEADER_SIZE as usize];
    let n = read_full_at(file, &mut b, 0).map_err(|e| WalError::io(path, e))?;
    if n < b.len() {
        return Ok(None);
    }
    WalHeader::parse(&b)
        .map(Some)
        .map_err(|reason| WalError::InvalidHeader {
            path: path.to_path_buf(),
            reason,
        })
}

/// Scans committed frames from `start` (32, or the end of a previous scan). `seed` is the cumulative
/// checksum at `start`: the header's for 32, else the previous scan's `checksum`; `None` reads it
/// from the frame before `start`. Stops at the first frame with other salts, a bad checksum, or a
/// short read, and drops frames of an unfinished transaction. With `max_bytes`, stops at the first
/// commit at or past `start + max_bytes`.
///
/// `header` is the generation to follow; it is normally the file's current header, but may be an
/// older one (same page size) to read what is left of the previous generation past `start`.
///
/// For `start > 32` the frame before `start` must carry `header`'s salts (and, with a `seed`,
/// store that checksum), and the file must be at least `start` long; otherwise
/// [`WalError::PositionLost`]. Note that a WAL restarted *and* rewritten past `start` passes this
/// test under its new header: callers compare `header`'s salts with the ones they recorded.
pub fn scan(
    file: &File,
    path: &std::path::Path,
    header: &WalHeader,
    start: u64,
    seed: Option<(u32, u32)>,
    max_bytes: Option<u64>,
) -> Result<WalScan, WalError> {
    if !(512..=65536).contains(&header.page_size) || !header.page_size.is_power_of_two() {
        return Err(WalError::InvalidHeader {
            path: path.to_path_buf(),
            reason: format!("invalid page size {}", header.page_size),
        });
    }
    let frame_size = header.frame_size();
    // (`is_multiple_of` needs Rust 1.87; the workspace supports 1.85.)
    let misaligned = start.checked_sub(WAL_HEADER_SIZE).map(|n| n % frame_size);
    if misaligned != Some(0) {
        return Err(WalError::lost(
            path,
            start,
            format!("not a frame boundary for page size {}", header.page_size),
        ));
    }
    let file_len = file.metadata().map_err(|e| WalError::io(path, e))?.len();
    let seed = if start == WAL_HEADER_SIZE {
        seed.unwrap_or(header.checksum)
    } else {
        if file_len < start {
            return Err(WalError::lost(
                path,
                start,
                format!("file is only {file_len} bytes"),
            ));
        }
        let stored = prev_frame_checksum(file, path, header, start)?;
        match seed {
            Some(s) if s != stored => {
                return Err(WalError::lost(
                    path,
                    start,
                    format!(
                        "previous frame checksum {:08x}{:08x} != expected {:08x}{:08x}",
                        stored.0, stored.1, s.0, s.1
                    ),
                ))
            }
            _ => stored,
        }
    };

    let mut out = WalScan {
        header: *header,
        start,
        end: start,
        commit: 0,
        pages: BTreeMap::new(),
        checksum: seed,
        commits: 0,
    };
    // Pages of the transaction being read, in frame order; moved into `out.pages` at its commit.
    let mut pending: Vec<(u32, u64)> = Vec::new();
    let mut checksum = seed;
    let limit = max_bytes.map(|m| start.saturating_add(m));

    // `frame_size` is at most 65560, so it fits in usize and a chunk holds >= 1 frame.
    let fs = frame_size as usize;
    let mut buf = vec![0u8; (SCAN_CHUNK / fs).max(1) * fs];
    let mut chunk_off = start;
    'chunks: while chunk_off < file_len {
        let want = usize::try_from(file_len - chunk_off)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let got =
            read_full_at(file, &mut buf[..want], chunk_off).map_err(|e| WalError::io(path, e))?;
        let whole = got / fs;
        for (i, frame) in buf[..whole * fs].chunks_exact(fs).enumerate() {
            let offset = chunk_off + (i * fs) as u64;
            let Some(f) = check_frame(header, checksum, frame) else {
                break 'chunks;
            };
            checksum = f.checksum;
            pending.push((f.pgno, offset));
            if f.commit != 0 {
                out.pages.extend(pending.drain(..));
                // The database shrank to `commit` pages: anything above no longer exists.
                // (Not `saturating_add`: at u32::MAX that would drop page u32::MAX itself.)
                if let Some(above) = f.commit.checked_add(1) {
                    let _ = out.pages.split_off(&above);
                }
                out.commit = f.commit;
                out.commits += 1;
                out.end = offset + frame_size;
                out.checksum = checksum;
                if limit.is_some_and(|l| out.end >= l) {
                    break 'chunks;
                }
            }
        }
        if whole * fs < want || whole == 0 {
            break;
        }
        chunk_off += (whole * fs) as u64;
    }
    Ok(out)
}

/// A frame that passed the salt and checksum tests.
struct Frame {
    pgno: u32,
    commit: u32,
    checksum: (u32, u32),
}

/// Checks one frame (header + page) against `header` and the running checksum `prev`, as
/// SQLite's `walDecodeFrame` does. `None` ends the valid part of the WAL.
fn check_frame(header: &WalHeader, prev: (u32, u32), frame: &[u8]) -> Option<Frame> {
    let hdr = frame.get(..WAL_FRAME_HEADER_SIZE as usize)?;
    let page = frame.get(WAL_FRAME_HEADER_SIZE as usize..)?;
    let pgno = be32(hdr, 0);
    if pgno == 0 || be32(hdr, 8) != header.salt1 || be32(hdr, 12) != header.salt2 {
        return None;
    }
    let mut sum = wal_checksum(header.big_endian_checksums, prev, hdr.get(..8)?);
    sum = wal_checksum(header.big_endian_checksums, sum, page);
    if sum != (be32(hdr, 16), be32(hdr, 20)) {
        return None;
    }
    Some(Frame {
        pgno,
        commit: be32(hdr, 4),
        checksum: sum,
    })
}

/// The checksum stored in the frame just before `start`, after checking its salts.
fn prev_frame_checksum(
    file: &File,
    path: &Path,
    header: &WalHeader,
    start: u64,
) -> Result<(u32, u32), WalError> {
    let mut hdr = [0u8; WAL_FRAME_HEADER_SIZE as usize];
    let at = start - header.frame_size();
    let n = read_full_at(file, &mut hdr, at).map_err(|e| WalError::io(path, e))?;
    if n < hdr.len() {
        return Err(WalError::lost(path, start, "previous frame is cut short"));
    }
    let salts = (be32(&hdr, 8), be32(&hdr, 12));
    if salts != (header.salt1, header.salt2) {
        return Err(WalError::lost(
            path,
            start,
            format!(
                "previous frame salts {:08x}/{:08x} != header salts {:08x}/{:08x}",
                salts.0, salts.1, header.salt1, header.salt2
            ),
        ));
    }
    Ok((be32(&hdr, 16), be32(&hdr, 20)))
}

/// Reads the page of the frame at `frame_offset` into `buf` (`page_size` bytes).
pub fn read_frame_page(
    file: &File,
    path: &std::path::Path,
    frame_offset: u64,
    buf: &mut [u8],
) -> Result<(), WalError> {
    file.read_exact_at(buf, frame_offset.saturating_add(WAL_FRAME_HEADER_SIZE))
        .map_err(|e| WalError::io(path, e))
}

/// Like [`read_frame_page`], but first checks that the frame still carries `header`'s salts, for
/// callers that read pages without holding SQLite's read lock (a restart may have reused the
/// frame). Within one generation SQLite never rewrites a committed frame, so salts suffice.
pub fn read_frame_page_checked(
    file: &File,
    path: &std::path::Path,
    header: &WalHeader,
    frame_offset: u64,
    buf: &mut [u8],
) -> Result<(), WalError> {
    let mut hdr = [0u8; WAL_FRAME_HEADER_SIZE as usize];
    let n = read_full_at(file, &mut hdr, frame_offset).map_err(|e| WalError::io(path, e))?;
    if n < hdr.len() {
        return Err(WalError::lost(path, frame_offset, "frame is cut short"));
    }
    if (be32(&hdr, 8), be32(&hdr, 12)) != (header.salt1, header.salt2) {
        return Err(WalError::lost(
            path,
            frame_offset,
            "frame salts differ from the header's",
        ));
    }
    read_frame_page(file, path, frame_offset, buf)?;
    // Re-check: a restart between the two reads would have rewritten the header first.
    let n = read_full_at(file, &mut hdr, frame_offset).map_err(|e| WalError::io(path, e))?;
    if n < hdr.len() || (be32(&hdr, 8), be32(&hdr, 12)) != (header.salt1, header.salt2) {
        return Err(WalError::lost(
            path,
            frame_offset,
            "frame was rewritten while reading",
        ));
    }
    Ok(())
}

/// `page_size` as [`scan`] accepts it: a power of two from 512 to 65536.
fn check_page_size(path: &Path, page_size: u32) -> Result<(), WalError> {
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(WalError::InvalidHeader {
            path: path.to_path_buf(),
            reason: format!("invalid page size {page_size}"),
        });
    }
    Ok(())
}

/// Reads the whole frame at `frame_offset` (frame header and page, in one read) into `buf`, which
/// must be `24 + page_size` bytes long; the page is `buf[24..]`. Then checks that the frame still
/// holds page `expected_pgno` and carries `salts`: a frame found by [`scan`] and read later
/// without SQLite's read lock may have been reused by a WAL restart. Within one generation SQLite
/// never rewrites a committed frame, so pgno and salts suffice (callers re-read the WAL header
/// afterwards to catch a restart that rewrote the frame with the same pgno).
/// [`WalError::PositionLost`] if the frame is cut short or differs.
pub fn read_frame_at(
    file: &File,
    path: &Path,
    frame_offset: u64,
    page_size: u32,
    expected_pgno: u32,
    salts: (u32, u32),
    buf: &mut [u8],
) -> Result<(), WalError> {
    check_page_size(path, page_size)?;
    let frame_size = WAL_FRAME_HEADER_SIZE as usize + page_size as usize;
    if buf.len() != frame_size {
        return Err(WalError::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "frame buffer of {} bytes for page size {page_size}",
                    buf.len()
                ),
            ),
        ));
    }
    let n = read_full_at(file, buf, frame_offset).map_err(|e| WalError::io(path, e))?;
    if n < frame_size {
        return Err(WalError::lost(path, frame_offset, "frame is cut short"));
    }
    let pgno = be32(buf, 0);
    let got = (be32(buf, 8), be32(buf, 12));
    if pgno != expected_pgno || got != salts {
        return Err(WalError::lost(
            path,
            frame_offset,
            format!(
                "frame holds page {pgno} with salts {:08x}/{:08x}, expected page {expected_pgno} with {:08x}/{:08x}",
                got.0, got.1, salts.0, salts.1
            ),
        ));
    }
    Ok(())
}

/// Whether the frame at `frame_offset` continues a frame chain: it carries `salts` and, given
/// `seed` (the cumulative checksum just before it), its stored checksum is the one computed from
/// `seed` over its first 8 header bytes and its page, as in [`scan`] (whose pgno test this does
/// not repeat). Without a seed only the salts are compared. `Ok(false)` for a frame cut short.
pub fn frame_continues(
    file: &File,
    path: &Path,
    frame_offset: u64,
    page_size: u32,
    big_endian_checksums: bool,
    salts: (u32, u32),
    seed: Option<(u32, u32)>,
) -> Result<bool, WalError> {
    check_page_size(path, page_size)?;
    let hs = WAL_FRAME_HEADER_SIZE as usize;
    let mut buf = vec![0u8; hs + page_size as usize];
    let n = read_full_at(file, &mut buf, frame_offset).map_err(|e| WalError::io(path, e))?;
    if n < buf.len() {
        return Ok(false);
    }
    if (be32(&buf, 8), be32(&buf, 12)) != salts {
        return Ok(false);
    }
    let Some(seed) = seed else {
        return Ok(true);
    };
    let sum = wal_checksum(big_endian_checksums, seed, &buf[..8]);
    let sum = wal_checksum(big_endian_checksums, sum, &buf[hs..]);
    Ok(sum == (be32(&buf, 16), be32(&buf, 20)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rusqlite::Connection;
    use std::io::Write;

    /// Writes WAL files by hand, with either checksum byte order.
    struct WalBuilder {
        big_endian: bool,
        page_size: u32,
        salt1: u32,
        salt2: u32,
        sum: (u32, u32),
        bytes: Vec<u8>,
    }

    impl WalBuilder {
        fn new(big_endian: bool, page_size: u32, salt1: u32, salt2: u32) -> Self {
            let mut h = Vec::with_capacity(32);
            h.extend_from_slice(&(if big_endian { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
            h.extend_from_slice(&WAL_VERSION.to_be_bytes());
            h.extend_from_slice(&page_size.to_be_bytes());
            h.extend_from_slice(&7u32.to_be_bytes());
            h.extend_from_slice(&salt1.to_be_bytes());
            h.extend_from_slice(&salt2.to_be_bytes());
            let sum = wal_checksum(big_endian, (0, 0), &h);
            h.extend_from_slice(&sum.0.to_be_bytes());
            h.extend_from_slice(&sum.1.to_be_bytes());
            WalBuilder {
                big_endian,
                page_size,
                salt1,
                salt2,
                sum,
                bytes: h,
            }
        }

        /// Appends a frame whose page is filled with a pattern derived from `pgno` and `tag`;
        /// returns its offset.
        fn frame(&mut self, pgno: u32, commit: u32, tag: u8) -> u64 {
            let page = page_pattern(self.page_size, pgno, tag);
            self.frame_with(pgno, commit, &page)
        }

        fn frame_with(&mut self, pgno: u32, commit: u32, page: &[u8]) -> u64 {
            let off = self.bytes.len() as u64;
            let mut h = Vec::with_capacity(24);
            h.extend_from_slice(&pgno.to_be_bytes());
            h.extend_from_slice(&commit.to_be_bytes());
            h.extend_from_slice(&self.salt1.to_be_bytes());
            h.extend_from_slice(&self.salt2.to_be_bytes());
            self.sum = wal_checksum(self.big_endian, self.sum, &h[..8]);
            self.sum = wal_checksum(self.big_endian, self.sum, page);
            h.extend_from_slice(&self.sum.0.to_be_bytes());
            h.extend_from_slice(&self.sum.1.to_be_bytes());
            self.bytes.extend_from_slice(&h);
            self.bytes.extend_from_slice(page);
            off
        }

        fn write(&self, dir: &Path, name: &str) -> (PathBuf, File) {
            write_file(dir, name, &self.bytes)
        }
    }

    fn page_pattern(page_size: u32, pgno: u32, tag: u8) -> Vec<u8> {
        (0..page_size)
            .map(|i| (i as u8) ^ (pgno as u8).wrapping_mul(31) ^ tag)
            .collect()
    }

    fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> (PathBuf, File) {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        let f = File::open(&p).unwrap();
        (p, f)
    }

    fn header_of(f: &File, p: &Path) -> WalHeader {
        read_header(f, p).unwrap().unwrap()
    }

    fn scan_all(f: &File, p: &Path) -> WalScan {
        let h = header_of(f, p);
        scan(f, p, &h, WAL_HEADER_SIZE, None, None).unwrap()
    }

    /// A WAL-mode database with autocheckpoint off; the open connection keeps the WAL alive.
    fn open_db(dir: &Path, page_size: u32) -> (Connection, PathBuf, PathBuf) {
        let db = dir.join("db.sqlite");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(&format!("PRAGMA page_size={page_size};"))
            .unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let _: i64 = conn
            .query_row("PRAGMA wal_autocheckpoint=0", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);")
            .unwrap();
        let wal = dir.join("db.sqlite-wal");
        (conn, db, wal)
    }

    /// One transaction of `rows` inserts of `size`-byte blobs.
    fn insert(conn: &Connection, rows: usize, size: usize) {
        conn.execute_batch("BEGIN").unwrap();
        for _ in 0..rows {
            conn.execute("INSERT INTO t(v) VALUES (randomblob(?1))", [size as i64])
                .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    fn checkpoint(conn: &Connection, mode: &str) {
        let (busy, _, _): (i64, i64, i64) = conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0, "checkpoint {mode} was blocked");
    }

    fn page_count(conn: &Connection) -> u32 {
        conn.query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap()
    }

    /// Every frame's (pgno, commit) read naively, without checks: the cross-check for real WALs.
    fn naive_frames(bytes: &[u8], page_size: u32) -> Vec<(u32, u32)> {
        let fs = 24 + page_size as usize;
        bytes[32..]
            .chunks_exact(fs)
            .map(|f| (be32(f, 0), be32(f, 4)))
            .collect()
    }

    #[test]
    fn wal_reader_header_real_sqlite_parses() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _db, wal) = open_db(dir.path(), 4096);
        insert(&conn, 1, 10);
        let f = File::open(&wal).unwrap();
        let h = header_of(&f, &wal);
        assert_eq!(h.page_size, 4096);
        // SQLite writes checksums in native byte order.
        assert_eq!(h.big_endian_checksums, cfg!(target_endian = "big"));
        let mut raw = [0u8; 32];
        f.read_exact_at(&mut raw, 0).unwrap();
        assert_eq!((h.salt1, h.salt2), (be32(&raw, 16), be32(&raw, 20)));
        assert_eq!(h.checksum, (be32(&raw, 24), be32(&raw, 28)));
    }

    #[test]
    fn wal_reader_header_short_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 31] {
            let (p, f) = write_file(dir.path(), "w", &vec![0u8; len]);
            assert_eq!(read_header(&f, &p).unwrap(), None, "len {len}");
        }
    }

    #[test]
    fn wal_reader_header_invalid_is_error() {
        let dir = tempfile::tempdir().unwrap();
        let good = WalBuilder::new(false, 4096, 1, 2).bytes;
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut bad_magic = good.clone();
        bad_magic[3] = 0x84;
        cases.push(("magic", bad_magic));
        let mut bad_sum = good.clone();
        bad_sum[31] ^= 1;
        cases.push(("checksum", bad_sum));
        let mut bad_salt = good.clone();
        bad_salt[17] ^= 1;
        cases.push(("salt without checksum", bad_salt));
        // Valid checksums but bad fields.
        for (what, at, value) in [
            ("version", 4, 3007001u32),
            ("page size 0", 8, 0),
            ("page size 1000", 8, 1000),
        ] {
            let mut b = good.clone();
            b[at..at + 4].copy_from_slice(&value.to_be_bytes());
            let sum = wal_checksum(false, (0, 0), &b[..24]);
            b[24..28].copy_from_slice(&sum.0.to_be_bytes());
            b[28..32].copy_from_slice(&sum.1.to_be_bytes());
            cases.push((what, b));
        }
        for (what, bytes) in cases {
            let (p, f) = write_file(dir.path(), "w", &bytes);
            let err = read_header(&f, &p).unwrap_err();
            assert!(
                matches!(err, WalError::InvalidHeader { .. }),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn wal_reader_header_page_size_one_means_65536() {
        let mut b = WalBuilder::new(false, 1, 1, 2).bytes;
        b.truncate(32);
        let h = WalHeader::parse(&b.try_into().unwrap()).unwrap();
        assert_eq!(h.page_size, 65536);
    }

    #[test]
    fn wal_reader_scan_real_transactions_match_database() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, db, wal) = open_db(dir.path(), 4096);
        for i in 0..5 {
            insert(&conn, 3 + i, 1500);
        }
        let f = File::open(&wal).unwrap();
        let s = scan_all(&f, &wal);
        // CREATE TABLE is a transaction too.
        assert_eq!(s.commits, 6);
        assert_eq!(s.commit, page_count(&conn));
        assert_eq!(s.end, f.metadata().unwrap().len());
        assert_eq!(s.start, WAL_HEADER_SIZE);

        let bytes = std::fs::read(&wal).unwrap();
        let mut expect = BTreeMap::new();
        for (i, (pgno, _)) in naive_frames(&bytes, 4096).into_iter().enumerate() {
            expect.insert(pgno, s.header.frame_offset(i as u64));
        }
        assert_eq!(s.pages, expect);

        // The pages the WAL holds are what a checkpoint puts into the database file.
        checkpoint(&conn, "PASSIVE");
        let dbf = File::open(&db).unwrap();
        let mut a = vec![0u8; 4096];
        let mut b = vec![0u8; 4096];
        for (&pgno, &off) in &s.pages {
            read_frame_page(&f, &wal, off, &mut a).unwrap();
            dbf.read_exact_at(&mut b, u64::from(pgno - 1) * 4096)
                .unwrap();
            assert_eq!(a, b, "page {pgno}");
            read_frame_page_checked(&f, &wal, &s.header, off, &mut a).unwrap();
        }
    }

    #[test]
    fn wal_reader_scan_page_sizes_512_and_65536() {
        for page_size in [512u32, 65536] {
            let dir = tempfile::tempdir().unwrap();
            let (conn, db, wal) = open_db(dir.path(), page_size);
            for _ in 0..3 {
                insert(&conn, 20, 700);
            }
            let f = File::open(&wal).unwrap();
            let s = scan_all(&f, &wal);
            assert_eq!(s.header.page_size, page_size);
            assert_eq!(s.commits, 4);
            assert_eq!(s.commit, page_count(&conn));
            assert_eq!(s.end, f.metadata().unwrap().len());
            checkpoint(&conn, "PASSIVE");
            let dbf = File::open(&db).unwrap();
            let mut a = vec![0u8; page_size as usize];
            let mut b = vec![0u8; page_size as usize];
            for (&pgno, &off) in &s.pages {
                read_frame_page(&f, &wal, off, &mut a).unwrap();
                dbf.read_exact_at(&mut b, u64::from(pgno - 1) * u64::from(page_size))
                    .unwrap();
                assert_eq!(a, b, "page size {page_size} page {pgno}");
            }
        }
    }

    #[test]
    fn wal_reader_scan_real_partial_tail_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _db, wal) = open_db(dir.path(), 4096);
        insert(&conn, 2, 100);
        insert(&conn, 40, 1000); // many frames
        let bytes = std::fs::read(&wal).unwrap();
        let full = {
            let f = File::open(&wal).unwrap();
            scan_all(&f, &wal)
        };
        assert_eq!(full.commits, 3);
        let frames = naive_frames(&bytes, 4096);
        let last_txn_frames = frames
            .iter()
            .rev()
            .skip(1)
            .take_while(|(_, c)| *c == 0)
            .count()
            + 1;
        assert!(last_txn_frames > 3);
        // Cut the copy inside the last transaction, at a frame boundary and mid-frame.
        let fs = 4096 + 24;
        for cut in [
            bytes.len() - fs,
            bytes.len() - 2 * fs - 100,
            bytes.len() - 1,
        ] {
            let (p, f) = write_file(dir.path(), "copy-wal", &bytes[..cut]);
            let s = scan_all(&f, &p);
            assert_eq!(s.commits, 2, "cut at {cut}");
            let expected_end =
                WAL_HEADER_SIZE + (frames.len() - last_txn_frames) as u64 * fs as u64;
            assert_eq!(s.end, expected_end);
            assert!(s.pages.values().all(|&o| o < expected_end));
        }
    }

    #[test]
    fn wal_reader_scan_uncommitted_frames_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalBuilder::new(false, 4096, 11, 22);
        w.frame(1, 0, 1);
        let c = w.frame(2, 2, 1);
        let end = w.bytes.len() as u64;
        let sum = w.sum;
        w.frame(3, 0, 2);
        w.frame(1, 0, 2);
        let (p, f) = w.write(dir.path(), "w");
        let s = scan_all(&f, &p);
        assert_eq!(s.commits, 1);
        assert_eq!(s.commit, 2);
        assert_eq!(s.end, end);
        assert_eq!(s.checksum, sum);
        assert_eq!(s.pages, BTreeMap::from([(1, 32), (2, c)]));
    }

    #[test]
    fn wal_reader_scan_resume_gives_next_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _db, wal) = open_db(dir.path(), 4096);
        insert(&conn, 5, 500);
        insert(&conn, 5, 500);
        let f = File::open(&wal).unwrap();
        let s1 = scan_all(&f, &wal);
        assert_eq!(s1.commits, 3);

        // Nothing new yet: an empty scan that resumes where it began.
        let empty = scan(&f, &wal, &s1.header, s1.end, Some(s1.checksum), None).unwrap();
        assert_eq!(
            (empty.commits, empty.end, empty.commit, empty.checksum),
            (0, s1.end, 0, s1.checksum)
        );
        assert!(empty.pages.is_empty());

        insert(&conn, 30, 900);
        insert(&conn, 1, 10);
        let h = header_of(&f, &wal);
        assert_eq!((h.salt1, h.salt2), (s1.header.salt1, s1.header.salt2));
        let s2 = scan(&f, &wal, &h, s1.end, Some(s1.checksum), None).unwrap();
        let s2_none = scan(&f, &wal, &h, s1.end, None, None).unwrap();
        assert_eq!(s2, s2_none);
        assert_eq!(s2.commits, 2);
        assert_eq!(s2.start, s1.end);
        assert_eq!(s2.commit, page_count(&conn));
        assert!(s2.pages.values().all(|&o| o >= s1.end));

        let all = scan_all(&f, &wal);
        let mut merged = s1.pages.clone();
        merged.extend(s2.pages.iter());
        assert_eq!(merged, all.pages);
        assert_eq!((all.end, all.checksum), (s2.end, s2.checksum));
    }

    #[test]
    fn wal_reader_restart_old_position_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _db, wal) = open_db(dir.path(), 4096);
        for _ in 0..4 {
            insert(&conn, 10, 1000);
        }
        let f = File::open(&wal).unwrap();
        let s1 = scan_all(&f, &wal);

        checkpoint(&conn, "RESTART");
        insert(&conn, 1, 10); // a short new generation: the old frames past it remain
        let h = header_of(&f, &wal);
        assert_ne!((h.salt1, h.salt2), (s1.header.salt1, s1.header.salt2));
        assert!(f.metadata().unwrap().len() >= s1.end);
        for seed in [None, Some(s1.checksum)] {
            let err = scan(&f, &wal, &h, s1.end, seed, None).unwrap_err();
            assert!(err.is_position_lost(), "{err}");
        }
        // The new generation reads from the start.
        let s2 = scan(&f, &wal, &h, WAL_HEADER_SIZE, None, None).unwrap();
        assert_eq!(s2.commits, 1);
        // Following the old generation's header still sees its untouched tail, i.e. nothing
        // after s1.end here, since s1 took everything.
        let old = scan(&f, &wal, &s1.header, s1.end, Some(s1.checksum), None).unwrap();
        assert_eq!(old.commits, 0);

        checkpoint(&conn, "TRUNCATE");
        assert_eq!(f.metadata().unwrap().len(), 0);
        assert_eq!(read_header(&f, &wal).unwrap(), None);
        insert(&conn, 1, 10);
        let h = header_of(&f, &wal);
        let err = scan(&f, &wal, &h, s1.end, None, None).unwrap_err();
        assert!(err.is_position_lost(), "{err}");
    }

    #[test]
    fn wal_reader_restart_rewritten_past_position_caught_by_seed_not_by_none() {
        // After a restart whose new generation already reaches past the old position, the frame
        // before it carries the new salts: without a seed the scan cannot tell. Callers must
        // compare the header's salts with those they recorded.
        let dir = tempfile::tempdir().unwrap();
        let (conn, _db, wal) = open_db(dir.path(), 4096);
        insert(&conn, 1, 10);
        let f = File::open(&wal).unwrap();
        let s1 = scan_all(&f, &wal);
        checkpoint(&conn, "RESTART");
        for _ in 0..3 {
            insert(&conn, 10, 1000);
        }
        let h = header_of(&f, &wal);
        assert_ne!((h.salt1, h.salt2), (s1.header.salt1, s1.header.salt2));
        let err = scan(&f, &wal, &h, s1.end, Some(s1.checksum), None).unwrap_err();
        assert!(err.is_position_lost(), "{err}");
        let blind = scan(&f, &wal, &h, s1.end, None, None);
        assert!(blind.is_ok());
        // With the old header the position is lost, whatever the seed.
        let err = scan(&f, &wal, &s1.header, s1.end, None, None).unwrap_err();
        assert!(err.is_position_lost(), "{err}");
    }

    #[test]
    fn wal_reader_scan_big_endian_checksums() {
        let dir = tempfile::tempdir().unwrap();
        for big_endian in [true, false] {
            let mut w = WalBuilder::new(big_endian, 1024, 0xdead_beef, 0x0102_0304);
            w.frame(1, 0, 1);
            w.frame(2, 3, 1);
            let o3 = w.frame(3, 0, 2);
            let o1 = w.frame(1, 3, 2);
            let (p, f) = w.write(dir.path(), "w");
            let h = header_of(&f, &p);
            assert_eq!(h.big_endian_checksums, big_endian);
            let s = scan(&f, &p, &h, WAL_HEADER_SIZE, None, None).unwrap();
            assert_eq!(s.commits, 2);
            assert_eq!(s.commit, 3);
            assert_eq!(s.pages, BTreeMap::from([(1, o1), (2, 32 + 1048), (3, o3)]));
            let mut buf = vec![0u8; 1024];
            read_frame_page(&f, &p, o3, &mut buf).unwrap();
            assert_eq!(buf, page_pattern(1024, 3, 2));
        }
        // The two orders give different checksums, so the magic matters.
        let le = WalBuilder::new(false, 1024, 5, 6);
        let be = WalBuilder::new(true, 1024, 5, 6);
        assert_ne!(le.sum, be.sum);
    }

    #[test]
    fn wal_reader_corrupt_checksum_stops_at_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalBuilder::new(false, 512, 1, 2);
        w.frame(1, 1, 0);
        let end1 = w.bytes.len() as u64;
        let sum1 = w.sum;
        let bad = w.frame(2, 0, 0);
        w.frame(1, 2, 0);
        w.frame(2, 2, 9);
        let mut bytes = w.bytes.clone();
        bytes[bad as usize + 24 + 100] ^= 0x40;
        let (p, f) = write_file(dir.path(), "w", &bytes);
        let s = scan_all(&f, &p);
        assert_eq!((s.commits, s.commit, s.end, s.checksum), (1, 1, end1, sum1));
        assert_eq!(s.pages, BTreeMap::from([(1, 32)]));

        // A flipped stored checksum, and a frame with other salts, stop the scan the same way.
        let mut bytes = w.bytes.clone();
        bytes[bad as usize + 20] ^= 1;
        let (p, f) = write_file(dir.path(), "w", &bytes);
        assert_eq!(scan_all(&f, &p).end, end1);
        let mut bytes = w.bytes.clone();
        bytes[bad as usize + 9] ^= 1;
        let (p, f) = write_file(dir.path(), "w", &bytes);
        assert_eq!(scan_all(&f, &p).end, end1);
    }

    #[test]
    fn wal_reader_real_corrupt_frame_stops_at_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _db, wal) = open_db(dir.path(), 4096);
        insert(&conn, 5, 500);
        let f = File::open(&wal).unwrap();
        let s1 = scan_all(&f, &wal);
        insert(&conn, 20, 1000);
        insert(&conn, 1, 10);
        let mut bytes = std::fs::read(&wal).unwrap();
        bytes[s1.end as usize + 4096 + 24 + 24 + 7] ^= 0xff; // second frame of the next txn
        let (p, f) = write_file(dir.path(), "copy", &bytes);
        let s = scan_all(&f, &p);
        assert_eq!(
            (s.commits, s.end, s.checksum, s.commit),
            (s1.commits, s1.end, s1.checksum, s1.commit)
        );
    }

    #[test]
    fn wal_reader_pages_above_commit_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalBuilder::new(false, 512, 1, 2);
        for pgno in 1..=5 {
            w.frame(pgno, if pgno == 5 { 5 } else { 0 }, 0);
        }
        let o1 = w.frame(1, 0, 1);
        w.frame(4, 3, 1); // shrink to 3 pages: 4 and 5 go, even though 4 was just written
        let (p, f) = w.write(dir.path(), "w");
        let s = scan_all(&f, &p);
        assert_eq!(s.commit, 3);
        assert_eq!(s.pages.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(s.pages[&1], o1);

        // Shrinking then growing again: the page from before the shrink must not come back.
        let o6 = w.frame(6, 6, 2);
        let (p, f) = w.write(dir.path(), "w");
        let s = scan_all(&f, &p);
        assert_eq!(s.commit, 6);
        assert_eq!(
            s.pages.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 6]
        );
        assert_eq!(s.pages[&6], o6);
    }

    #[test]
    fn wal_reader_max_bytes_splits_at_commits() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalBuilder::new(false, 1024, 3, 4);
        let mut commit_ends = Vec::new();
        for t in 0..6u32 {
            for k in 0..3 {
                let commit = if k == 2 { 10 + t } else { 0 };
                w.frame(1 + (t * 3 + k) % 9, commit, t as u8);
            }
            commit_ends.push(w.bytes.len() as u64);
        }
        let (p, f) = w.write(dir.path(), "w");
        let h = header_of(&f, &p);
        let fs = h.frame_size();
        let whole = scan(&f, &p, &h, WAL_HEADER_SIZE, None, None).unwrap();

        // 4 frames' worth: each piece ends at the first commit at or past 4 frames, i.e. 2 txns.
        let mut pos = WAL_HEADER_SIZE;
        let mut seed = None;
        let mut merged = BTreeMap::new();
        let mut ends = Vec::new();
        loop {
            let s = scan(&f, &p, &h, pos, seed, Some(4 * fs)).unwrap();
            if s.commits == 0 {
                break;
            }
            assert_eq!(s.commits, 2);
            merged.extend(s.pages.clone());
            merged.retain(|&pg, _| pg <= s.commit);
            ends.push(s.end);
            pos = s.end;
            seed = Some(s.checksum);
        }
        assert_eq!(ends, vec![commit_ends[1], commit_ends[3], commit_ends[5]]);
        assert_eq!(merged, whole.pages);
        assert_eq!(seed, Some(whole.checksum));

        // Exactly one transaction's size stops after that one transaction; 0 after the first.
        let s = scan(&f, &p, &h, WAL_HEADER_SIZE, None, Some(3 * fs)).unwrap();
        assert_eq!(s.end, commit_ends[0]);
        let s = scan(&f, &p, &h, WAL_HEADER_SIZE, None, Some(0)).unwrap();
        assert_eq!(s.end, commit_ends[0]);
    }

    #[test]
    fn wal_reader_scan_misaligned_start_is_position_lost() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalBuilder::new(false, 512, 1, 2);
        w.frame(1, 1, 0);
        w.frame(1, 1, 1);
        let (p, f) = w.write(dir.path(), "w");
        let h = header_of(&f, &p);
        for start in [0, 31, 33, 32 + 536 + 1] {
            assert!(
                scan(&f, &p, &h, start, None, None)
                    .unwrap_err()
                    .is_position_lost(),
                "{start}"
            );
        }
        // Past the end of the file.
        let err = scan(&f, &p, &h, 32 + 3 * 536, None, None).unwrap_err();
        assert!(err.is_position_lost());
        // Exactly at the end is fine.
        let s = scan(&f, &p, &h, 32 + 2 * 536, None, None).unwrap();
        assert_eq!(s.commits, 0);
        // A seed that is not the previous frame's checksum.
        let err = scan(&f, &p, &h, 32 + 536, Some((1, 2)), None).unwrap_err();
        assert!(err.is_position_lost());
    }

    #[test]
    fn wal_reader_scan_rejects_invalid_header_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let (p, f) = write_file(dir.path(), "w", &[0u8; 100]);
        let h = WalHeader {
            big_endian_checksums: false,
            page_size: u32::MAX,
            checkpoint_seq: 0,
            salt1: 0,
            salt2: 0,
            checksum: (0, 0),
        };
        for page_size in [0, 3, 256, 131072, u32::MAX] {
            let h = WalHeader { page_size, ..h };
            assert!(matches!(
                scan(&f, &p, &h, 32, None, None),
                Err(WalError::InvalidHeader { .. })
            ));
        }
    }

    #[test]
    fn wal_reader_random_input_never_panics() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
        let mut valid = WalBuilder::new(false, 512, 9, 8);
        for i in 0..40u32 {
            valid.frame(1 + i % 7, if i % 3 == 2 { 7 } else { 0 }, i as u8);
        }
        let good_header = WalHeader::parse(&valid.bytes[..32].try_into().unwrap()).unwrap();
        for round in 0..400 {
            let bytes: Vec<u8> = match round % 4 {
                0 => {
                    let len = rng.gen_range(0..4000);
                    let mut b: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    if len >= 32 && rng.gen_bool(0.5) {
                        b[..32].copy_from_slice(&valid.bytes[..32]);
                    }
                    b
                }
                1 => valid.bytes[..rng.gen_range(0..valid.bytes.len())].to_vec(),
                _ => {
                    let mut b = valid.bytes.clone();
                    for _ in 0..rng.gen_range(1..5) {
                        let i = rng.gen_range(0..b.len());
                        b[i] = rng.gen();
                    }
                    b
                }
            };
            let (p, f) = write_file(dir.path(), "w", &bytes);
            let header = match read_header(&f, &p) {
                Ok(Some(h)) => h,
                _ => good_header,
            };
            let fs = header.frame_size();
            for _ in 0..4 {
                let start = if rng.gen_bool(0.5) {
                    WAL_HEADER_SIZE + rng.gen_range(0..50) * fs
                } else {
                    rng.gen_range(0..6000)
                };
                let seed = if rng.gen_bool(0.5) {
                    None
                } else {
                    Some((rng.gen(), rng.gen()))
                };
                let max = if rng.gen_bool(0.5) {
                    None
                } else {
                    Some(rng.gen_range(0..5000))
                };
                if let Ok(s) = scan(&f, &p, &header, start, seed, max) {
                    assert!(s.end >= s.start && s.end <= bytes.len() as u64);
                    assert!(s.pages.keys().all(|&pg| pg >= 1 && pg <= s.commit));
                    let mut buf = vec![0u8; header.page_size as usize];
                    for &off in s.pages.values() {
                        read_frame_page(&f, &p, off, &mut buf).unwrap();
                    }
                }
            }
            let mut buf = vec![0u8; 512];
            let _ = read_frame_page(&f, &p, rng.gen_range(0..u64::MAX), &mut buf);
            let _ = read_frame_page_checked(&f, &p, &header, rng.gen_range(0..u64::MAX), &mut buf);
            let mut frame = vec![0u8; 24 + 512];
            let at = rng.gen_range(0..u64::MAX);
            let _ = read_frame_at(
                &f,
                &p,
                at,
                512,
                rng.gen(),
                (rng.gen(), rng.gen()),
                &mut frame,
            );
            let at = rng.gen_range(0..6000);
            let _ = frame_continues(
                &f,
                &p,
                at,
                512,
                rng.gen(),
                (9, 8),
                Some((rng.gen(), rng.gen())),
            );
        }
    }

    /// Found by the `wal_reader` fuzz target: a commit frame claiming 0xffffffff pages dropped
    /// page 0xffffffff itself (`commit + 1` saturated to `commit`), so one scan and scans resumed
    /// per transaction disagreed. Pinned by `fuzz/regressions/wal_reader/`.
    #[test]
    fn wal_reader_commit_of_u32_max_keeps_top_page() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalBuilder::new(false, 512, 1, 2);
        let a = w.frame(2, 0, 0);
        let b = w.frame(u32::MAX, u32::MAX, 0);
        let (p, f) = w.write(dir.path(), "x.db-wal");
        let s = scan_all(&f, &p);
        assert_eq!(s.commit, u32::MAX);
        assert_eq!(s.pages, BTreeMap::from([(2, a), (u32::MAX, b)]));
    }

    #[test]
    fn wal_reader_read_frame_at_checks_pgno_and_salts() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalBuilder::new(false, 512, 11, 22);
        let a = w.frame(3, 0, 1);
        let b = w.frame(5, 5, 2);
        let (p, f) = w.write(dir.path(), "f.db-wal");
        let mut buf = vec![0u8; 24 + 512];
        read_frame_at(&f, &p, a, 512, 3, (11, 22), &mut buf).unwrap();
        assert_eq!(buf[24..], page_pattern(512, 3, 1)[..]);
        read_frame_at(&f, &p, b, 512, 5, (11, 22), &mut buf).unwrap();
        assert_eq!(buf[24..], page_pattern(512, 5, 2)[..]);
        assert_eq!(be32(&buf, 4), 5, "the frame header is in the buffer too");

        let lost = |r: Result<(), WalError>| match r {
            Err(e) if e.is_position_lost() => e.to_string(),
            other => panic!("expected PositionLost, got {other:?}"),
        };
        let msg = lost(read_frame_at(&f, &p, a, 512, 4, (11, 22), &mut buf));
        assert!(
            msg.contains("page 3") && msg.contains("expected page 4"),
            "{msg}"
        );
        let msg = lost(read_frame_at(&f, &p, a, 512, 3, (11, 23), &mut buf));
        assert!(
            msg.contains("00000016") && msg.contains("00000017"),
            "{msg}"
        );
        // Past the end, or cut short by a truncation.
        lost(read_frame_at(&f, &p, b + 536, 512, 5, (11, 22), &mut buf));
        let short = &w.bytes[..w.bytes.len() - 1];
        let (p2, f2) = write_file(dir.path(), "short.db-wal", short);
        lost(read_frame_at(&f2, &p2, b, 512, 5, (11, 22), &mut buf));
        // A buffer of the wrong size or an impossible page size is refused, not misread.
        let mut small = vec![0u8; 512];
        assert!(matches!(
            read_frame_at(&f, &p, a, 512, 3, (11, 22), &mut small),
            Err(WalError::Io { .. })
        ));
        assert!(matches!(
            read_frame_at(&f, &p, a, 500, 3, (11, 22), &mut buf),
            Err(WalError::InvalidHeader { .. })
        ));
    }

    #[test]
    fn wal_reader_read_frame_at_sees_restart_reusing_the_frame() {
        let dir = tempfile::tempdir().unwrap();
        let (conn, _db, wal) = open_db(dir.path(), 4096);
        insert(&conn, 5, 1000);
        let f = File::open(&wal).unwrap();
        let s = scan_all(&f, &wal);
        let salts = (s.header.salt1, s.header.salt2);
        let mut buf = vec![0u8; 24 + 4096];
        for (&pgno, &off) in &s.pages {
            read_frame_at(&f, &wal, off, 4096, pgno, salts, &mut buf).unwrap();
        }
        // The app restarts the WAL and writes again: the old offsets now hold new frames.
        checkpoint(&conn, "RESTART");
        insert(&conn, 5, 1000);
        let (&pgno, &off) = s.pages.iter().next().unwrap();
        let r = read_frame_at(&f, &wal, off, 4096, pgno, salts, &mut buf);
        assert!(matches!(&r, Err(e) if e.is_position_lost()), "{r:?}");
    }

    #[test]
    fn wal_reader_frame_continues_follows_the_checksum_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = WalBuilder::new(true, 1024, 7, 9);
        w.frame(1, 1, 0);
        let seed = w.sum;
        let next = w.frame(2, 2, 0);
        let (p, f) = w.write(dir.path(), "c.db-wal");
        assert!(frame_continues(&f, &p, next, 1024, true, (7, 9), Some(seed)).unwrap());
        // Another seed: a stale frame of an earlier chain, not a continuation.
        assert!(
            !frame_continues(&f, &p, next, 1024, true, (7, 9), Some((seed.0, seed.1 ^ 1))).unwrap()
        );
        // The other checksum byte order gives another sum.
        assert!(!frame_continues(&f, &p, next, 1024, false, (7, 9), Some(seed)).unwrap());
        // Without a seed only the salts count.
        assert!(frame_continues(&f, &p, next, 1024, true, (7, 9), None).unwrap());
        assert!(!frame_continues(&f, &p, next, 1024, true, (8, 9), None).unwrap());
        // No frame there.
        assert!(!frame_continues(&f, &p, next + 1048, 1024, true, (7, 9), None).unwrap());
        assert!(frame_continues(&f, &p, next, 3000, true, (7, 9), None).is_err());
    }
}
