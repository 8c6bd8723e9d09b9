//! Entry points of the cargo-fuzz targets `wal_reader` and `config` in `fuzz/` (feature
//! `testing`), public so that the targets and the corpus replay tests call the very same code.
//!
//! Each function returns the library's error for bad input and panics only when an invariant
//! breaks (two ways of reading the same bytes disagree): that is what the fuzzer reports.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::{env, Config, ConfigError};
use crate::sqlite::wal_reader::{
    self, wal_checksum, WalError, WalHeader, WalScan, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};

/// Transactions resumed one at a time, at most (each resumed scan reads up to a 256 KiB chunk);
/// longer WALs are not compared.
const MAX_RESUMES: usize = 64;

/// Scans `data` as a WAL file, then the same bytes with the header checksum, every frame's salts
/// and the checksum chain repaired (so that the fuzzer reaches the commit logic, which random
/// bytes never pass the checksums to). Checks:
/// - the scan's end, pages and commit are consistent with each other and the file;
/// - resuming one transaction at a time (seeded, or reading the seed back from the file) ends
///   where one scan ends, with the same pages;
/// - every page found can be read back with its salts checked;
/// - for the repaired bytes, the scan equals a plain model of SQLite's recovery rules.
///
/// Returns the number of committed pages of the repaired WAL.
pub fn wal(data: &[u8]) -> Result<usize, WalError> {
    let _ = check_wal(data);
    let repaired = repair_wal(data);
    let Some(scan) = check_wal(&repaired)? else {
        return Ok(0);
    };
    let (pages, end, commit, commits) = model_wal(&repaired, &scan.header);
    assert_eq!(scan.end, end, "scan end differs from the model");
    assert_eq!(scan.commit, commit, "scan commit differs from the model");
    assert_eq!(
        scan.commits, commits,
        "scan commit count differs from the model"
    );
    assert_eq!(scan.pages, pages, "scan pages differ from the model");
    Ok(scan.pages.len())
}

/// The fuzz input as a file (unlinked, in the temp directory).
fn wal_file(data: &[u8], path: &Path) -> Result<File, WalError> {
    let io = |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = tempfile::tempfile().map_err(io)?;
    f.write_all(data).map_err(io)?;
    Ok(f)
}

/// `read_header` and `scan` over `data`, with the consistency checks of [`wal`].
fn check_wal(data: &[u8]) -> Result<Option<WalScan>, WalError> {
    let path = PathBuf::from("fuzz.db-wal");
    let file = wal_file(data, &path)?;
    let Some(header) = wal_reader::read_header(&file, &path)? else {
        assert!(
            data.len() < WAL_HEADER_SIZE as usize,
            "no header in a long file"
        );
        return Ok(None);
    };
    let fs = header.frame_size();
    let full = wal_reader::scan(&file, &path, &header, WAL_HEADER_SIZE, None, None)?;
    assert!(full.end >= WAL_HEADER_SIZE && full.end <= data.len() as u64);
    assert_eq!(
        (full.end - WAL_HEADER_SIZE) % fs,
        0,
        "end is not a frame boundary"
    );
    assert_eq!(full.commits == 0, full.end == WAL_HEADER_SIZE);
    for (&pgno, &off) in &full.pages {
        assert!(pgno != 0 && pgno <= full.commit, "page {pgno} above commit");
        assert!(
            off >= WAL_HEADER_SIZE && off + fs <= full.end,
            "page {pgno} past end"
        );
        assert_eq!(
            (off - WAL_HEADER_SIZE) % fs,
            0,
            "page {pgno} not at a frame"
        );
    }

    // Resume one transaction at a time; the seed alternates between given and read back.
    let mut merged: BTreeMap<u32, u64> = BTreeMap::new();
    let mut at = WAL_HEADER_SIZE;
    let mut seed = None;
    for i in 0..MAX_RESUMES {
        let part = match wal_reader::scan(&file, &path, &header, at, seed, Some(1)) {
            Ok(p) => p,
            Err(e) => panic!("resuming at {at} of a scanned WAL failed: {e}"),
        };
        if part.end == at {
            assert_eq!(at, full.end, "resumed scans end elsewhere");
            assert_eq!(merged, full.pages, "resumed scans find other pages");
            break;
        }
        assert_eq!(part.commits, 1, "one transaction per resumed scan");
        merged.extend(part.pages.iter().map(|(&p, &o)| (p, o)));
        if let Some(above) = part.commit.checked_add(1) {
            let _ = merged.split_off(&above);
        }
        at = part.end;
        seed = (i % 2 == 0).then_some(part.checksum);
    }

    let mut buf = vec![0u8; header.page_size as usize];
    for (&pgno, &off) in &full.pages {
        if let Err(e) = wal_reader::read_frame_page_checked(&file, &path, &header, off, &mut buf) {
            panic!("page {pgno} at {off} found by the scan cannot be read: {e}");
        }
    }
    // A start off the frame grid is refused, not misread.
    match wal_reader::scan(&file, &path, &header, full.end + 1, None, None) {
        Err(e) if e.is_position_lost() => {}
        other => panic!("misaligned start gave {other:?}"),
    }
    Ok(Some(full))
}

