//! CRC-64 checksums: per page, per database (rolling XOR), per file.

/// `crc::CRC_64_GO_ISO`, the table Go's `crc64.ISO` uses.
pub const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);

/// Bit 63, set on every page, database and file checksum.
pub const CHECKSUM_FLAG: u64 = 1 << 63;

/// `(1<<63) | CRC64ISO(be32 pgno ‖ page)`.
pub fn page_checksum(pgno: u32, data: &[u8]) -> u64 {
    let mut digest = CRC64_TABLE.digest();
    digest.update(&pgno.to_be_bytes());
    digest.update(data);
    CHECKSUM_FLAG | digest.finalize()
}

/// A `static` twin of [`CRC64`]: a `crc::Digest` borrows its table, and a `const` would hand out a
/// temporary.
pub(crate) static CRC64_TABLE: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_GO_ISO);

/// The database checksum of a whole database image: `pages` concatenated, `page_size` bytes each,
/// page 1 first. The lock page is skipped. A trailing partial page is ignored.
pub fn db_checksum(page_size: u32, pages: &[u8]) -> DbChecksum {
    let mut sum = DbChecksum::new();
    let lock = crate::lock_pgno(page_size);
    let size = page_size.max(1) as usize;
    for (i, page) in pages.chunks_exact(size).enumerate() {
        let Ok(pgno) = u32::try_from(i + 1) else {
            break;
        };
        if pgno != lock {
            sum.add(page_checksum(pgno, page));
        }
    }
    sum
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_go_iso_check_value() {
        // The catalog's check value for "123456789", the same Go's crc64.ISO table gives.
        assert_eq!(CRC64.checksum(b"123456789"), 0xb909_56c7_75a4_1001);
        assert_eq!(
            CRC64_TABLE.checksum(b"123456789"),
            CRC64.checksum(b"123456789")
        );
    }

    #[test]
    fn page_checksum_covers_pgno_and_data_with_flag() {
        let page = [7u8; 512];
        let mut input = 3u32.to_be_bytes().to_vec();
        input.extend_from_slice(&page);
        assert_eq!(
            page_checksum(3, &page),
            CHECKSUM_FLAG | CRC64.checksum(&input)
        );
        assert_ne!(page_checksum(3, &page), page_checksum(4, &page));
        assert_ne!(page_checksum(3, &page) & CHECKSUM_FLAG, 0);
    }

    #[test]
    fn db_checksum_add_remove_is_rolling() {
        let a = page_checksum(1, &[1u8; 512]);
        let b = page_checksum(2, &[2u8; 512]);
        let b2 = page_checksum(2, &[3u8; 512]);
        let mut sum = DbChecksum::new();
        assert_eq!(sum.value(), CHECKSUM_FLAG);
        sum.add(a);
        sum.add(b);
        sum.remove(b);
        sum.add(b2);
        let mut direct = DbChecksum::new();
        direct.add(a);
        direct.add(b2);
        assert_eq!(sum, direct);
    }

    #[test]
    fn db_checksum_of_image_matches_page_sum() {
        // (The lock-page skip needs a 1 GiB image to reach; the fixture tests cover the formula.)
        let image: Vec<u8> = (0..4u8).flat_map(|i| [i; 512]).collect();
        let mut manual = DbChecksum::new();
        for (i, p) in image.chunks(512).enumerate() {
            manual.add(page_checksum(i as u32 + 1, p));
        }
        assert_eq!(db_checksum(512, &image), manual);
    }
}
