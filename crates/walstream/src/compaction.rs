//! Compaction levels: L0 per-sync files are merged into L1, L1 into L2, L2 into L3, on
//! clock-aligned intervals (Litestream's defaults: 30 s, 5 m, 1 h). Level 9 holds full snapshots,
//! taken from the database by [`crate::db::Db`].
//!
//! A compaction never deletes its inputs: it uploads one new file covering their TXID range, and
//! retention ([`crate::retention`]) deletes what is redundant afterwards. An interrupted
//! compaction leaves the inputs in place, so the replica still restores.
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ltx::{Compactor, Decoder, Header, TxId};

use crate::storage::LtxFileInfo;

/// Default compaction intervals for L1, L2, L3.
pub const DEFAULT_INTERVALS: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(300),
    Duration::from_secs(3600),
];

/// Errors of a compaction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompactionError {
    /// Local file I/O.
    #[error("compaction: {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An input failed to decode or the merge failed.
    #[error("compaction into L{level} of {min}-{max}: {source}")]
    Ltx {
        /// Destination level.
        level: u8,
        /// First TXID.
        min: TxId,
        /// Last TXID.
        max: TxId,
        /// The cause.
        source: ltx::Error,
    },
}

/// The files of `src` (level L-1) to merge into level L, given the files already in L: the
/// contiguous run that starts right after L's newest MaxTXID (or at the first source file when L
/// is empty). Files already covered by L are skipped; a gap ends the run.
pub fn plan_level(src: &[LtxFileInfo], dst: &[LtxFileInfo]) -> Vec<LtxFileInfo> {
    let covered = dst.iter().map(|f| f.max_txid).max();
    let mut out: Vec<LtxFileInfo> = Vec::new();
    for f in src {
        if covered.is_some_and(|c| f.min_txid <= c) {
            continue;
        }
        let expect = match (out.last(), covered) {
            (Some(prev), _) => Some(TxId(prev.max_txid.0 + 1)),
            (None, Some(c)) => Some(TxId(c.0 + 1)),
            (None, None) => None,
        };
        if expect.is_some_and(|e| f.min_txid != e) {
            break;
        }
        out.push(f.clone());
    }
    out
}

/// The next clock-aligned instant after `now` for `interval` (multiples of the interval since the
/// Unix epoch, as Litestream schedules its compactions).
pub fn next_aligned(now: SystemTime, interval: Duration) -> SystemTime {
    let iv = interval.as_millis().max(1);
    let ms = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let next = (ms / iv + 1) * iv;
    UNIX_EPOCH + Duration::from_millis(next as u64)
}

/// Merges local LTX files (contiguous, in TXID order) into `out`, the newest page winning. The
/// header is the merged one with Litestream's conventions for compacted files: WAL fields and
/// node ID zero, the newest input's timestamp. Streams: one page buffer per input.
pub fn merge_files(inputs: &[PathBuf], out: &Path, level: u8) -> Result<Header, CompactionError> {
    let mut readers = Vec::with_capacity(inputs.len());
    for p in inputs {
        let f = File::open(p).map_err(io_at(p))?;
        readers.push(BufReader::with_capacity(64 * 1024, f));
    }
    let f = File::create(out).map_err(io_at(out))?;
    let (header, w) = merge_into(readers, BufWriter::with_capacity(256 * 1024, f), out, level)?;
    let f = w.into_inner().map_err(|e| io_at(out)(e.into_error()))?;
    f.sync_all().map_err(io_at(out))?;
    Ok(header)
}

/// An input of [`merge_sealed`].
#[derive(Debug, Clone)]
pub enum SealedInput {
    /// A plain LTX file already on disk (a local L0 file beside the database).
    Plain(PathBuf),
    /// An LTX file kept age-encrypted on disk, opened with the merge's identities.
    Sealed(PathBuf),
}

