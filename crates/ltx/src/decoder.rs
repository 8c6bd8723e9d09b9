use std::io::{BufReader, Read};

use crate::checksum::{page_checksum, DbChecksum, CHECKSUM_FLAG, CRC64_TABLE};
use crate::header::PAGE_FLAG_SIZE;
use crate::index::{elem_from_raw, IndexChecker, PageIndexElem};
use crate::{
    lock_pgno, Error, Header, Result, Trailer, HEADER_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE,
};

/// Largest compressed page an LZ4 block may need: lz4_flex's bound plus slack for other
/// compressors (Go's pierrec/lz4 bound is `n + n/255 + 16`, smaller).
pub(crate) fn max_compressed_size(page_size: u32) -> usize {
    lz4_flex::block::get_maximum_output_size(page_size as usize) + 64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading page frames.
    Pages,
    /// The end marker was read; the index and trailer follow.
    Index,
    /// An error was returned; the stream position is unknown.
    Failed,
}

/// A reader that counts the bytes it hands out, so frame offsets need no `Seek`.
struct Counting<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Streams pages out of an LTX file, verifying the file checksum at [`Decoder::finish`].
/// Reads both the size-prefixed LZ4 block frames and the legacy LZ4 frame format.
///
/// The decoder buffers its reader internally (it owns it and never hands it back), tracks frame
/// offsets itself, and keeps O(1) state per file: the page index is checked against the frames
/// read through a running digest, not a stored list.
pub struct Decoder<R: Read> {
    r: Counting<BufReader<R>>,
    header: Header,
    hash: crc::Digest<'static, u64>,
    state: State,
    prev_pgno: u32,
    pages: u64,
    /// Digest of (pgno, offset, size) of every frame read, compared with the index at finish.
    frames: crc::Digest<'static, u64>,
    /// Database checksum of the pages read, kept only for snapshots that track checksums.
    db_sum: Option<DbChecksum>,
    comp: Vec<u8>,
}

impl<R: Read> Decoder<R> {
    /// Reads and validates the header.
    pub fn new(r: R) -> Result<Self> {
        let mut r = Counting {
            inner: BufReader::with_capacity(16 * 1024, r),
            n: 0,
        };
        let mut b = [0u8; HEADER_SIZE];
        read_exact(&mut r, &mut b, || "header".to_string())?;
        let header = Header::from_bytes(&b)?;
        let db_sum = (header.is_snapshot() && !header.no_checksum()).then(DbChecksum::new);
        let mut hash = CRC64_TABLE.digest();
        hash.update(&b);
        Ok(Decoder {
            r,
            header,
            hash,
            state: State::Pages,
            prev_pgno: 0,
            pages: 0,
            frames: CRC64_TABLE.digest(),
            db_sum,
            comp: Vec::new(),
        })
    }
    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// Number of page frames read so far.
    pub fn pages_read(&self) -> u64 {
        self.pages
    }
    /// Decodes the next page into `buf` (exactly `page_size` bytes) and returns its pgno, or
    /// `None` at the end marker. Checks order (strictly ascending) and sizes.
    pub fn next_page(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        match self.state {
            State::Pages => {}
            State::Index => return Ok(None),
            State::Failed => {
                return Err(Error::InvalidArgument(
                    "LTX decoder used after it returned an error".into(),
                ))
            }
        }
        if buf.len() != self.header.page_size as usize {
            return Err(Error::InvalidArgument(format!(
                "page buffer is {} bytes, page size is {}",
                buf.len(),
                self.header.page_size
            )));
        }
        let res = self.read_frame(buf);
        if res.is_err() {
            self.state = State::Failed;
        }
        res
    }

