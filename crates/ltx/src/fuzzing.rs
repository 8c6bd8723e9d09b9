//! Entry points of the cargo-fuzz targets in `fuzz/` (`ltx_decode`, `ltx_compact`), public so
//! that the targets and the corpus replay test below call the very same code. Not API.
//!
//! Each function returns the decoder's error for bad input and panics only when an invariant
//! between two readers of the same bytes breaks (that is a bug the fuzzer should report).
use crate::checksum::CRC64_TABLE;
use crate::{
    page_index_tail_len, read_page_index, Compactor, Decoder, Encoder, Error, Header, Result,
    Trailer, DEFAULT_TAIL_SIZE, HEADER_SIZE, MAGIC, TRAILER_SIZE,
};

/// At most this many inputs are handed to the compactor.
const MAX_COMPACT_INPUTS: usize = 8;

/// Decodes `data` as one LTX file every way this crate can: header and trailer on their own,
/// the page index from the whole file and from a 32 KiB tail, and the full stream through
/// [`Decoder`]. A file the decoder accepts must have an index that [`read_page_index`] accepts
/// and that lists the same pages, and must survive a re-encode. Returns the number of pages.
pub fn decode(data: &[u8]) -> Result<u64> {
    let header = data.get(..HEADER_SIZE).map(Header::from_bytes);
    let trailer = data
        .len()
        .checked_sub(TRAILER_SIZE)
        .and_then(|at| <&[u8; TRAILER_SIZE]>::try_from(&data[at..]).ok())
        .map(Trailer::from_bytes);
    if let (Some(Ok(h)), Some(t)) = (&header, &trailer) {
        let _ = t.validate(h);
    }
    let _ = page_index_tail_len(data);
    let index = read_page_index(data);
    let tail = read_page_index(&data[data.len().saturating_sub(DEFAULT_TAIL_SIZE)..]);
    if let (Ok(a), Ok(b)) = (&index, &tail) {
        assert_eq!(
            a, b,
            "page index differs between the whole file and its tail"
        );
    }

    let pages = match decode_pages(data) {
        Ok(p) => p,
        Err(e) => {
            assert!(
                e.is_corrupt(),
                "in-memory decode failed with a non-data error: {e}"
            );
            return Err(e);
        }
    };
    let index = match index {
        Ok(i) => i,
        Err(e) => panic!("the decoder accepted a file whose page index reader says: {e}"),
    };
    let listed: Vec<u32> = index.iter().map(|e| e.pgno).collect();
    let read: Vec<u32> = pages.iter().map(|p| p.0).collect();
    assert_eq!(listed, read, "page index and decoded frames disagree");

    // Re-encode the pages under the same header: the result must decode to the same pages.
    let mut dec = Decoder::new(data)?;
    let header = dec.header().clone();
    let mut enc = Encoder::new(Vec::new(), &header)?;
    let mut buf = vec![0u8; header.page_size as usize];
    while let Some(pgno) = dec.next_page(&mut buf)? {
        enc.write_page(pgno, &buf)?;
    }
    let trailer = dec.finish()?;
    let (again, _) = match enc.finish(trailer.post_apply_checksum) {
        Ok(v) => v,
        Err(e) => panic!("a decoded file does not re-encode: {e}"),
    };
    match decode_pages(&again) {
        Ok(p) => assert_eq!(p, pages, "re-encoded file decodes to other pages"),
        Err(e) => panic!("a re-encoded file does not decode: {e}"),
    }
    Ok(pages.len() as u64)
}

/// (pgno, CRC-64 of the page) of every page, after a full [`Decoder::finish`].
fn decode_pages(data: &[u8]) -> Result<Vec<(u32, u64)>> {
    let mut dec = Decoder::new(data)?;
    let mut buf = vec![0u8; dec.header().page_size as usize];
    let mut out = Vec::new();
    while let Some(pgno) = dec.next_page(&mut buf)? {
        out.push((pgno, CRC64_TABLE.checksum(&buf)));
    }
    dec.finish()?;
    Ok(out)
}

/// Splits `data` into LTX files at each `LTX1` magic (at most 8), merges them with
/// [`Compactor::write_ltx`], and checks that a merge that succeeds decodes. Returns the number
/// of pages of the merged file.
pub fn compact(data: &[u8]) -> Result<u64> {
    let mut starts: Vec<usize> = data
        .windows(MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == MAGIC)
        .map(|(i, _)| i)
        .take(MAX_COMPACT_INPUTS)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
        starts.truncate(MAX_COMPACT_INPUTS);
    }
    let mut inputs = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(data.len());
        inputs.push(Decoder::new(&data[start..end])?);
    }
    let compactor = Compactor::new(inputs)?;
    let header = compactor.header().clone();
    let (out, _) = compactor.write_ltx(&header, Vec::new()).map_err(|e| {
        assert!(
            e.is_corrupt() || matches!(e, Error::Compaction(_)),
            "compaction failed with a non-data error: {e}"
        );
        e
    })?;
    match decode(&out) {
        Ok(n) => Ok(n),
        Err(e) => panic!("a compacted file does not decode: {e}"),
    }
}

/// Every file of the workspace's `fuzz/corpus/<target>` and `fuzz/regressions/<target>`, sorted:
/// what the replay tests of this crate and of walstream feed to the entry functions. Test
/// support; panics when the corpus is missing or nearly empty (fewer than 3 files), since a
/// replay over nothing would pass vacuously.
pub fn corpus_files(target: &str) -> Vec<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        files.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.sort();
    assert!(
        files.len() >= 3,
        "fuzz/corpus/{target} is missing or nearly empty ({} files)",
        files.len()
    );
    files
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Replays a corpus through `f`; returns (accepted, rejected).
    fn replay(target: &str, f: fn(&[u8]) -> Result<u64>) -> (usize, usize) {
        let (mut ok, mut bad) = (0, 0);
        for p in corpus_files(target) {
            let data = std::fs::read(&p).unwrap();
            match f(&data) {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(!e.to_string().is_empty(), "{}: empty error", p.display());
                    bad += 1;
                }
            }
        }
        (ok, bad)
    }

    #[test]
    fn fuzz_corpus_ltx_decode_replays_without_panic() {
        let (ok, _) = replay("ltx_decode", decode);
        // The seeds are real Litestream files: they must decode.
        assert!(ok >= 3, "only {ok} corpus files decoded");
    }

    #[test]
    fn fuzz_corpus_ltx_compact_replays_without_panic() {
        let (ok, _) = replay("ltx_compact", compact);
        assert!(ok >= 1, "no corpus input compacted");
    }
}
