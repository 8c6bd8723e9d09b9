//! Restores that must fail: a non-zero exit, one line `error: ...` naming the file, and nothing
//! at the output path (no `.tmp`, no download directory).
use std::path::{Path, PathBuf};

use super::util::*;

const SNAPSHOT: &str = "0000000000000001-0000000000000009.ltx";

/// An output directory and the output path inside it.
fn out_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    let out = dir.path().join("out.db");
    (dir, out)
}

/// Restores the latest state of `replica` into `out`, expects failure, returns the error line,
/// and checks the output directory is empty.
#[track_caller]
fn restore_fails(replica: &str, out: &Path, extra: &[&str]) -> String {
    let mut args = vec!["restore", "-o", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(replica);
    let line = walstream(&args).failure();
    let left = dir_entries(out.parent().unwrap());
    assert!(left.is_empty(), "left behind after {line:?}: {left:?}");
    line
}

/// A copy of basic-4k's replica reduced to its latest snapshot (so no other chain reaches TXID 9:
/// restore would step around a bad file onto one, see `restore_fallback`), changed by `f`.
fn damaged(f: impl FnOnce(&mut Vec<u8>)) -> (tempfile::TempDir, PathBuf) {
    let (dir, replica) = replica_copy("basic-4k");
    for level in ["0", "1", "2"] {
        std::fs::remove_dir_all(replica.join("ltx").join(level)).unwrap();
    }
    for e in std::fs::read_dir(replica.join("ltx/9")).unwrap().flatten() {
        if e.file_name() != SNAPSHOT {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    let path = replica.join("ltx/9").join(SNAPSHOT);
    let mut bytes = std::fs::read(&path).unwrap();
    f(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    (dir, replica)
}

#[test]
fn restore_bit_flip_in_page_data_fails_naming_file() {
    let (_d, replica) = damaged(|b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x10;
    });
    let (_o, out) = out_dir();
    let line = restore_fails(replica.to_str().unwrap(), &out, &[]);
    assert!(
        line.contains(SNAPSHOT) && line.contains("level 9"),
        "{line}"
    );
}

#[test]
fn restore_bit_flip_in_each_region_fails() {
    // Header (page size), first page frame, index, trailer's file checksum.
    let len = std::fs::metadata(fixture("basic-4k").join("replica/ltx/9").join(SNAPSHOT))
        .unwrap()
        .len() as usize;
    for offset in [9, 100, 110, len - 40, len - 20, len - 1] {
        let (_d, replica) = damaged(|b| b[offset] ^= 0x01);
        let (_o, out) = out_dir();
        let line = restore_fails(replica.to_str().unwrap(), &out, &[]);
        assert!(line.contains(SNAPSHOT), "offset {offset}: {line}");
    }
}

#[test]
fn restore_truncated_file_fails_naming_file() {
    for keep in [0.5, 0.99] {
        let (_d, replica) = damaged(|b| b.truncate((b.len() as f64 * keep) as usize));
        let (_o, out) = out_dir();
        let line = restore_fails(replica.to_str().unwrap(), &out, &[]);
        assert!(line.contains(SNAPSHOT), "{line}");
    }
}

#[test]
fn restore_not_ltx_file_fails_naming_file() {
    let (_d, replica) = damaged(|b| *b = b"SQLite format 3\0 but not really an LTX file".to_vec());
    let (_o, out) = out_dir();
    let line = restore_fails(replica.to_str().unwrap(), &out, &[]);
    assert!(line.contains(SNAPSHOT), "{line}");
}

#[test]
fn restore_damaged_l0_file_in_chain_fails_naming_it() {
    let (_d, replica) = replica_copy("basic-4k");
    let name = "0000000000000005-0000000000000005.ltx";
    let path = replica.join("ltx/0").join(name);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    let (_o, out) = out_dir();
    let line = restore_fails(
        replica.to_str().unwrap(),
        &out,
        &["-txid", "0000000000000005"],
    );
    assert!(line.contains(name) && line.contains("level 0"), "{line}");
}

#[test]
fn restore_missing_replica_dir_fails() {
    let dir = tempdir();
    let missing = dir.path().join("no-such-replica");
    let (_o, out) = out_dir();
    let url = format!("file://{}", missing.display());
    let line = restore_fails(&url, &out, &[]);
    assert!(line.contains("no-such-replica"), "{line}");
}

#[test]
fn restore_empty_replica_with_if_replica_exists_succeeds() {
    let dir = tempdir();
    std::fs::create_dir_all(dir.path().join("replica/ltx/0")).unwrap();
    let (o, out) = out_dir();
    walstream(&[
        "restore",
        "-if-replica-exists",
        "-o",
        out.to_str().unwrap(),
        dir.path().join("replica").to_str().unwrap(),
    ])
    .success();
    assert!(dir_entries(o.path()).is_empty());
}

#[test]
fn restore_nonexistent_path_fails_naming_it() {
    let (_o, out) = out_dir();
    let line = restore_fails("/nonexistent/walstream/db.sqlite", &out, &[]);
    assert!(line.contains("/nonexistent/walstream/db.sqlite"), "{line}");
}

#[test]
fn restore_plain_file_argument_fails_naming_it() {
    let dir = tempdir();
    let junk = dir.path().join("junk.txt");
    std::fs::write(&junk, "neither SQLite nor LTX").unwrap();
    let (_o, out) = out_dir();
    let line = restore_fails(junk.to_str().unwrap(), &out, &[]);
    assert!(line.contains("junk.txt"), "{line}");
}

#[test]
fn restore_txid_not_available_fails() {
    let (_o, out) = out_dir();
    let replica = fixture("basic-4k").join("replica");
    let line = restore_fails(
        replica.to_str().unwrap(),
        &out,
        &["-txid", "0000000000000010"],
    );
    assert!(
        line.contains("tx not available") && line.contains("0000000000000010"),
        "{line}"
    );
}

#[test]
fn restore_txid_between_compacted_boundaries_fails() {
    // Without L0, TXID 5 lies inside L1 3-8 and L2 1-8: not restorable.
    let (_d, replica) = replica_copy("basic-4k");
    std::fs::remove_dir_all(replica.join("ltx/0")).unwrap();
    let (_o, out) = out_dir();
    let line = restore_fails(
        replica.to_str().unwrap(),
        &out,
        &["-txid", "0000000000000005"],
    );
    assert!(line.contains("tx not available"), "{line}");
}

#[test]
fn restore_invalid_txid_and_timestamp_fail() {
    let replica = fixture("basic-4k").join("replica");
    let (_o, out) = out_dir();
    let line = restore_fails(replica.to_str().unwrap(), &out, &["-txid", "xyz"]);
    assert!(line.contains("xyz"), "{line}");
    let line = restore_fails(
        replica.to_str().unwrap(),
        &out,
        &["-timestamp", "yesterday"],
    );
    assert!(line.contains("yesterday"), "{line}");
    let line = restore_fails(
        replica.to_str().unwrap(),
        &out,
        &["-timestamp", "2020-01-01T00:00:00Z"],
    );
    assert!(line.contains("timestamp"), "{line}");
}

#[test]
fn restore_replica_without_output_fails() {
    let replica = fixture("basic-4k").join("replica");
    let line = walstream(&["restore", replica.to_str().unwrap()]).failure();
    assert!(line.contains("-o"), "{line}");
}

#[test]
fn restore_existing_output_without_force_is_refused() {
    let replica = fixture("basic-4k").join("replica");
    let (o, out) = out_dir();
    std::fs::write(&out, b"precious").unwrap();
    let line = walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ])
    .failure();
    assert!(line.contains("-force") && line.contains("out.db"), "{line}");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    assert_eq!(dir_entries(o.path()), ["out.db"]);

    // -if-db-not-exists: nothing to do, success, untouched.
    walstream(&[
        "restore",
        "-if-db-not-exists",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ])
    .success();
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");

    // -force replaces it and removes stale -wal/-shm.
    std::fs::write(o.path().join("out.db-wal"), b"stale wal").unwrap();
    std::fs::write(o.path().join("out.db-shm"), b"stale shm").unwrap();
    walstream(&[
        "restore",
        "-force",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ])
    .success();
    assert_eq!(
        sha256_file(&out),
        manifest("basic-4k")["latest"]["sha256"].as_str().unwrap()
    );
    assert_eq!(dir_entries(o.path()), ["out.db"]);
}

#[test]
fn restore_stale_wal_next_to_output_is_refused() {
    let replica = fixture("basic-4k").join("replica");
    let (o, out) = out_dir();
    std::fs::write(o.path().join("out.db-wal"), b"stale wal").unwrap();
    let line = walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ])
    .failure();
    assert!(line.contains("out.db-wal"), "{line}");
    assert_eq!(dir_entries(o.path()), ["out.db-wal"]);
}

#[test]
fn restore_empty_existing_output_is_replaced() {
    let replica = fixture("basic-4k").join("replica");
    let (o, out) = out_dir();
    std::fs::write(&out, b"").unwrap();
    walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ])
    .success();
    assert_eq!(
        sha256_file(&out),
        manifest("basic-4k")["latest"]["sha256"].as_str().unwrap()
    );
    assert_eq!(dir_entries(o.path()), ["out.db"]);
}

#[test]
fn restore_dry_run_writes_nothing() {
    let replica = fixture("basic-4k").join("replica");
    let (o, out) = out_dir();
    let run = walstream(&[
        "restore",
        "-dry-run",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ]);
    run.success();
    assert!(
        run.stdout.contains("Restore plan:") && run.stdout.contains(SNAPSHOT),
        "{}",
        run.stdout
    );
    assert!(dir_entries(o.path()).is_empty());
}
