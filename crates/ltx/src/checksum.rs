//! CRC-64 checksums: per page, per database (rolling XOR), per file.

/// `crc::CRC_64_GO_ISO`, the table Go's `crc64.ISO` uses.
pub const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);

/// Bit 63, set on every page, database and file checksum.
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// `(1<<63) | CRC64ISO(be32 pgno ‖ page)`.
pub fn page_checksum(pgno: u32, data: &[u8]) -> u64 {
    let _ = (pgno, data);
    todo!()
}

/// The database checksum: `(1<<63) | XOR of page_checksum` over every page except the lock page.
/// XOR makes it rolling: replacing a page is `remove(old)` then `add(new)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DbChecksum(u64);

impl DbChecksum {
    /// The checksum of an empty database (no pages).
    pub fn new() -> Self {
        DbChecksum(0)
    }
    /// XORs a page's checksum in.
    pub fn add(&mut self, page_checksum: u64) {
        self.0 ^= page_checksum;
    }
    /// XORs a page's checksum out (same as add; named for intent).
    pub fn remove(&mut self, page_checksum: u64) {
        self.0 ^= page_checksum;
    }
    /// The value as stored in LTX files: `(1<<63) | xor`.
    pub fn value(&self) -> u64 {
        CHECKSUM_FLAG | self.0
    }
}