    fn read_frame(&mut self, buf: &mut [u8]) -> Result<Option<u32>> {
        let offset = self.r.n;
        let mut ph = [0u8; PAGE_HEADER_SIZE];
        read_exact(&mut self.r, &mut ph, || {
            format!("page header at offset {offset}")
        })?;
        self.hash.update(&ph);
        let pgno = u32::from_be_bytes([ph[0], ph[1], ph[2], ph[3]]);
        let flags = u16::from_be_bytes([ph[4], ph[5]]);
        let corrupt =
            |msg: String| Error::Corrupt(format!("page {pgno} at offset {offset}: {msg}"));
        if pgno == 0 {
            if flags != 0 {
                return Err(corrupt(format!("end marker has flags 0x{flags:04x}")));
            }
            self.state = State::Index;
            return Ok(None);
        }
        if flags & !PAGE_FLAG_SIZE != 0 {
            return Err(corrupt(format!("unknown page flags 0x{flags:04x}")));
        }
        if pgno <= self.prev_pgno {
            return Err(corrupt(format!(
                "follows page {}: pages must ascend",
                self.prev_pgno
            )));
        }
        if pgno == lock_pgno(self.header.page_size) {
            return Err(corrupt("is the lock page".into()));
        }
        if pgno > self.header.commit {
            return Err(corrupt(format!(
                "beyond the commit size of {} pages",
                self.header.commit
            )));
        }
        if flags & PAGE_FLAG_SIZE != 0 {
            let mut sz = [0u8; 4];
            read_exact(&mut self.r, &mut sz, || {
                format!("size of page {pgno} at offset {offset}")
            })?;
            self.hash.update(&sz);
            let size = u32::from_be_bytes(sz) as usize;
            let max = max_compressed_size(self.header.page_size);
            if size == 0 || size > max {
                return Err(corrupt(format!("compressed size {size} outside 1..={max}")));
            }
            self.comp.resize(size, 0);
            read_exact(&mut self.r, &mut self.comp, || {
                format!("data of page {pgno} at offset {offset}")
            })?;
            let n = lz4_flex::block::decompress_into(&self.comp, buf)
                .map_err(|e| corrupt(format!("LZ4 block: {e}")))?;
            if n != buf.len() {
                return Err(corrupt(format!(
                    "decompresses to {n} bytes, page size is {}",
                    buf.len()
                )));
            }
        } else {
            let what = format!("page {pgno} at offset {offset}: legacy LZ4 frame");
            crate::legacy::read_lz4_frame(&mut self.r, buf, &mut self.comp, &what)?;
        }
        self.hash.update(buf);
        if let Some(sum) = self.db_sum.as_mut() {
            sum.add(page_checksum(pgno, buf));
        }
        let size = self.r.n - offset;
        self.frames.update(&frame_record(pgno, offset, size));
        self.prev_pgno = pgno;
        self.pages += 1;
        Ok(Some(pgno))
    }

