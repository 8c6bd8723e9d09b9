//! The SQLite WAL file: header, frames, salts, cumulative checksums, commit boundaries. Reads only.
//!
//! Format (<https://www.sqlite.org/fileformat.html#the_write_ahead_log>): a 32-byte header, then frames
//! of a 24-byte header plus one page. A frame whose `commit` field is non-zero ends a transaction.
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;

/// Size of the WAL header.
pub const WAL_HEADER_SIZE: u64 = 32;
/// Size of a frame header.
pub const WAL_FRAME_HEADER_SIZE: u64 = 24;

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

/// Reads and verifies the header. `Ok(None)` if the file is shorter than 32 bytes (empty WAL).
pub fn read_header(file: &File, path: &std::path::Path) -> Result<Option<WalHeader>, WalError> {
    let _ = (file, path);
    todo!()
}

/// Scans committed frames from `start` (32, or the end of a previous scan). `seed` is the cumulative
/// checksum at `start`: the header's for 32, else the previous scan's `checksum`; `None` reads it
/// from the frame before `start`. Stops at the first frame with other salts, a bad checksum, or a
/// short read, and drops frames of an unfinished transaction. With `max_bytes`, stops at the first
/// commit at or past `start + max_bytes`.
pub fn scan(
    file: &File,
    path: &std::path::Path,
    header: &WalHeader,
    start: u64,
    seed: Option<(u32, u32)>,
    max_bytes: Option<u64>,
) -> Result<WalScan, WalError> {
    let _ = (file, path, header, start, seed, max_bytes);
    todo!()
}

/// Reads the page of the frame at `frame_offset` into `buf` (`page_size` bytes).
pub fn read_frame_page(file: &File, path: &std::path::Path, frame_offset: u64, buf: &mut [u8]) -> Result<(), WalError> {
    let _ = (file, path, frame_offset, buf);
    todo!()
}