/// [`merge_files`] for an encrypted replica: the inputs are plain local files or files encrypted
/// to one of `identities` (downloads, see `restore::download_sealed`), decrypted in memory only,
/// and `out` is written encrypted to the replica's recipients. No plaintext reaches the disk.
pub fn merge_sealed(
    inputs: &[SealedInput],
    identities: &[crate::age_keys::Identity],
    enc: &crate::storage::encrypted::Encryption,
    out: &Path,
    level: u8,
) -> Result<Header, CompactionError> {
    let mut readers: Vec<Box<dyn std::io::Read + Send>> = Vec::with_capacity(inputs.len());
    for input in inputs {
        match input {
            SealedInput::Plain(p) => {
                let f = File::open(p).map_err(io_at(p))?;
                readers.push(Box::new(BufReader::with_capacity(64 * 1024, f)));
            }
            SealedInput::Sealed(p) => {
                let f = File::open(p).map_err(io_at(p))?;
                let r =
                    crate::age_keys::decrypt(BufReader::with_capacity(64 * 1024, f), identities)
                        .map_err(|e| io_at(p)(std::io::Error::other(e)))?;
                readers.push(Box::new(r));
            }
        }
    }
    let f = File::create(out).map_err(io_at(out))?;
    let w = enc
        .seal(BufWriter::with_capacity(256 * 1024, f))
        .map_err(io_at(out))?;
    let (header, w) = merge_into(readers, w, out, level)?;
    let w = w.finish().map_err(io_at(out))?;
    let f = w.into_inner().map_err(|e| io_at(out)(e.into_error()))?;
    f.sync_all().map_err(io_at(out))?;
    Ok(header)
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CompactionError {
    let path = path.to_path_buf();
    move |source| CompactionError::Io { path, source }
}

/// The merge itself, from readers to a writer (flushed, not synced).
fn merge_into<R: std::io::Read, W: Write>(
    inputs: Vec<R>,
    out: W,
    out_path: &Path,
    level: u8,
) -> Result<(Header, W), CompactionError> {
    let mut decoders = Vec::with_capacity(inputs.len());
    let mut range = (TxId(0), TxId(0));
    for (i, r) in inputs.into_iter().enumerate() {
        let d = Decoder::new(r).map_err(|source| CompactionError::Ltx {
            level,
            min: TxId(0),
            max: TxId(0),
            source,
        })?;
        if i == 0 {
            range.0 = d.header().min_txid;
        }
        range.1 = d.header().max_txid;
        decoders.push(d);
    }
    let ltx_err = |source| CompactionError::Ltx {
        level,
        min: range.0,
        max: range.1,
        source,
    };
    let c = Compactor::new(decoders).map_err(ltx_err)?;
    let mut header = c.header().clone();
    header.wal_offset = 0;
    header.wal_size = 0;
    header.wal_salt1 = 0;
    header.wal_salt2 = 0;
    header.node_id = 0;
    let (mut w, _) = c.write_ltx(&header, out).map_err(ltx_err)?;
    w.flush().map_err(io_at(out_path))?;
    Ok((header, w))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn f(level: u8, min: u64, max: u64) -> LtxFileInfo {
        LtxFileInfo {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 1,
            created_at: UNIX_EPOCH,
        }
    }

    #[test]
    fn plan_level_takes_contiguous_run_after_destination() {
        let src = [f(0, 1, 1), f(0, 2, 2), f(0, 3, 3), f(0, 4, 4), f(0, 6, 6)];
        let got = plan_level(&src, &[f(1, 1, 2)]);
        assert_eq!(got, vec![f(0, 3, 3), f(0, 4, 4)]);
        let got = plan_level(&src, &[]);
        assert_eq!(got.len(), 4, "a gap ends the run");
        assert!(plan_level(&src, &[f(1, 1, 6)]).is_empty());
    }

    #[test]
    fn plan_level_does_not_skip_a_gap_after_destination() {
        let src = [f(0, 5, 5), f(0, 6, 6)];
        assert!(plan_level(&src, &[f(1, 1, 3)]).is_empty());
    }

    #[test]
    fn next_aligned_is_a_multiple_of_the_interval() {
        let t = UNIX_EPOCH + Duration::from_millis(95_000);
        assert_eq!(
            next_aligned(t, Duration::from_secs(30)),
            UNIX_EPOCH + Duration::from_secs(120)
        );
        let t = UNIX_EPOCH + Duration::from_secs(120);
        assert_eq!(
            next_aligned(t, Duration::from_secs(30)),
            UNIX_EPOCH + Duration::from_secs(150)
        );
    }

    #[test]
    fn merge_files_matches_litestream_compaction_of_fixture() {
        let case = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testdata/litestream-0.5.17/basic-4k/replica/ltx");
        let l0: Vec<PathBuf> = (3..=8)
            .map(|t| case.join("0").join(ltx::file_name(TxId(t), TxId(t))))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.ltx");
        let h = merge_files(&l0, &out, 1).unwrap();
        assert_eq!((h.min_txid, h.max_txid), (TxId(3), TxId(8)));
        let theirs = case.join("1").join(ltx::file_name(TxId(3), TxId(8)));
        let read = |p: &Path| {
            let mut d = Decoder::new(BufReader::new(File::open(p).unwrap())).unwrap();
            let h = d.header().clone();
            let mut pages = Vec::new();
            let mut buf = vec![0u8; h.page_size as usize];
            while let Some(pg) = d.next_page(&mut buf).unwrap() {
                pages.push((pg, buf.clone()));
            }
            d.finish().unwrap();
            (h, pages)
        };
        let (mine, my_pages) = read(&out);
        let (lit, lit_pages) = read(&theirs);
        assert_eq!(my_pages, lit_pages);
        assert_eq!(mine.commit, lit.commit);
        assert_eq!(
            (mine.wal_offset, mine.wal_size, mine.wal_salt1),
            (lit.wal_offset, lit.wal_size, lit.wal_salt1)
        );
        assert_eq!(mine.timestamp, lit.timestamp);
    }
}