    /// Reads the rest (index, trailer), verifies the file checksum, and returns the trailer.
    /// Pages not yet read are read and checked first.
    ///
    /// Also checks that the page index lists exactly the frames read (pgno, offset, size), that
    /// a snapshot holds every page up to its commit (the lock page excepted), that the trailer's
    /// checksums are well-formed for the header's flags, and that nothing follows the trailer.
    /// For a snapshot without NoChecksum, the post-apply checksum must equal the database
    /// checksum of its pages.
    pub fn finish(mut self) -> Result<Trailer> {
        if self.state == State::Pages {
            let mut scratch = vec![0u8; self.header.page_size as usize];
            while self.next_page(&mut scratch)?.is_some() {}
        }
        if self.state == State::Failed {
            return Err(Error::InvalidArgument(
                "LTX decoder finished after it returned an error".into(),
            ));
        }

        // Page index: varint triples up to a zero pgno, hashed as read.
        let index_start = self.r.n;
        let mut check = IndexChecker::default();
        let mut digest = CRC64_TABLE.digest();
        let mut entries = 0u64;
        loop {
            let pgno = self.read_uvarint()?;
            if pgno == 0 {
                break;
            }
            let offset = self.read_uvarint()?;
            let size = self.read_uvarint()?;
            let elem: PageIndexElem = elem_from_raw(pgno, offset, size)?;
            check.push(&elem)?;
            digest.update(&frame_record(elem.pgno, elem.offset, elem.size));
            entries += 1;
            if entries > self.pages {
                return Err(Error::Corrupt(format!(
                    "page index lists more than the {} frames read",
                    self.pages
                )));
            }
        }
        let index_len = self.r.n - index_start;
        let mut lb = [0u8; 8];
        read_exact(&mut self.r, &mut lb, || "page index length".to_string())?;
        self.hash.update(&lb);
        let stored_len = u64::from_be_bytes(lb);
        if stored_len != index_len {
            return Err(Error::Corrupt(format!(
                "page index length field says {stored_len} bytes, index is {index_len}"
            )));
        }
        if entries != self.pages || digest.finalize() != self.frames.clone().finalize() {
            return Err(Error::Corrupt(format!(
                "page index ({entries} entries) disagrees with the {} frames read (pgno, offset or size)",
                self.pages
            )));
        }

        let mut tb = [0u8; TRAILER_SIZE];
        read_exact(&mut self.r, &mut tb, || "trailer".to_string())?;
        let trailer = Trailer::from_bytes(&tb);
        self.hash.update(&tb[..8]);
        let actual = CHECKSUM_FLAG | self.hash.finalize();
        if actual != trailer.file_checksum {
            return Err(Error::ChecksumMismatch {
                expected: trailer.file_checksum,
                actual,
            });
        }
        trailer.validate(&self.header)?;
        if let Some(sum) = self.db_sum {
            // A snapshot holds the whole database, so its post-apply checksum can be checked
            // (Litestream 0.5.17 does the same when restoring).
            if sum.value() != trailer.post_apply_checksum {
                return Err(Error::Corrupt(format!(
                    "snapshot post-apply checksum {:016x} does not match its pages' {:016x}",
                    trailer.post_apply_checksum,
                    sum.value()
                )));
            }
        }

        if self.header.is_snapshot() {
            let commit = self.header.commit;
            let expected =
                u64::from(commit) - u64::from(lock_pgno(self.header.page_size) <= commit);
            if self.pages != expected {
                return Err(Error::Corrupt(format!(
                    "snapshot with commit {commit} holds {} pages, expected {expected}",
                    self.pages
                )));
            }
        }

        let mut extra = [0u8; 1];
        loop {
            match self.r.read(&mut extra) {
                Ok(0) => break,
                Ok(_) => {
                    return Err(Error::Corrupt(format!(
                        "data after the trailer at offset {}",
                        self.r.n - 1
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
        Ok(trailer)
    }

    /// Reads one unsigned varint of the page index, hashing its bytes.
    fn read_uvarint(&mut self) -> Result<u64> {
        let at = self.r.n;
        let mut x = 0u64;
        for i in 0..10 {
            let mut b = [0u8; 1];
            read_exact(&mut self.r, &mut b, || format!("page index at offset {at}"))?;
            self.hash.update(&b);
            let byte = b[0];
            if i == 9 && byte > 1 {
                break;
            }
            if byte < 0x80 {
                return Ok(x | (u64::from(byte) << (7 * i)));
            }
            x |= u64::from(byte & 0x7f) << (7 * i);
        }
        Err(Error::Corrupt(format!(
            "page index: varint at offset {at} overflows 64 bits"
        )))
    }
}

/// The fixed-width record of one frame fed to the frame/index digests.
fn frame_record(pgno: u32, offset: u64, size: u64) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[..4].copy_from_slice(&pgno.to_be_bytes());
    b[4..12].copy_from_slice(&offset.to_be_bytes());
    b[12..].copy_from_slice(&size.to_be_bytes());
    b
}

/// `read_exact` that reports a short read as [`Error::Truncated`] naming what was being read.
pub(crate) fn read_exact<R: Read>(
    r: &mut R,
    buf: &mut [u8],
    what: impl FnOnce() -> String,
) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Truncated(format!("file ends inside {}", what()))
        } else {
            Error::Io(e)
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::index::{append_elem, append_uvarint};
    use crate::{Encoder, TxId, FLAG_NO_CHECKSUM};
    use lz4_flex::frame::{BlockMode, BlockSize, FrameEncoder, FrameInfo};
    use std::io::Write;

    const PS: u32 = 512;

    /// A page frame as stored: header fields, the bytes after the header, and the page it holds.
    struct RawFrame {
        pgno: u32,
        flags: u16,
        payload: Vec<u8>,
        page: Vec<u8>,
    }

    fn page(seed: u32) -> Vec<u8> {
        // Half compressible, half pseudo-random.
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..PS as usize)
            .map(|i| {
                if i < PS as usize / 2 {
                    (seed % 7) as u8
                } else {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                }
            })
            .collect()
    }

    fn block_frame(pgno: u32, page: Vec<u8>) -> RawFrame {
        let comp = lz4_flex::block::compress(&page);
        let mut payload = (comp.len() as u32).to_be_bytes().to_vec();
        payload.extend_from_slice(&comp);
        RawFrame {
            pgno,
            flags: PAGE_FLAG_SIZE,
            payload,
            page,
        }
    }

    fn legacy_frame(pgno: u32, page: Vec<u8>, info: FrameInfo) -> RawFrame {
        let mut enc = FrameEncoder::with_frame_info(info, Vec::new());
        enc.write_all(&page).unwrap();
        RawFrame {
            pgno,
            flags: 0,
            payload: enc.finish().unwrap(),
            page,
        }
    }

    fn header(commit: u32, min: u64) -> Header {
        Header {
            flags: FLAG_NO_CHECKSUM,
            ..Header::new(PS, commit, TxId(min), TxId(min), 7)
        }
    }

    /// Assembles a file from raw frames with a correct file checksum; `index` overrides the
    /// page index the frames imply.
    fn build(h: &Header, frames: &[RawFrame], index: Option<Vec<PageIndexElem>>) -> Vec<u8> {
        let mut out = h.to_bytes().to_vec();
        let mut hash = CRC64_TABLE.digest();
        hash.update(&out);
        let mut implied = Vec::new();
        for f in frames {
            let offset = out.len() as u64;
            let mut ph = f.pgno.to_be_bytes().to_vec();
            ph.extend_from_slice(&f.flags.to_be_bytes());
            hash.update(&ph);
            if f.flags & PAGE_FLAG_SIZE != 0 {
                hash.update(&f.payload[..4]);
            }
            hash.update(&f.page);
            out.extend_from_slice(&ph);
            out.extend_from_slice(&f.payload);
            implied.push(PageIndexElem {
                pgno: f.pgno,
                offset,
                size: out.len() as u64 - offset,
            });
        }
        let mut tail = vec![0u8; 6];
        let mut idx = Vec::new();
        for e in index.unwrap_or(implied) {
            append_elem(&mut idx, &e);
        }
        append_uvarint(&mut idx, 0);
        tail.extend_from_slice(&idx);
        tail.extend_from_slice(&(idx.len() as u64).to_be_bytes());
        tail.extend_from_slice(&0u64.to_be_bytes());
        hash.update(&tail);
        tail.extend_from_slice(&(CHECKSUM_FLAG | hash.finalize()).to_be_bytes());
        out.extend_from_slice(&tail);
        out
    }

    fn decode_all(b: &[u8]) -> Result<Vec<(u32, Vec<u8>)>> {
        let mut dec = Decoder::new(b)?;
        let mut pages = Vec::new();
        let mut buf = vec![0u8; dec.header().page_size as usize];
        while let Some(pgno) = dec.next_page(&mut buf)? {
            pages.push((pgno, buf.clone()));
        }
        dec.finish()?;
        Ok(pages)
    }

    #[test]
    fn decoder_reads_builder_file() {
        let frames = vec![block_frame(2, page(2)), block_frame(5, page(5))];
        let pages = decode_all(&build(&header(9, 3), &frames, None)).unwrap();
        assert_eq!(pages, vec![(2, page(2)), (5, page(5))]);
    }

    #[test]
    fn decoder_reads_legacy_lz4_frames_mixed_with_blocks() {
        let infos = [
            FrameInfo::new(),
            FrameInfo::new().content_checksum(true),
            FrameInfo::new()
                .block_checksums(true)
                .content_size(Some(u64::from(PS))),
            FrameInfo::new()
                .block_mode(BlockMode::Linked)
                .block_size(BlockSize::Max4MB),
        ];
        let mut frames = Vec::new();
        let mut pgno = 1;
        for info in infos {
            frames.push(legacy_frame(pgno, page(pgno), info));
            frames.push(block_frame(pgno + 1, page(pgno + 1)));
            pgno += 2;
        }
        let file = build(&header(20, 4), &frames, None);
        let want: Vec<_> = frames.iter().map(|f| (f.pgno, f.page.clone())).collect();
        assert_eq!(decode_all(&file).unwrap(), want);
    }

    #[test]
    fn decoder_reads_multi_block_legacy_frame() {
        // Hand-made frame: one stored block, then a linked compressed block that refers back.
        let p = page(3);
        let (a, b) = p.split_at(100);
        let mut payload = vec![0x04, 0x22, 0x4D, 0x18, 0b0100_0100, 0x40, 0x00]; // FLG: v1, content checksum
        payload.extend_from_slice(&(0x8000_0000u32 | a.len() as u32).to_le_bytes());
        payload.extend_from_slice(a);
        let comp = lz4_flex::block::compress_with_dict(b, a);
        payload.extend_from_slice(&(comp.len() as u32).to_le_bytes());
        payload.extend_from_slice(&comp);
        payload.extend_from_slice(&[0, 0, 0, 0]); // end mark
        payload.extend_from_slice(&[1, 2, 3, 4]); // content checksum (not verified)
        let frames = vec![
            RawFrame {
                pgno: 1,
                flags: 0,
                payload,
                page: p.clone(),
            },
            block_frame(2, page(2)),
        ];
        let got = decode_all(&build(&header(2, 2), &frames, None)).unwrap();
        assert_eq!(got, vec![(1, p), (2, page(2))]);
    }

    #[test]
    fn decoder_rejects_bad_legacy_frames() {
        let good = legacy_frame(1, page(1), FrameInfo::new()).payload;
        let mut cases: Vec<Vec<u8>> = Vec::new();
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 1;
        cases.push(bad_magic);
        let mut bad_version = good.clone();
        bad_version[4] = 0;
        cases.push(bad_version);
        let mut dict = good.clone();
        dict[4] |= 1;
        cases.push(dict);
        // Content size that is not the page size.
        cases.push(
            legacy_frame(
                1,
                page(1)[..100].to_vec(),
                FrameInfo::new().content_size(Some(100)),
            )
            .payload,
        );
        // Decompresses to less than a page.
        cases.push(legacy_frame(1, page(1)[..100].to_vec(), FrameInfo::new()).payload);
        // A block claiming 2^31-1 bytes.
        let mut huge = good[..7].to_vec();
        huge.extend_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
        cases.push(huge);
        for (i, payload) in cases.into_iter().enumerate() {
            let frames = vec![RawFrame {
                pgno: 1,
                flags: 0,
                payload,
                page: page(1),
            }];
            let r = decode_all(&build(&header(2, 2), &frames, None));
            assert!(
                matches!(r, Err(Error::Corrupt(_)) | Err(Error::Truncated(_))),
                "case {i}: {r:?}"
            );
        }
    }

    #[test]
    fn decoder_rejects_huge_compressed_size_without_allocating() {
        let mut f = block_frame(1, page(1));
        f.payload[..4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        let r = decode_all(&build(&header(2, 2), &[f], None));
        assert!(
            matches!(r, Err(Error::Corrupt(ref m)) if m.contains("compressed size")),
            "{r:?}"
        );
    }

    #[test]
    fn decoder_rejects_short_decompression() {
        let comp = lz4_flex::block::compress(&page(1)[..100]);
        let mut payload = (comp.len() as u32).to_be_bytes().to_vec();
        payload.extend_from_slice(&comp);
        let f = RawFrame {
            pgno: 1,
            flags: PAGE_FLAG_SIZE,
            payload,
            page: page(1),
        };
        let r = decode_all(&build(&header(2, 2), &[f], None));
        assert!(
            matches!(r, Err(Error::Corrupt(ref m)) if m.contains("decompresses to 100")),
            "{r:?}"
        );
    }

    #[test]
    fn decoder_enforces_page_order_and_bounds() {
        let cases: Vec<(Header, Vec<RawFrame>)> = vec![
            (
                header(9, 2),
                vec![block_frame(3, page(3)), block_frame(3, page(3))],
            ),
            (
                header(9, 2),
                vec![block_frame(4, page(4)), block_frame(3, page(3))],
            ),
            (header(9, 2), vec![block_frame(10, page(10))]),
            (
                Header {
                    page_size: 65536,
                    ..header(20_000, 2)
                },
                vec![block_frame(lock_pgno(65536), vec![0u8; 65536])],
            ),
            (header(9, 2), {
                let mut f = block_frame(3, page(3));
                f.flags |= 0x8;
                vec![f]
            }),
        ];
        for (i, (h, frames)) in cases.into_iter().enumerate() {
            let r = decode_all(&build(&h, &frames, None));
            assert!(matches!(r, Err(Error::Corrupt(_))), "case {i}: {r:?}");
        }
    }

    #[test]
    fn decoder_rejects_index_that_disagrees_with_frames() {
        let frames = vec![block_frame(2, page(2)), block_frame(5, page(5))];
        let first = PageIndexElem {
            pgno: 2,
            offset: 100,
            size: frames[0].payload.len() as u64 + 6,
        };
        let second = PageIndexElem {
            pgno: 5,
            offset: first.offset + first.size,
            size: frames[1].payload.len() as u64 + 6,
        };
        assert!(decode_all(&build(&header(9, 2), &frames, Some(vec![first, second]))).is_ok());
        let bad_indexes = vec![
            vec![first],
            vec![
                first,
                second,
                PageIndexElem {
                    pgno: 7,
                    offset: second.offset + second.size,
                    size: 20,
                },
            ],
            vec![first, PageIndexElem { pgno: 6, ..second }],
            vec![
                first,
                PageIndexElem {
                    size: second.size + 1,
                    ..second
                },
            ],
            vec![PageIndexElem { pgno: 1, ..first }, second],
            vec![],
        ];
        for (i, idx) in bad_indexes.into_iter().enumerate() {
            let r = decode_all(&build(&header(9, 2), &frames, Some(idx)));
            assert!(matches!(r, Err(Error::Corrupt(_))), "case {i}: {r:?}");
        }
    }

    #[test]
    fn decoder_rejects_incomplete_snapshot() {
        let frames = vec![block_frame(1, page(1)), block_frame(3, page(3))];
        let r = decode_all(&build(&header(3, 1), &frames, None));
        assert!(
            matches!(r, Err(Error::Corrupt(ref m)) if m.contains("snapshot")),
            "{r:?}"
        );
        let frames = vec![
            block_frame(1, page(1)),
            block_frame(2, page(2)),
            block_frame(3, page(3)),
        ];
        assert!(decode_all(&build(&header(3, 1), &frames, None)).is_ok());
    }

    #[test]
    fn decoder_checks_post_apply_checksum_of_tracked_snapshot() {
        let h = Header::new(PS, 2, TxId(1), TxId(3), 0); // checksums tracked
        let mut sum = DbChecksum::new();
        sum.add(page_checksum(1, &page(1)));
        sum.add(page_checksum(2, &page(2)));
        for (post, ok) in [(sum.value(), true), (sum.value() ^ 1, false)] {
            let mut enc = Encoder::new(Vec::new(), &h).unwrap();
            enc.write_page(1, &page(1)).unwrap();
            enc.write_page(2, &page(2)).unwrap();
            let (file, _) = enc.finish(post).unwrap();
            let r = decode_all(&file);
            assert_eq!(r.is_ok(), ok, "{r:?}");
        }
    }

    #[test]
    fn decoder_random_garbage_never_panics() {
        let valid = build(
            &header(9, 2),
            &[
                block_frame(2, page(2)),
                legacy_frame(3, page(3), FrameInfo::new()),
            ],
            None,
        );
        let mut x = 0x9E37_79B9u32;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..3000 {
            // A valid header, then either random bytes or the valid body with random bytes
            // overwritten (sizes, flags and pgnos included).
            let mut b = valid.clone();
            if rnd() % 2 == 0 {
                b.truncate(HEADER_SIZE + (rnd() % 2000) as usize);
                for v in b[HEADER_SIZE..].iter_mut() {
                    *v = rnd() as u8;
                }
            } else {
                for _ in 0..1 + rnd() % 8 {
                    let at = HEADER_SIZE + (rnd() as usize % (b.len() - HEADER_SIZE));
                    b[at] = rnd() as u8;
                }
            }
            let _ = decode_all(&b);
        }
    }

    #[test]
    fn decoder_detects_checksum_mismatch() {
        let mut file = build(&header(9, 2), &[block_frame(2, page(2))], None);
        let n = file.len();
        file[n - 1] ^= 1;
        assert!(matches!(
            decode_all(&file),
            Err(Error::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn decoder_finish_reads_unread_pages() {
        let frames = vec![block_frame(2, page(2)), block_frame(5, page(5))];
        let file = build(&header(9, 2), &frames, None);
        assert!(Decoder::new(&file[..]).unwrap().finish().is_ok());
        let mut dec = Decoder::new(&file[..]).unwrap();
        let mut buf = vec![0u8; PS as usize];
        assert_eq!(dec.next_page(&mut buf).unwrap(), Some(2));
        assert_eq!(dec.pages_read(), 1);
        assert!(dec.finish().is_ok());
    }

    #[test]
    fn decoder_wrong_buffer_size_is_invalid_argument_and_recoverable() {
        let file = build(&header(9, 2), &[block_frame(2, page(2))], None);
        let mut dec = Decoder::new(&file[..]).unwrap();
        let mut small = vec![0u8; 100];
        assert!(matches!(
            dec.next_page(&mut small),
            Err(Error::InvalidArgument(_))
        ));
        let mut buf = vec![0u8; PS as usize];
        assert_eq!(dec.next_page(&mut buf).unwrap(), Some(2));
        assert_eq!(dec.next_page(&mut buf).unwrap(), None);
        assert_eq!(dec.next_page(&mut buf).unwrap(), None);
        dec.finish().unwrap();
    }

    #[test]
    fn decoder_after_error_keeps_failing() {
        let mut file = build(
            &header(9, 2),
            &[block_frame(2, page(2)), block_frame(3, page(3))],
            None,
        );
        file[HEADER_SIZE + 4] = 0x80; // unknown flag on the first frame
        let mut dec = Decoder::new(&file[..]).unwrap();
        let mut buf = vec![0u8; PS as usize];
        assert!(dec.next_page(&mut buf).is_err());
        assert!(dec.next_page(&mut buf).is_err());
        assert!(dec.finish().is_err());
    }

    #[test]
    fn decoder_reads_what_the_encoder_writes_empty_and_full() {
        let h = Header::new(PS, 0, TxId(1), TxId(1), 0);
        let (empty, _) = Encoder::new(Vec::new(), &h)
            .unwrap()
            .finish(CHECKSUM_FLAG)
            .unwrap();
        assert_eq!(decode_all(&empty).unwrap(), vec![]);
        let h = header(9, 2);
        let mut enc = Encoder::new(Vec::new(), &h).unwrap();
        enc.write_page(4, &page(4)).unwrap();
        let (file, _) = enc.finish(0).unwrap();
        assert_eq!(decode_all(&file).unwrap(), vec![(4, page(4))]);
    }
}
