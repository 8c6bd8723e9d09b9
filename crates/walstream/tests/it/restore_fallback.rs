//! A bad file in the chain (corrupt, or listed but gone): restore takes another valid chain that
//! ends at the same TXID when one exists, else fails naming the file and writes nothing.
use std::path::Path;

use super::util::*;

/// Flips one byte in the middle of a replica file: its CRC-64 file checksum no longer matches.
fn corrupt(replica: &Path, level: u8, min: u64, max: u64) {
    let p = replica
        .join("ltx")
        .join(level.to_string())
        .join(format!("{min:016x}-{max:016x}.ltx"));
    let mut b = std::fs::read(&p).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x5a;
    std::fs::write(&p, b).unwrap();
}

fn golden(case: &str, txid: u64) -> String {
    manifest(case)["txids"][format!("{txid:016x}")]["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

/// basic-4k at TXID 8: the plan is the L9 1-8 snapshot; with it corrupt, L2 1-8; with that
/// corrupt too, L9 1-1 + L1 2-2 + L1 3-8; with L1 3-8 corrupt as well, the L0 files. Every step
/// restores the golden bytes and says which file it stepped around.
#[test]
fn restore_fallback_steps_around_corrupt_files_to_the_golden_bytes() {
    let (dir, replica) = replica_copy("basic-4k");
    let out = dir.path().join("out.db");
    for (level, min, max) in [(9, 1, 8), (2, 1, 8), (1, 3, 8)] {
        corrupt(&replica, level, min, max);
        let _ = std::fs::remove_file(&out);
        let run = walstream(&[
            "restore",
            "-txid",
            "0000000000000008",
            "-o",
            out.to_str().unwrap(),
            replica.to_str().unwrap(),
        ]);
        run.success();
        assert_eq!(
            sha256_file(&out),
            golden("basic-4k", 8),
            "after L{level} {min}-{max}"
        );
        assert!(
            run.stderr.contains("restoring through another chain")
                && run.stderr.contains(&format!("{min:016x}-{max:016x}")),
            "{}",
            run.stderr
        );
    }
    assert_eq!(dir_entries(dir.path()), vec!["out.db", "replica"]);
}

/// A corrupt file no other chain covers: a one-line error naming it, nothing at the output path.
#[test]
fn restore_fallback_without_alternative_fails_naming_the_file() {
    let (dir, replica) = replica_copy("basic-4k");
    corrupt(&replica, 0, 4, 4);
    let out = dir.path().join("out.db");
    let line = walstream(&[
        "restore",
        "-txid",
        "0000000000000005",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ])
    .failure();
    assert!(
        line.contains("level 0 file 0000000000000004-0000000000000004.ltx"),
        "{line}"
    );
    assert_eq!(dir_entries(dir.path()), vec!["replica"]);
}

/// A file missing from the middle of a chain: the planner goes around it when another level
/// covers it (L1 3-8 instead of L0 3..8) and restores the golden bytes; without cover, the
/// target is refused with the range the replica does hold.
#[test]
fn restore_fallback_missing_file_in_the_middle_of_a_chain() {
    let (dir, replica) = replica_copy("basic-4k");
    for f in [(9, 1, 8), (2, 1, 8), (0, 5, 5)] {
        std::fs::remove_file(replica.join(format!("ltx/{}/{:016x}-{:016x}.ltx", f.0, f.1, f.2)))
            .unwrap();
    }
    let out = dir.path().join("out.db");
    let o = out.to_str().unwrap();
    walstream(&[
        "restore",
        "-txid",
        "0000000000000008",
        "-o",
        o,
        replica.to_str().unwrap(),
    ])
    .success();
    assert_eq!(sha256_file(&out), golden("basic-4k", 8));
    std::fs::remove_file(&out).unwrap();
    let line = walstream(&[
        "restore",
        "-txid",
        "0000000000000006",
        "-o",
        o,
        replica.to_str().unwrap(),
    ])
    .failure();
    assert!(line.contains("tx not available"), "{line}");
    assert!(!out.exists());
}

/// The progress bar: drawn on a terminal (a pseudo-terminal from util-linux `script`), never when
/// stderr is a pipe.
#[test]
fn restore_progress_bar_only_on_a_terminal() {
    let (dir, replica) = replica_copy("basic-4k");
    let out = dir.path().join("piped.db");
    let run = walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        replica.to_str().unwrap(),
    ]);
    run.success();
    assert_eq!(run.stderr, "", "a pipe gets no progress output");
    let tty_out = dir.path().join("tty.db");
    let cmd = format!(
        "{} restore -o {} {}",
        bin().display(),
        tty_out.display(),
        replica.display()
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("restoring"),
        "no progress bar on a terminal: {shown:?}"
    );
    assert_eq!(sha256_file(&tty_out), sha256_file(&out));
}
