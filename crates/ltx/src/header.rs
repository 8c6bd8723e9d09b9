use crate::checksum::CHECKSUM_FLAG;
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

/// Page frame flag: a 4-byte compressed size follows the page header and the page is one LZ4
/// block. Always set by writers since superfly/ltx v0.5.2; frames without it hold an LZ4 frame.
pub const PAGE_FLAG_SIZE: u16 = 1 << 0;

/// Smallest valid page size.
pub const MIN_PAGE_SIZE: u32 = 512;
/// Largest valid page size.
pub const MAX_PAGE_SIZE: u32 = 65536;

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
    ///
    /// Flags 0 means database checksums are tracked: a non-snapshot then needs a pre-apply
    /// checksum and every file a post-apply one. Set [`FLAG_NO_CHECKSUM`] for files like
    /// Litestream's, whose checksums are 0.
    pub fn new(
        page_size: u32,
        commit: u32,
        min_txid: TxId,
        max_txid: TxId,
        timestamp: i64,
    ) -> Self {
        Header {
            page_size,
            commit,
            min_txid,
            max_txid,
            timestamp,
            ..Default::default()
        }
    }
    /// Serializes to the 100-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b
    }
    /// Parses and validates the 100-byte on-disk form. Extra bytes after the first 100 are
    /// ignored; the reserved bytes 80..100 are not checked (as in superfly/ltx).
    pub fn from_bytes(b: &[u8]) -> Result<Header> {
        let b: &[u8; HEADER_SIZE] = b
            .get(..HEADER_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| {
                Error::Truncated(format!("header needs {HEADER_SIZE} bytes, got {}", b.len()))
            })?;
        if &b[0..4] != MAGIC {
            return Err(Error::BadMagic);
        }
        let h = Header {
            flags: be_u32(b, 4),
            page_size: be_u32(b, 8),
            commit: be_u32(b, 12),
            min_txid: TxId(be_u64(b, 16)),
            max_txid: TxId(be_u64(b, 24)),
            timestamp: be_u64(b, 32) as i64,
            pre_apply_checksum: be_u64(b, 40),
            wal_offset: be_u64(b, 48) as i64,
            wal_size: be_u64(b, 56) as i64,
            wal_salt1: be_u32(b, 64),
            wal_salt2: be_u32(b, 68),
            node_id: be_u64(b, 72),
        };
        h.validate()?;
        Ok(h)
    }
    /// Checks every field (magic is checked by `from_bytes`): page size, TXIDs, flags, checksum rules.
    ///
    /// The rules are superfly/ltx v0.5's `Header.Validate`: only the NoChecksum flag; page size a
    /// power of two in 512..=65536; 1 <= MinTXID <= MaxTXID; WAL offset and size not negative, a
    /// WAL offset whenever salts or a WAL size are set; a snapshot has pre-apply checksum 0; with
    /// NoChecksum a non-snapshot has pre-apply checksum 0; otherwise it has a non-zero one with
    /// bit 63 set.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidHeader(msg));
        if self.flags & !FLAG_NO_CHECKSUM != 0 {
            return bad(format!("invalid flags 0x{:08x}", self.flags));
        }
        if !is_valid_page_size(self.page_size) {
            return bad(format!("invalid page size {}", self.page_size));
        }
        if self.min_txid.0 == 0 {
            return bad("min TXID is 0".into());
        }
        if self.max_txid.0 == 0 {
            return bad("max TXID is 0".into());
        }
        if self.min_txid > self.max_txid {
            return bad(format!(
                "TXIDs out of order: min {} > max {}",
                self.min_txid, self.max_txid
            ));
        }
        if self.wal_offset < 0 {
            return bad(format!("negative WAL offset {}", self.wal_offset));
        }
        if self.wal_size < 0 {
            return bad(format!("negative WAL size {}", self.wal_size));
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return bad("WAL salts set without a WAL offset".into());
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return bad(format!("WAL size {} without a WAL offset", self.wal_size));
        }
        if self.is_snapshot() {
            if self.pre_apply_checksum != 0 {
                return bad(format!(
                    "snapshot (min TXID 1) has pre-apply checksum {:016x}, must be 0",
                    self.pre_apply_checksum
                ));
            }
        } else if self.no_checksum() {
            if self.pre_apply_checksum != 0 {
                return bad(format!(
                    "NoChecksum flag set but pre-apply checksum is {:016x}",
                    self.pre_apply_checksum
                ));
            }
        } else if self.pre_apply_checksum == 0 {
            return bad(
                "pre-apply checksum required on a non-snapshot file without NoChecksum".into(),
            );
        } else if self.pre_apply_checksum & CHECKSUM_FLAG == 0 {
            return bad(format!(
                "pre-apply checksum {:016x} lacks bit 63",
                self.pre_apply_checksum
            ));
        }
        Ok(())
    }
    /// The lock page for this header's page size.
    pub fn lock_pgno(&self) -> u32 {
        lock_pgno(self.page_size)
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

/// True for a power of two from 512 to 65536.
pub fn is_valid_page_size(page_size: u32) -> bool {
    page_size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size)
}

