use crate::{Error, Result, TxId};

/// `LTX1`.
pub const MAGIC: &[u8; 4] = b"LTX1";
/// Size of the fixed header.
pub const HEADER_SIZE: usize = 100;
/// Size of a page frame header: pgno (u32) + flags (u16).
pub const PAGE_HEADER_SIZE: usize = 6;
/// Size of the trailer: post-apply checksum + file checksum.
pub const TRAILER_SIZE: usize = 16;
/// The only valid header flag: the pre/post-apply checksums are not maintained (zero).
pub const FLAG_NO_CHECKSUM: u32 = 1 << 1;

/// The page SQLite never stores data in: the one holding byte offset 2^30.
pub fn lock_pgno(page_size: u32) -> u32 {
    (0x4000_0000 / page_size.max(1)) + 1
}

/// The 100-byte LTX header. All integers big-endian on disk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// Flags; only [`FLAG_NO_CHECKSUM`] is valid.
    pub flags: u32,
    /// Page size, a power of two from 512 to 65536.
    pub page_size: u32,
    /// Database size in pages after applying this file.
    pub commit: u32,
    /// First TXID covered.
    pub min_txid: TxId,
    /// Last TXID covered.
    pub max_txid: TxId,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Database checksum before applying (0 for snapshots and with NoChecksum).
    pub pre_apply_checksum: u64,
    /// WAL offset the frames were read from (0 if not from a WAL).
    pub wal_offset: i64,
    /// Number of WAL bytes the frames spanned.
    pub wal_size: i64,
    /// WAL salt 1.
    pub wal_salt1: u32,
    /// WAL salt 2.
    pub wal_salt2: u32,
    /// Node ID (0 in Litestream).
    pub node_id: u64,
}

impl Header {
    /// A header with the given fields and all others zero.
    pub fn new(page_size: u32, commit: u32, min_txid: TxId, max_txid: TxId, timestamp: i64) -> Self {
        Header { page_size, commit, min_txid, max_txid, timestamp, ..Default::default() }
    }
    /// Serializes to the 100-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        todo!()
    }
    /// Parses and validates the 100-byte on-disk form.
    pub fn from_bytes(b: &[u8]) -> Result<Header> {
        let _ = b;
        todo!()
    }
    /// Checks every field (magic is checked by `from_bytes`): page size, TXIDs, flags, checksum rules.
    pub fn validate(&self) -> Result<()> {
        let _ = Error::BadMagic;
        todo!()
    }
    /// MinTXID == 1: the file holds every page of the database.
    pub fn is_snapshot(&self) -> bool {
        self.min_txid == TxId(1)
    }
    /// NoChecksum flag set.
    pub fn no_checksum(&self) -> bool {
        self.flags & FLAG_NO_CHECKSUM != 0
    }
}

/// The 16-byte trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    /// Database checksum after applying this file (0 with NoChecksum).
    pub post_apply_checksum: u64,
    /// CRC-64/GO-ISO of the file, with bit 63 set.
    pub file_checksum: u64,
}
