use std::io::Write;

use crate::checksum::{CHECKSUM_FLAG, CRC64_TABLE};
use crate::header::PAGE_FLAG_SIZE;
use crate::index::{append_elem, append_uvarint, PageIndexElem};
use crate::{lock_pgno, Error, Header, Result, Trailer, PAGE_HEADER_SIZE};

/// Page header plus the 4-byte compressed size.
const FRAME_PREFIX: usize = PAGE_HEADER_SIZE + 4;

/// Streams pages into an LTX file. Pages must be given in ascending pgno order, each exactly
/// `page_size` bytes, never the lock page. Computes the file checksum and writes the page index.
///
/// Also rejects pgno 0 and pages above `header.commit`; for a snapshot header (MinTXID 1)
/// [`Encoder::finish`] requires every page from 1 to the commit, the lock page excepted.
/// After a failed write the encoder refuses further use: the output is incomplete.
pub struct Encoder<W: Write> {
    w: W,
    header: Header,
    hash: crc::Digest<'static, u64>,
    /// Bytes written so far.
    n: u64,
    prev_pgno: u32,
    pages: u64,
    /// The encoded page index so far (varint triples, no terminator).
    index: Vec<u8>,
    /// Frame under construction: prefix then compressed page.
    frame: Vec<u8>,
    failed: bool,
}

impl<W: Write> Encoder<W> {
    /// Validates and writes the header.
    pub fn new(mut w: W, header: &Header) -> Result<Self> {
        header.validate()?;
        let b = header.to_bytes();
        w.write_all(&b)?;
        let mut hash = CRC64_TABLE.digest();
        hash.update(&b);
        Ok(Encoder {
            w,
            header: header.clone(),
            hash,
            n: b.len() as u64,
            prev_pgno: 0,
            pages: 0,
            index: Vec::new(),
            frame: Vec::new(),
            failed: false,
        })
    }
    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Number of pages written so far.
    pub fn pages_written(&self) -> u64 {
        self.pages
    }
    /// Compresses one page as an LZ4 block with the size-prefix flag and writes its frame.
    pub fn write_page(&mut self, pgno: u32, data: &[u8]) -> Result<()> {
        if self.failed {
            return Err(Error::Encode("encoder used after a failed write".into()));
        }
        let misuse = |msg: String| Err(Error::Encode(format!("page {pgno}: {msg}")));
        if data.len() != self.header.page_size as usize {
            return misuse(format!(
                "{} bytes, page size is {}",
                data.len(),
                self.header.page_size
            ));
        }
        if pgno == 0 {
            return misuse("page numbers start at 1".into());
        }
        if pgno <= self.prev_pgno {
            return misuse(format!(
                "written after page {}: pages must ascend",
                self.prev_pgno
            ));
        }
        if pgno == lock_pgno(self.header.page_size) {
            return misuse("is the lock page, which is never stored".into());
        }
        if pgno > self.header.commit {
            return misuse(format!(
                "beyond the commit size of {} pages",
                self.header.commit
            ));
        }

        let bound = lz4_flex::block::get_maximum_output_size(data.len());
        self.frame.resize(FRAME_PREFIX + bound, 0);
        let size = lz4_flex::block::compress_into(data, &mut self.frame[FRAME_PREFIX..])
            .map_err(|e| Error::Encode(format!("page {pgno}: LZ4 compression failed: {e}")))?;
        let size32 = u32::try_from(size)
            .map_err(|_| Error::Encode(format!("page {pgno}: compressed size {size} overflows")))?;
        self.frame[0..4].copy_from_slice(&pgno.to_be_bytes());
        self.frame[4..6].copy_from_slice(&PAGE_FLAG_SIZE.to_be_bytes());
        self.frame[6..10].copy_from_slice(&size32.to_be_bytes());
        let len = FRAME_PREFIX + size;
        if let Err(e) = self.w.write_all(&self.frame[..len]) {
            self.failed = true;
            return Err(Error::Io(e));
        }
        self.hash.update(&self.frame[..FRAME_PREFIX]);
        self.hash.update(data);
        append_elem(
            &mut self.index,
            &PageIndexElem {
                pgno,
                offset: self.n,
                size: len as u64,
            },
        );
        self.n += len as u64;
        self.prev_pgno = pgno;
        self.pages += 1;
        Ok(())
    }
    /// Writes the end marker, the page index, its length and the trailer. Returns the writer
    /// (flushed, not synced) and the trailer.
    ///
    /// `post_apply_checksum` must be 0 with NoChecksum and a flagged (bit 63) database checksum
    /// without it.
    pub fn finish(mut self, post_apply_checksum: u64) -> Result<(W, Trailer)> {
        if self.failed {
            return Err(Error::Encode(
                "encoder finished after a failed write".into(),
            ));
        }
        if self.header.is_snapshot() {
            let commit = self.header.commit;
            let expected =
                u64::from(commit) - u64::from(lock_pgno(self.header.page_size) <= commit);
            if self.pages != expected {
                return Err(Error::Encode(format!(
                    "snapshot with commit {commit} needs every page (lock page excepted): {expected} pages, got {}",
                    self.pages
                )));
            }
        }
        if self.header.no_checksum() {
            if post_apply_checksum != 0 {
                return Err(Error::Encode(format!(
                    "NoChecksum flag set but post-apply checksum is {post_apply_checksum:016x}"
                )));
            }
        } else if post_apply_checksum & CHECKSUM_FLAG == 0 {
            return Err(Error::Encode(format!(
                "post-apply checksum {post_apply_checksum:016x} is zero or lacks bit 63"
            )));
        }

        let mut tail = vec![0u8; PAGE_HEADER_SIZE];
        let index_start = tail.len();
        tail.extend_from_slice(&self.index);
        append_uvarint(&mut tail, 0);
        let index_len = (tail.len() - index_start) as u64;
        tail.extend_from_slice(&index_len.to_be_bytes());
        tail.extend_from_slice(&post_apply_checksum.to_be_bytes());
        self.hash.update(&tail);
        let trailer = Trailer {
            post_apply_checksum,
            file_checksum: CHECKSUM_FLAG | self.hash.finalize(),
        };
        tail.extend_from_slice(&trailer.file_checksum.to_be_bytes());
        self.w.write_all(&tail)?;
        self.w.flush()?;
        Ok((self.w, trailer))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Decoder, TxId, FLAG_NO_CHECKSUM};