fn be_u32(b: &[u8; HEADER_SIZE], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(x)
}

fn be_u64(b: &[u8; HEADER_SIZE], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

/// The 16-byte trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    /// Database checksum after applying this file (0 with NoChecksum).
    pub post_apply_checksum: u64,
    /// CRC-64/GO-ISO of the file, with bit 63 set.
    pub file_checksum: u64,
}

impl Trailer {
    /// Serializes to the 16-byte on-disk form.
    pub fn to_bytes(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[..8].copy_from_slice(&self.post_apply_checksum.to_be_bytes());
        b[8..].copy_from_slice(&self.file_checksum.to_be_bytes());
        b
    }
    /// Parses the 16-byte on-disk form (no validation; see [`Trailer::validate`]).
    pub fn from_bytes(b: &[u8; TRAILER_SIZE]) -> Trailer {
        let mut post = [0u8; 8];
        let mut file = [0u8; 8];
        post.copy_from_slice(&b[..8]);
        file.copy_from_slice(&b[8..]);
        Trailer {
            post_apply_checksum: u64::from_be_bytes(post),
            file_checksum: u64::from_be_bytes(file),
        }
    }
    /// superfly/ltx's trailer rules: with NoChecksum the post-apply checksum is 0, otherwise it is
    /// non-zero with bit 63 set; the file checksum always has bit 63 set.
    pub fn validate(&self, header: &Header) -> Result<()> {
        if header.no_checksum() {
            if self.post_apply_checksum != 0 {
                return Err(Error::Corrupt(format!(
                    "NoChecksum flag set but post-apply checksum is {:016x}",
                    self.post_apply_checksum
                )));
            }
        } else if self.post_apply_checksum & CHECKSUM_FLAG == 0 {
            return Err(Error::Corrupt(format!(
                "post-apply checksum {:016x} is zero or lacks bit 63",
                self.post_apply_checksum
            )));
        }
        if self.file_checksum & CHECKSUM_FLAG == 0 {
            return Err(Error::Corrupt(format!(
                "file checksum {:016x} lacks bit 63",
                self.file_checksum
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn litestream_l0() -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            page_size: 4096,
            commit: 8,
            min_txid: TxId(2),
            max_txid: TxId(2),
            timestamp: 1_795_667_194_612,
            pre_apply_checksum: 0,
            wal_offset: 24752,
            wal_size: 24720,
            wal_salt1: 0x43da_3e91,
            wal_salt2: 0xbc60_26d1,
            node_id: 0,
        }
    }

    #[test]
    fn header_round_trips_through_bytes() {
        let h = litestream_l0();
        let b = h.to_bytes();
        assert_eq!(&b[..4], MAGIC);
        assert_eq!(&b[80..], &[0u8; 20]);
        assert_eq!(Header::from_bytes(&b).ok(), Some(h));
    }

    #[test]
    fn header_from_bytes_bad_magic_is_bad_magic() {
        let mut b = litestream_l0().to_bytes();
        b[0] = b'X';
        assert!(matches!(Header::from_bytes(&b), Err(Error::BadMagic)));
    }

    #[test]
    fn header_from_bytes_short_is_truncated() {
        let b = litestream_l0().to_bytes();
        assert!(matches!(
            Header::from_bytes(&b[..99]),
            Err(Error::Truncated(_))
        ));
    }

    #[test]
    fn header_validate_page_sizes() {
        for ps in [512u32, 1024, 2048, 4096, 8192, 16384, 32768, 65536] {
            let h = Header {
                page_size: ps,
                ..litestream_l0()
            };
            assert!(h.validate().is_ok(), "{ps}");
        }
        for ps in [0u32, 256, 511, 513, 4095, 131072, u32::MAX] {
            let h = Header {
                page_size: ps,
                ..litestream_l0()
            };
            assert!(matches!(h.validate(), Err(Error::InvalidHeader(_))), "{ps}");
        }
    }

    #[test]
    fn header_validate_rejects_bad_fields() {
        let base = litestream_l0();
        let cases = [
            Header {
                flags: 1,
                ..base.clone()
            },
            Header {
                flags: FLAG_NO_CHECKSUM | 4,
                ..base.clone()
            },
            Header {
                min_txid: TxId(0),
                ..base.clone()
            },
            Header {
                max_txid: TxId(0),
                min_txid: TxId(0),
                ..base.clone()
            },
            Header {
                min_txid: TxId(3),
                max_txid: TxId(2),
                ..base.clone()
            },
            Header {
                wal_offset: -1,
                ..base.clone()
            },
            Header {
                wal_size: -1,
                ..base.clone()
            },
            Header {
                wal_offset: 0,
                wal_size: 0,
                ..base.clone()
            }, // salts without offset
            Header {
                wal_offset: 0,
                wal_salt1: 0,
                wal_salt2: 0,
                ..base.clone()
            }, // size without offset
            // NoChecksum but a pre-apply checksum.
            Header {
                pre_apply_checksum: CHECKSUM_FLAG | 5,
                ..base.clone()
            },
            // Checksums tracked: non-snapshot needs a flagged pre-apply checksum.
            Header {
                flags: 0,
                ..base.clone()
            },
            Header {
                flags: 0,
                pre_apply_checksum: 5,
                ..base.clone()
            },
            // Snapshot: pre-apply checksum must be 0.
            Header {
                flags: 0,
                min_txid: TxId(1),
                pre_apply_checksum: CHECKSUM_FLAG | 5,
                ..base.clone()
            },
        ];
        for (i, h) in cases.iter().enumerate() {
            assert!(
                matches!(h.validate(), Err(Error::InvalidHeader(_))),
                "case {i}: {h:?}"
            );
        }
    }

    #[test]
    fn header_validate_accepts_checksummed_and_snapshot_forms() {
        let base = litestream_l0();
        let ok = [
            Header {
                flags: 0,
                pre_apply_checksum: CHECKSUM_FLAG | 5,
                ..base.clone()
            },
            Header {
                flags: 0,
                min_txid: TxId(1),
                ..base.clone()
            },
            Header {
                min_txid: TxId(1),
                max_txid: TxId(9),
                wal_offset: 0,
                wal_size: 0,
                wal_salt1: 0,
                wal_salt2: 0,
                ..base.clone()
            },
            Header::new(4096, 0, TxId(1), TxId(1), 0), // empty database snapshot
        ];
        for h in ok {
            assert!(h.validate().is_ok(), "{h:?}");
        }
    }

    #[test]
    fn lock_pgno_matches_sqlite_pending_byte() {
        assert_eq!(lock_pgno(4096), 262_145);
        assert_eq!(lock_pgno(512), 2_097_153);
        assert_eq!(lock_pgno(65536), 16_385);
    }

    #[test]
    fn trailer_round_trips_and_validates() {
        let t = Trailer {
            post_apply_checksum: 0,
            file_checksum: CHECKSUM_FLAG | 9,
        };
        assert_eq!(Trailer::from_bytes(&t.to_bytes()), t);
        let h = litestream_l0();
        assert!(t.validate(&h).is_ok());
        let with_post = Trailer {
            post_apply_checksum: CHECKSUM_FLAG | 1,
            ..t
        };
        assert!(with_post.validate(&h).is_err());
        let tracked = Header {
            flags: 0,
            pre_apply_checksum: CHECKSUM_FLAG,
            ..h
        };
        assert!(with_post.validate(&tracked).is_ok());
        assert!(t.validate(&tracked).is_err());
        assert!(Trailer {
            file_checksum: 9,
            ..with_post
        }
        .validate(&tracked)
        .is_err());
    }
}
