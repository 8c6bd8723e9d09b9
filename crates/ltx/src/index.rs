use crate::{Error, Result, HEADER_SIZE, PAGE_HEADER_SIZE, TRAILER_SIZE};

/// One entry of the page index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageIndexElem {
    /// Page number.
    pub pgno: u32,
    /// Absolute offset of the page frame in the file.
    pub offset: u64,
    /// Length of the frame, its 6-byte header included.
    pub size: u64,
}

/// Size of the u64 that follows the page index and gives its length.
pub const PAGE_INDEX_LEN_SIZE: usize = 8;

/// How many bytes Litestream fetches from the end of a file to find the page index.
pub const DEFAULT_TAIL_SIZE: usize = 32 * 1024;

/// How many bytes from the end of the file hold the page index, its length and the trailer,
/// read from `tail` (at least the last 24 bytes of the file). Use it when [`read_page_index`]
/// says the tail was too short.
pub fn page_index_tail_len(tail: &[u8]) -> Result<u64> {
    let fixed = PAGE_INDEX_LEN_SIZE + TRAILER_SIZE;
    let Some(start) = tail.len().checked_sub(fixed) else {
        return Err(Error::Truncated(format!(
            "page index tail: need at least {fixed} bytes, got {}",
            tail.len()
        )));
    };
    let mut len = [0u8; 8];
    len.copy_from_slice(&tail[start..start + PAGE_INDEX_LEN_SIZE]);
    let index_len = u64::from_be_bytes(len);
    if index_len == 0 {
        return Err(Error::Corrupt(
            "page index length is 0 (it holds at least its terminator)".into(),
        ));
    }
    index_len
        .checked_add(fixed as u64)
        .ok_or_else(|| Error::Corrupt(format!("page index length {index_len} is absurd")))
}

/// Reads the page index from `tail`, the last bytes of a file (trailer included). Readers fetch the
/// last 32 KiB; if the index is longer than `tail` holds, returns `Err(Error::Truncated)` naming the
/// number of tail bytes needed.
///
/// Checks that entries are sorted by strictly ascending pgno, that frames are contiguous from
/// the end of the header, and that the terminator ends the index exactly.
pub fn read_page_index(tail: &[u8]) -> Result<Vec<PageIndexElem>> {
    let need = page_index_tail_len(tail)?;
    let Some(start) = usize::try_from(need)
        .ok()
        .and_then(|n| tail.len().checked_sub(n))
    else {
        return Err(Error::Truncated(format!(
            "page index needs the last {need} bytes of the file, tail has {}",
            tail.len()
        )));
    };
    let end = tail.len() - PAGE_INDEX_LEN_SIZE - TRAILER_SIZE;
    let mut p = IndexParser::new(&tail[start..end]);
    let mut out = Vec::new();
    let mut check = IndexChecker::default();
    while let Some(elem) = p.next_elem()? {
        check.push(&elem)?;
        out.push(elem);
    }
    if !p.is_empty() {
        return Err(Error::Corrupt(format!(
            "page index: {} bytes after the terminator",
            p.remaining()
        )));
    }
    Ok(out)
}

/// Parses index entries from a byte slice.
struct IndexParser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> IndexParser<'a> {
    fn new(b: &'a [u8]) -> Self {
        IndexParser { b, pos: 0 }
    }
    fn is_empty(&self) -> bool {
        self.pos >= self.b.len()
    }
    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }
    /// The next entry, or `None` at the terminator.
    fn next_elem(&mut self) -> Result<Option<PageIndexElem>> {
        let mut next = || -> Result<u64> {
            let at = self.pos;
            let rest = self.b.get(self.pos..).unwrap_or_default();
            let (v, n) = decode_uvarint(rest)
                .map_err(|e| Error::Corrupt(format!("page index: {e} at index byte {at}")))?;
            self.pos += n;
            Ok(v)
        };
        let pgno = next()?;
        if pgno == 0 {
            return Ok(None);
        }
        let offset = next()?;
        let size = next()?;
        Ok(Some(elem_from_raw(pgno, offset, size)?))
    }
}

/// Builds an element from raw varint values, rejecting pgnos beyond u32.
pub(crate) fn elem_from_raw(pgno: u64, offset: u64, size: u64) -> Result<PageIndexElem> {
    let pgno = u32::try_from(pgno)
        .map_err(|_| Error::Corrupt(format!("page index: pgno {pgno} does not fit 32 bits")))?;
    Ok(PageIndexElem { pgno, offset, size })
}

/// Checks the structural rules of a sequence of index entries.
#[derive(Default)]
pub(crate) struct IndexChecker {
    prev: Option<PageIndexElem>,
}

impl IndexChecker {
    pub(crate) fn push(&mut self, e: &PageIndexElem) -> Result<()> {
        let expected_offset = match self.prev {
            None => HEADER_SIZE as u64,
            Some(p) => {
                if e.pgno <= p.pgno {
                    return Err(Error::Corrupt(format!(
                        "page index: pgno {} follows pgno {}",
                        e.pgno, p.pgno
                    )));
                }
                p.offset.saturating_add(p.size)
            }
        };
        if e.offset != expected_offset {
            return Err(Error::Corrupt(format!(
                "page index: page {} at offset {}, expected {expected_offset}",
                e.pgno, e.offset
            )));
        }
        if e.size <= PAGE_HEADER_SIZE as u64 {
            return Err(Error::Corrupt(format!(
                "page index: page {} has frame size {}",
                e.pgno, e.size
            )));
        }
        self.prev = Some(*e);
        Ok(())
    }
}