    const PS: u32 = 1024;

    fn incremental(commit: u32) -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            ..Header::new(PS, commit, TxId(5), TxId(7), 1_700_000_000_000)
        }
    }

    fn page(seed: u8) -> Vec<u8> {
        (0..PS as usize)
            .map(|i| {
                if i % 3 == 0 {
                    seed
                } else {
                    (i as u8).wrapping_mul(seed)
                }
            })
            .collect()
    }

    fn decode(b: &[u8]) -> (Header, Vec<(u32, Vec<u8>)>, Trailer) {
        let mut dec = Decoder::new(b).unwrap();
        let h = dec.header().clone();
        let mut out = Vec::new();
        let mut buf = vec![0u8; h.page_size as usize];
        while let Some(p) = dec.next_page(&mut buf).unwrap() {
            out.push((p, buf.clone()));
        }
        (h, out, dec.finish().unwrap())
    }

    #[test]
    fn encoder_round_trip_preserves_header_pages_trailer() {
        let h = incremental(40);
        let mut enc = Encoder::new(Vec::new(), &h).unwrap();
        let pages: Vec<(u32, Vec<u8>)> = [1u32, 2, 9, 33, 40]
            .iter()
            .map(|&p| (p, page(p as u8)))
            .collect();
        for (p, d) in &pages {
            enc.write_page(*p, d).unwrap();
        }
        assert_eq!(enc.pages_written(), 5);
        let (bytes, trailer) = enc.finish(0).unwrap();
        let (h2, pages2, t2) = decode(&bytes);
        assert_eq!(h2, h);
        assert_eq!(pages2, pages);
        assert_eq!(t2, trailer);
        let index = crate::read_page_index(&bytes).unwrap();
        assert_eq!(
            index.iter().map(|e| e.pgno).collect::<Vec<_>>(),
            vec![1, 2, 9, 33, 40]
        );
    }

    #[test]
    fn encoder_round_trip_incompressible_and_max_page_size() {
        let h = Header {
            page_size: 65536,
            ..incremental(3)
        };
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut enc = Encoder::new(Vec::new(), &h).unwrap();
        enc.write_page(2, &noise).unwrap();
        enc.write_page(3, &[0u8; 65536]).unwrap();
        let (bytes, _) = enc.finish(0).unwrap();
        let (_, pages, _) = decode(&bytes);
        assert_eq!(pages, vec![(2, noise), (3, vec![0u8; 65536])]);
    }

    #[test]
    fn encoder_rejects_misuse() {
        let mut enc = Encoder::new(Vec::new(), &incremental(10)).unwrap();
        enc.write_page(3, &page(3)).unwrap();
        for (pgno, len) in [
            (3u32, PS as usize),
            (2, PS as usize),
            (0, PS as usize),
            (11, PS as usize),
            (4, 100),
        ] {
            let r = enc.write_page(pgno, &vec![0u8; len]);
            assert!(
                matches!(r, Err(Error::Encode(_))),
                "pgno {pgno} len {len}: {r:?}"
            );
        }
        // Still usable after rejected calls: nothing was written for them.
        enc.write_page(4, &page(4)).unwrap();
        let (bytes, _) = enc.finish(0).unwrap();
        assert_eq!(decode(&bytes).1.len(), 2);
    }

    #[test]
    fn encoder_rejects_lock_page() {
        let h = Header {
            page_size: 65536,
            ..incremental(20_000)
        };
        let mut enc = Encoder::new(Vec::new(), &h).unwrap();
        let r = enc.write_page(lock_pgno(65536), &vec![0u8; 65536]);
        assert!(
            matches!(r, Err(Error::Encode(ref m)) if m.contains("lock page")),
            "{r:?}"
        );
    }

    #[test]
    fn encoder_rejects_invalid_header() {
        let h = Header {
            page_size: 1000,
            ..incremental(1)
        };
        assert!(matches!(
            Encoder::new(Vec::new(), &h),
            Err(Error::InvalidHeader(_))
        ));
    }

    #[test]
    fn encoder_snapshot_requires_every_page() {
        let snap = Header {
            min_txid: TxId(1),
            ..incremental(3)
        };
        let mut enc = Encoder::new(Vec::new(), &snap).unwrap();
        enc.write_page(1, &page(1)).unwrap();
        enc.write_page(3, &page(3)).unwrap();
        assert!(matches!(enc.finish(0), Err(Error::Encode(ref m)) if m.contains("snapshot")));

        let mut enc = Encoder::new(Vec::new(), &snap).unwrap();
        for p in 1..=3 {
            enc.write_page(p, &page(p as u8)).unwrap();
        }
        let (bytes, _) = enc.finish(0).unwrap();
        assert!(decode(&bytes).0.is_snapshot());
    }

    #[test]
    fn encoder_post_apply_checksum_rules() {
        let enc = Encoder::new(Vec::new(), &incremental(1)).unwrap();
        assert!(matches!(
            enc.finish(CHECKSUM_FLAG | 1),
            Err(Error::Encode(_))
        ));
        let tracked = Header {
            flags: 0,
            pre_apply_checksum: CHECKSUM_FLAG | 2,
            ..incremental(1)
        };
        let enc = Encoder::new(Vec::new(), &tracked).unwrap();
        assert!(matches!(enc.finish(0), Err(Error::Encode(_))));
        let enc = Encoder::new(Vec::new(), &tracked).unwrap();
        let (bytes, t) = enc.finish(CHECKSUM_FLAG | 3).unwrap();
        assert_eq!(t.post_apply_checksum, CHECKSUM_FLAG | 3);
        assert_eq!(decode(&bytes).2, t);
    }

    /// Fails every write after `ok` bytes.
    struct FailingWriter {
        ok: usize,
    }

    impl Write for FailingWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.ok == 0 {
                return Err(std::io::Error::other("disk full"));
            }
            let n = buf.len().min(self.ok);
            self.ok -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn encoder_write_failure_poisons_encoder() {
        let mut enc = Encoder::new(FailingWriter { ok: 110 }, &incremental(5)).unwrap();
        assert!(matches!(enc.write_page(1, &page(1)), Err(Error::Io(_))));
        assert!(matches!(enc.write_page(2, &page(2)), Err(Error::Encode(_))));
        assert!(enc.finish(0).is_err());
    }
}
