//! The command line itself: version, ltx listing, usage errors.
use super::util::*;

#[test]
fn cli_version_prints_bare_version() {
    let run = walstream(&["version"]);
    run.success();
    assert_eq!(run.stdout, format!("{}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn cli_ltx_lists_level_zero_by_default() {
    let replica = fixture("basic-4k").join("replica");
    let run = walstream(&["ltx", replica.to_str().unwrap()]);
    run.success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["level", "min_txid", "max_txid", "size", "created"]
    );
    assert_eq!(lines.len(), 1 + 9, "{}", run.stdout);
    assert!(
        lines[1].starts_with("0      0000000000000001  0000000000000001  575 "),
        "{}",
        lines[1]
    );
}

#[test]
fn cli_ltx_level_all_json_lists_every_file() {
    let m = manifest("basic-4k");
    let total: usize = m["files"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().unwrap().len())
        .sum();
    let replica = fixture("basic-4k").join("replica");
    for flags in [["-level", "all", "-json"], ["--level", "all", "--json"]] {
        let mut args = vec!["ltx"];
        args.extend(flags);
        args.push(replica.to_str().unwrap());
        let run = walstream(&args);
        run.success();
        let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let files = v.as_array().unwrap();
        assert_eq!(files.len(), total);
        for f in files {
            let name = format!(
                "{}-{}.ltx",
                f["min_txid"].as_str().unwrap(),
                f["max_txid"].as_str().unwrap()
            );
            let level = f["level"].as_u64().unwrap().to_string();
            let listed = m["files"][&level].as_array().unwrap();
            assert!(
                listed
                    .iter()
                    .any(|n| n == &serde_json::Value::from(name.clone())),
                "{level}/{name}"
            );
        }
    }
}

#[test]
fn cli_ltx_invalid_level_fails() {
    let replica = fixture("basic-4k").join("replica");
    let line = walstream(&["ltx", "-level", "10", replica.to_str().unwrap()]).failure();
    assert!(line.contains("-level"), "{line}");
}

#[test]
fn cli_ltx_database_path_without_config_fails_clearly() {
    let line = walstream(&["ltx", "/nonexistent/app.db"]).failure();
    assert!(
        line.contains("/nonexistent/app.db") && line.contains("config"),
        "{line}"
    );
}

#[test]
fn cli_unknown_command_fails() {
    let run = walstream(&["frobnicate"]);
    assert_ne!(run.code, Some(0));
}

/// `ltx -config FILE DB_PATH` finds the database's replica through the config, as Litestream
/// does: every level of basic-4k, as JSON.
#[test]
fn cli_ltx_database_path_through_config_lists_its_replica() {
    let (dir, replica) = replica_copy("basic-4k");
    let db = dir.path().join("app.db");
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let run = walstream(&[
        "ltx",
        "-config",
        cfg.to_str().unwrap(),
        "-level",
        "all",
        "-json",
        db.to_str().unwrap(),
    ]);
    run.success();
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    // 9 L0, 4 L1, 2 L2, 3 L9 files.
    assert_eq!(rows.len(), 18, "{}", run.stdout);
    assert!(rows
        .iter()
        .any(|r| r["level"] == 9 && r["max_txid"] == "0000000000000009"));
}
