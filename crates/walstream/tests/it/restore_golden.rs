//! Golden restores: walstream restoring replicas that Litestream 0.5.17 wrote must give, byte for
//! byte, what `litestream restore` gave (the manifests' sha256).
use std::path::Path;

use super::util::*;

/// Restores `replica` at `txid` (None: latest) into `dir/<name>` with the given `-txid` spelling.
fn restore(
    replica: &Path,
    dir: &Path,
    name: &str,
    txid: Option<(&str, &str)>,
) -> (Run, std::path::PathBuf) {
    let out = dir.join(name);
    let out_s = out.to_str().unwrap().to_string();
    let replica_s = replica.to_str().unwrap().to_string();
    let mut args: Vec<String> = vec!["restore".into(), "-o".into(), out_s];
    if let Some((flag, value)) = txid {
        if flag.ends_with('=') {
            args.push(format!("{flag}{value}"));
        } else {
            args.push(flag.into());
            args.push(value.into());
        }
    }
    args.push(replica_s);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (walstream(&args), out)
}

/// Checks every TXID of the manifest, the latest state, and the latest state without `ltx/0`.
fn golden(case: &str) {
    let m = manifest(case);
    let page_size = m["page_size"].as_u64().unwrap() as u32;
    let replica = fixture(case).join("replica");
    let dir = tempdir();
    let spellings = ["-txid", "--txid", "-txid=", "--txid="];
    let txids = m["txids"].as_object().unwrap();
    assert!(!txids.is_empty(), "{case}: manifest lists no txids");
    for (i, (txid, want)) in txids.iter().enumerate() {
        let flag = spellings[i % spellings.len()];
        let (run, out) = restore(
            &replica,
            dir.path(),
            &format!("{txid}.db"),
            Some((flag, txid)),
        );
        if let Some(err) = want.get("error") {
            let line = run.failure();
            assert!(
                !out.exists(),
                "{case} {txid}: output left behind after error"
            );
            eprintln!("{case} {txid}: Litestream said {err}, walstream said {line}");
            continue;
        }
        run.success();
        assert_eq!(
            sha256_file(&out),
            want["sha256"].as_str().unwrap(),
            "{case}: restore {flag} {txid} differs from Litestream's"
        );
        assert_eq!(
            std::fs::metadata(&out).unwrap().len(),
            want["size"].as_u64().unwrap(),
            "{case} {txid}"
        );
        assert_eq!(
            db_checksum(&out, page_size),
            want["db_checksum"].as_str().unwrap(),
            "{case} {txid}"
        );
        assert_eq!(
            logical_digest(&out),
            want["logical_sha256"].as_str().unwrap(),
            "{case} {txid}"
        );
    }

    let latest = m["latest"]["sha256"].as_str().unwrap();
    let (run, out) = restore(&replica, dir.path(), "latest.db", None);
    run.success();
    assert_eq!(sha256_file(&out), latest, "{case}: latest");
    assert_eq!(integrity(&out), "ok", "{case}: latest");

    // Litestream deletes L0 files once compacted: the higher levels alone must suffice.
    let (copy_dir, copy) = replica_copy(case);
    std::fs::remove_dir_all(copy.join("ltx/0")).unwrap();
    let (run, out) = restore(&copy, copy_dir.path(), "no-l0.db", None);
    run.success();
    assert_eq!(sha256_file(&out), latest, "{case}: latest without ltx/0");

    // Nothing but the outputs is left in the output directory.
    for entry in dir_entries(dir.path()) {
        assert!(entry.ends_with(".db"), "{case}: left behind {entry}");
    }
}

#[test]
fn golden_app_truncate_checkpoint() {
    golden("app-truncate-checkpoint");
}

#[test]
fn golden_basic_4k() {
    golden("basic-4k");
}

#[test]
fn golden_large_pages_64k() {
    golden("large-pages-64k");
}

#[test]
fn golden_shrink_vacuum() {
    golden("shrink-vacuum");
}

#[test]
fn golden_small_pages_512() {
    golden("small-pages-512");
}

/// Every fixture case has a golden test above.
#[test]
fn golden_every_fixture_case_is_tested() {
    let tested = [
        "app-truncate-checkpoint",
        "basic-4k",
        "large-pages-64k",
        "shrink-vacuum",
        "small-pages-512",
    ];
    assert_eq!(
        fixture_cases(),
        tested,
        "add a golden_* test for the new fixture case"
    );
}

#[test]
fn golden_restore_from_file_url_and_json_summary() {
    let m = manifest("basic-4k");
    let dir = tempdir();
    let out = dir.path().join("x.db");
    let url = file_url(&fixture("basic-4k").join("replica"));
    let run = walstream(&[
        "restore",
        "-json",
        "-integrity-check",
        "full",
        "-o",
        out.to_str().unwrap(),
        &url,
    ]);
    run.success();
    assert_eq!(sha256_file(&out), m["latest"]["sha256"].as_str().unwrap());
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["db_path"], out.to_str().unwrap());
    assert_eq!(v["replica"], "file");
    assert_eq!(v["txid"], "0000000000000009");
    assert_eq!(v["integrity_check"], "full");
    assert!(v["duration_ms"].is_u64());
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5);
}

#[test]
fn golden_flags_after_path_are_accepted() {
    let m = manifest("basic-4k");
    let dir = tempdir();
    let out = dir.path().join("x.db");
    let replica = fixture("basic-4k").join("replica");
    walstream(&[
        "restore",
        replica.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-txid",
        "0000000000000003",
    ])
    .success();
    assert_eq!(
        sha256_file(&out),
        m["txids"]["0000000000000003"]["sha256"].as_str().unwrap()
    );
}

#[test]
fn golden_restore_creates_missing_parent_directories() {
    let dir = tempdir();
    let out = dir.path().join("a/b/x.db");
    let replica = fixture("basic-4k").join("replica");
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
}
