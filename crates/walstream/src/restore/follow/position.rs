//! The follower's recorded position, in two files next to the copy:
//!
//! - `<out>-txid`: the TXID the copy is at, 16 hex digits and a newline, exactly as Litestream
//!   0.5.17 writes it, so either tool can resume the other's follower;
//! - `<out>-walstream-follow`: JSON with what walstream needs to trust a resume: the TXID again,
//!   page size, database size, the change counter it last wrote into the copy's header, the
//!   replica, and the timestamp of the replica file that ends at this TXID.
//!
//! Both are written temp file, fsync, rename, fsync directory; the JSON first. A JSON whose TXID
//! differs from `<out>-txid` (a crash between the two renames, or a Litestream follower ran
//! since) is ignored, and the resume is checked against the replica alone.
use std::io::Write;
use std::path::{Path, PathBuf};

use ltx::TxId;

/// What `<out>-walstream-follow` holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    /// The TXID the copy is at (16 hex digits).
    pub txid: String,
    /// Page size of the copy.
    pub page_size: u32,
    /// Size of the copy in pages.
    pub commit: u32,
    /// The file change counter (header offset 24) written with this TXID.
    pub change_counter: u32,
    /// The replica, as [`crate::storage::ReplicaStore::describe`] names it.
    pub replica: String,
    /// Creation time (ms since the Unix epoch) of the replica file at levels 0..8 that ends at
    /// this TXID, when one was seen: a replica replaced by another database's has different
    /// times at the same TXIDs.
    pub timestamp_ms: Option<u64>,
}

impl Recorded {
    /// The TXID, parsed.
    pub fn txid(&self) -> Option<TxId> {
        self.txid.parse().ok()
    }
}

/// What was found on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// From `<out>-txid`.
    pub txid: TxId,
    /// From `<out>-walstream-follow`, when present and at the same TXID.
    pub recorded: Option<Recorded>,
}

/// `<out>-txid` (Litestream's name).
pub fn txid_path(output: &Path) -> PathBuf {
    with_suffix(output, "-txid")
}

/// `<out>-walstream-follow`.
pub fn state_path(output: &Path) -> PathBuf {
    with_suffix(output, "-walstream-follow")
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Parses `<out>-txid`: hex TXID, surrounding white space ignored (as Litestream reads it).
pub fn parse_txid_file(text: &str) -> Option<TxId> {
    let t = text.trim();
    if t.is_empty() || t.len() > 16 {
        return None;
    }
    t.parse().ok()
}

/// Reads the position files. `Ok(None)` when `<out>-txid` does not exist.
pub fn read(output: &Path) -> std::io::Result<Option<Position>> {
    let path = txid_path(output);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(txid) = parse_txid_file(&text) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: not a hex TXID: {:?}", path.display(), text.trim()),
        ));
    };
    let recorded = match std::fs::read(state_path(output)) {
        Ok(bytes) => serde_json::from_slice::<Recorded>(&bytes)
            .ok()
            .filter(|r| r.txid() == Some(txid)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(Some(Position { txid, recorded }))
}

/// Writes both files (JSON first, then `<out>-txid`).
pub fn write(output: &Path, recorded: &Recorded) -> std::io::Result<()> {
    let json = serde_json::to_vec(recorded).map_err(std::io::Error::other)?;
    write_atomic(&state_path(output), &json)?;
    write_atomic(
        &txid_path(output),
        format!("{}\n", recorded.txid).as_bytes(),
    )?;
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&dir)?.sync_all()
}

/// Removes both files (a missing one is fine).
pub fn remove(output: &Path) -> std::io::Result<()> {
    for p in [txid_path(output), state_path(output)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(txid: u64) -> Recorded {
        Recorded {
            txid: TxId(txid).to_string(),
            page_size: 4096,
            commit: 3,
            change_counter: 7,
            replica: "file:///r".into(),
            timestamp_ms: Some(1234),
        }
    }

    #[test]
    fn parse_txid_file_accepts_litestream_format() {
        assert_eq!(parse_txid_file("00000000000000a5\n"), Some(TxId(0xa5)));
        assert_eq!(parse_txid_file("  a5 "), Some(TxId(0xa5)));
        assert_eq!(parse_txid_file(""), None);
        assert_eq!(parse_txid_file("xyz"), None);
        assert_eq!(parse_txid_file("00000000000000000001"), None);
    }

    #[test]
    fn position_round_trips_and_txid_file_is_litestreams() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy.db");
        assert_eq!(read(&out).unwrap(), None);
        write(&out, &rec(0x2a)).unwrap();
        assert_eq!(
            std::fs::read_to_string(txid_path(&out)).unwrap(),
            "000000000000002a\n"
        );
        let pos = read(&out).unwrap().unwrap();
        assert_eq!(pos.txid, TxId(0x2a));
        assert_eq!(pos.recorded, Some(rec(0x2a)));
        remove(&out).unwrap();
        assert_eq!(read(&out).unwrap(), None);
    }

    #[test]
    fn position_state_at_other_txid_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy.db");
        write(&out, &rec(5)).unwrap();
        // A Litestream follower (or a crash between the renames) moved -txid on alone.
        std::fs::write(txid_path(&out), "0000000000000009\n").unwrap();
        let pos = read(&out).unwrap().unwrap();
        assert_eq!(pos.txid, TxId(9));
        assert_eq!(pos.recorded, None);
    }

    #[test]
    fn position_garbage_txid_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("copy.db");
        std::fs::write(txid_path(&out), "nope").unwrap();
        let err = read(&out).unwrap_err();
        assert!(err.to_string().contains("-txid"), "{err}");
    }
}
