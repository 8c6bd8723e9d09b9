//! The LTX file format, as written by Litestream 0.5 (superfly/ltx v0.5) and walstream.
//!
//! An LTX file holds the pages one or more SQLite transactions changed, sorted by page number:
//!
//! ```text
//! header (100 B) | page frames ... | 6 zero bytes | page index | u64 index length | trailer (16 B)
//! ```
//!
//! Principal types:
//! - [`Header`] and [`Trailer`]: the fixed-size parts.
//! - [`Encoder`]: streams pages into a file and computes the file checksum.
//! - [`Decoder`]: streams pages out of a file and verifies the file checksum at [`Decoder::finish`].
//! - [`read_page_index`]: reads the page index from the tail of a file.
//! - [`Compactor`]: merges contiguous files, the newest page winning.
//! - [`checksum`]: the CRC-64 page and database checksums.
//!
//! This crate does no async and no I/O beyond `std::io` traits.
//!
//! Compatibility notes (checked against Litestream 0.5.17):
//! - Write [`FLAG_NO_CHECKSUM`] with zero pre- and post-apply checksums, as Litestream does.
//!   Litestream 0.5.17 cannot restore files that carry real database checksums: its restore
//!   compactor copies the non-zero post-apply checksum into NoChecksum output and fails.
//! - Page data is compressed with `lz4_flex`, not Go's `pierrec/lz4`: files are valid and decode
//!   to the same pages, but are not byte-identical to Litestream's, and their file checksums
//!   differ because the checksum covers the compressed-size prefix.
//!
//! ```
//! use ltx::{Encoder, Decoder, Header, TxId, FLAG_NO_CHECKSUM};
//! // NoChecksum, as Litestream writes: the pre- and post-apply checksums are then 0.
//! let header = Header { flags: FLAG_NO_CHECKSUM, ..Header::new(4096, 1, TxId(1), TxId(1), 0) };
//! let mut enc = Encoder::new(Vec::new(), &header).unwrap();
//! enc.write_page(1, &[0u8; 4096]).unwrap();
//! let (bytes, _trailer) = enc.finish(0).unwrap();
//! let mut dec = Decoder::new(&bytes[..]).unwrap();
//! let mut buf = vec![0u8; 4096];
//! assert_eq!(dec.next_page(&mut buf).unwrap(), Some(1));
//! assert_eq!(dec.next_page(&mut buf).unwrap(), None);
//! dec.finish().unwrap();
//! ```
#![deny(missing_docs)]

pub mod checksum;
mod compactor;
mod decoder;
mod encoder;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod header;
mod index;
mod legacy;

pub use compactor::Compactor;
pub use decoder::Decoder;
pub use encoder::Encoder;
pub use error::Error;
pub use header::{
    is_valid_page_size, lock_pgno, Header, Trailer, FLAG_NO_CHECKSUM, HEADER_SIZE, MAGIC,
    MAX_PAGE_SIZE, MIN_PAGE_SIZE, PAGE_FLAG_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE,
};
pub use index::{
    page_index_tail_len, read_page_index, PageIndexElem, DEFAULT_TAIL_SIZE, PAGE_INDEX_LEN_SIZE,
};

/// A transaction ID: Litestream counts one per sync, not one per SQLite transaction.
/// Displayed as 16 lowercase hex digits, as in file names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct TxId(pub u64);

impl std::fmt::Display for TxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for TxId {
    type Err = Error;
    /// Parses hex, with or without leading zeros (as `-txid` accepts).
    fn from_str(s: &str) -> Result<Self, Error> {
        u64::from_str_radix(s, 16)
            .map(TxId)
            .map_err(|_| Error::InvalidTxId(s.to_string()))
    }
}

/// The name of an LTX file: `%016x-%016x.ltx`.
pub fn file_name(min: TxId, max: TxId) -> String {
    format!("{min}-{max}.ltx")
}

/// Parses an LTX file name back into (MinTXID, MaxTXID). Returns `None` for anything else.
pub fn parse_file_name(name: &str) -> Option<(TxId, TxId)> {
    let stem = name.strip_suffix(".ltx")?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    let min = u64::from_str_radix(a, 16).ok()?;
    let max = u64::from_str_radix(b, 16).ok()?;
    Some((TxId(min), TxId(max)))
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