/// `data` with a valid header checksum and every whole frame carrying the header's salts and the
/// right cumulative checksum. Unchanged if the header's magic or page size is invalid.
fn repair_wal(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let Some(h) = out.get_mut(..WAL_HEADER_SIZE as usize) else {
        return out;
    };
    let big_endian = h[3] & 1 == 1;
    let (s0, s1) = wal_checksum(big_endian, (0, 0), &h[..24]);
    h[24..28].copy_from_slice(&s0.to_be_bytes());
    h[28..32].copy_from_slice(&s1.to_be_bytes());
    let Ok(header) = <&[u8; WAL_HEADER_SIZE as usize]>::try_from(&*h)
        .map_err(|e| e.to_string())
        .and_then(WalHeader::parse)
    else {
        return out;
    };
    let fs = header.frame_size() as usize;
    let mut sum = header.checksum;
    for frame in out[WAL_HEADER_SIZE as usize..].chunks_exact_mut(fs) {
        frame[8..12].copy_from_slice(&header.salt1.to_be_bytes());
        frame[12..16].copy_from_slice(&header.salt2.to_be_bytes());
        sum = wal_checksum(big_endian, sum, &frame[..8]);
        sum = wal_checksum(big_endian, sum, &frame[WAL_FRAME_HEADER_SIZE as usize..]);
        frame[16..20].copy_from_slice(&sum.0.to_be_bytes());
        frame[20..24].copy_from_slice(&sum.1.to_be_bytes());
    }
    out
}

/// SQLite's recovery rules over a WAL whose checksums are all valid: frames up to the first
/// zero pgno or partial frame; a commit frame ends a transaction; the newest version of a page
/// wins; pages above the commit size are dropped. Returns (pages, end, commit, commits).
fn model_wal(data: &[u8], header: &WalHeader) -> (BTreeMap<u32, u64>, u64, u32, usize) {
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let fs = header.frame_size() as usize;
    let (mut pages, mut pending) = (BTreeMap::new(), Vec::new());
    let (mut end, mut commit, mut commits) = (WAL_HEADER_SIZE, 0, 0);
    for (i, frame) in data[WAL_HEADER_SIZE as usize..]
        .chunks_exact(fs)
        .enumerate()
    {
        let off = WAL_HEADER_SIZE + (i * fs) as u64;
        let pgno = be(&frame[0..4]);
        if pgno == 0 {
            break;
        }
        pending.push((pgno, off));
        let c = be(&frame[4..8]);
        if c != 0 {
            for (p, o) in pending.drain(..) {
                if p <= c {
                    pages.insert(p, o);
                }
            }
            pages.retain(|&p, _| p <= c);
            end = off + fs as u64;
            commit = c;
            commits += 1;
        }
    }
    (pages, end, commit, commits)
}

/// What `$NAME` expands to in [`config`]: a few values that are YAML in their own right.
fn fuzz_env(name: &str) -> Option<String> {
    let v = match name {
        "A" => "a",
        "BUCKET" => "my-bucket",
        "NESTED" => "${A}",
        "LIST" => "\n  - path: /tmp/x.db\n    replica: {url: s3://b/p}\n",
        "BROKEN" => "key: [unclosed",
        "QUOTE" => "\"",
        "EMPTY" => "",
        _ => return None,
    };
    Some(v.to_string())
}

/// Expands `$VAR`s (from a fixed set, see `fuzz_env`) in `data` (lossy UTF-8), parses and
/// validates it as a config, then calls every accessor that touches no file system: per
/// database its path, options and replica; `find_db` for its own path, or for names under its
/// directory. Returns the number of databases.
pub fn config(data: &[u8]) -> Result<usize, ConfigError> {
    let text = String::from_utf8_lossy(data);
    let text = env::expand_with(&text, fuzz_env);
    let file = Path::new("fuzz.yml");
    let loaded = Config::parse(&text, file)?;
    for w in &loaded.warnings {
        assert!(!w.to_string().is_empty());
    }
    let c = &loaded.config;
    let _ = (c.history(), c.log_level());
    for db in &c.dbs {
        let _ = (db.display_path(), db.db_options());
        if let Some(r) = db.the_replica() {
            let _ = (
                r.replica_type(),
                r.sync_interval_or_default(),
                r.part_size_bytes(),
            );
        }
        if db.path.is_some() {
            if let Ok(p) = db.db_path() {
                if let Ok(None) = c.find_db(&p) {
                    panic!("find_db does not find database {}", p.display());
                }
            }
        } else if let Some(dir) = &db.dir {
            for name in [
                "a.db",
                "sub/tenant-1.sqlite",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.db",
            ] {
                let _ = c.find_db(&Path::new(dir).join(name));
            }
        }
    }
    // Directory entries would walk the disk; path entries resolve without touching it.
    if c.dbs.iter().all(|d| d.path.is_some()) {
        let _ = c.databases();
    }
    Ok(c.dbs.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Replays a corpus through `f`; returns (accepted, rejected). Errors must say something.
    fn replay<E: std::fmt::Display>(
        target: &str,
        f: fn(&[u8]) -> Result<usize, E>,
    ) -> (usize, usize) {
        let (mut ok, mut bad) = (0, 0);
        for p in ltx::fuzzing::corpus_files(target) {
            match f(&std::fs::read(&p).unwrap()) {
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
    fn fuzz_corpus_wal_reader_replays_without_panic() {
        let (ok, _) = replay("wal_reader", wal);
        assert!(ok >= 2, "only {ok} WAL corpus files scanned");
    }

    #[test]
    fn fuzz_corpus_config_replays_without_panic() {
        let (ok, _) = replay("config", config);
        assert!(ok >= 3, "only {ok} config corpus files parsed");
    }
}