/// Appends `v` as an unsigned LEB128 varint (Go's `binary.AppendUvarint`).
pub(crate) fn append_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends one index entry.
pub(crate) fn append_elem(out: &mut Vec<u8>, e: &PageIndexElem) {
    append_uvarint(out, u64::from(e.pgno));
    append_uvarint(out, e.offset);
    append_uvarint(out, e.size);
}

/// Decodes an unsigned varint as Go's `binary.Uvarint` does: at most 10 bytes, no overflow.
/// Returns the value and the number of bytes used.
pub(crate) fn decode_uvarint(b: &[u8]) -> std::result::Result<(u64, usize), &'static str> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate() {
        if i == 9 && byte > 1 {
            return Err("varint overflows 64 bits");
        }
        if byte < 0x80 {
            return Ok((x | (u64::from(byte) << (7 * i)), i + 1));
        }
        if i == 9 {
            return Err("varint overflows 64 bits");
        }
        x |= u64::from(byte & 0x7f) << (7 * i);
    }
    Err("varint runs past the end of the index")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tail_for(elems: &[PageIndexElem]) -> Vec<u8> {
        let mut idx = Vec::new();
        for e in elems {
            append_elem(&mut idx, e);
        }
        append_uvarint(&mut idx, 0);
        let mut tail = vec![0xAA; 5]; // some frame bytes before the index
        tail.extend_from_slice(&idx);
        tail.extend_from_slice(&(idx.len() as u64).to_be_bytes());
        tail.extend_from_slice(&[0u8; TRAILER_SIZE]);
        tail
    }

    fn elems() -> Vec<PageIndexElem> {
        vec![
            PageIndexElem {
                pgno: 1,
                offset: 100,
                size: 300,
            },
            PageIndexElem {
                pgno: 7,
                offset: 400,
                size: 70_000,
            },
            PageIndexElem {
                pgno: 300_000,
                offset: 70_400,
                size: 11,
            },
        ]
    }

    #[test]
    fn uvarint_round_trips_edges() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            u32::MAX as u64,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            append_uvarint(&mut b, v);
            assert_eq!(decode_uvarint(&b), Ok((v, b.len())), "{v}");
        }
    }

    #[test]
    fn uvarint_rejects_overflow_and_truncation() {
        assert!(decode_uvarint(&[0xff; 10]).is_err());
        assert!(
            decode_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).is_err()
        );
        assert!(decode_uvarint(&[0x80, 0x80]).is_err());
        assert!(decode_uvarint(&[]).is_err());
    }

    #[test]
    fn read_page_index_round_trips() {
        let tail = tail_for(&elems());
        assert_eq!(read_page_index(&tail).unwrap(), elems());
    }

    #[test]
    fn read_page_index_empty_index() {
        let tail = tail_for(&[]);
        assert_eq!(read_page_index(&tail).unwrap(), vec![]);
    }

    #[test]
    fn read_page_index_short_tail_names_needed_bytes() {
        let tail = tail_for(&elems());
        let need = page_index_tail_len(&tail).unwrap() as usize;
        assert_eq!(need, tail.len() - 5);
        let short = &tail[tail.len() - need + 1..];
        match read_page_index(short) {
            Err(Error::Truncated(msg)) => assert!(msg.contains(&need.to_string()), "{msg}"),
            other => panic!("expected Truncated, got {other:?}"),
        }
        assert!(matches!(
            read_page_index(&tail[tail.len() - 10..]),
            Err(Error::Truncated(_))
        ));
    }

    #[test]
    fn read_page_index_rejects_unsorted_and_gaps() {
        let mut e = elems();
        e.swap(0, 1);
        assert!(matches!(
            read_page_index(&tail_for(&e)),
            Err(Error::Corrupt(_))
        ));
        let mut e = elems();
        e[1].offset += 1;
        assert!(matches!(
            read_page_index(&tail_for(&e)),
            Err(Error::Corrupt(_))
        ));
        let mut e = elems();
        e[0].offset = 0;
        assert!(matches!(
            read_page_index(&tail_for(&e)),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn read_page_index_rejects_bytes_after_terminator() {
        // Claim one more byte of index than the entries use: that byte precedes the entries, so
        // parsing starts on 0xAA garbage and fails rather than panicking.
        let mut tail = tail_for(&elems());
        let at = tail.len() - 24;
        let len = u64::from_be_bytes(tail[at..at + 8].try_into().unwrap());
        tail[at..at + 8].copy_from_slice(&(len + 1).to_be_bytes());
        assert!(read_page_index(&tail).is_err());
    }

    #[test]
    fn read_page_index_never_panics_on_garbage() {
        let tail = tail_for(&elems());
        for i in 0..tail.len() {
            for bit in 0..8 {
                let mut t = tail.clone();
                t[i] ^= 1 << bit;
                let _ = read_page_index(&t);
            }
            let _ = read_page_index(&tail[i..]);
        }
        let mut huge = vec![0u8; 24];
        huge[..8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(read_page_index(&huge).is_err());
    }
}
