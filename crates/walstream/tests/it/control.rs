//! Issue 11, control: the control socket (Litestream 0.5.17's API, with both CLIs against both
//! daemons), `sync -wait` as a durability wait (checked by restoring and listing the store right
//! after it returns), `register`/`unregister`/`start`/`stop` without a restart, `status`,
//! `reset`, and `dir:` entries with `watch: true`.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::harness::Replicator;
use super::util::{self, ltx_files};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn create_db(db: &Path) {
    let c = Connection::open(db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
}

/// One transaction of `n` rows.
fn write(db: &Path, tag: &str, n: u32) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("{tag}-{i}-{}", "x".repeat(200))],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn count(db: &Path) -> i64 {
    let c = Connection::open(db).unwrap();
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

/// Restores `replica` (a URL) into a fresh file and returns its logical digest.
fn restored_digest(replica: &str, dir: &Path, env: &[(String, String)]) -> String {
    let out = dir.join(format!(
        "restored-{}.db",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let r = run_env(&util::bin(), &["restore", "-o", s(&out), replica], env);
    r.success();
    util::logical_digest(&out)
}

fn run_env(program: &Path, args: &[&str], env: &[(String, String)]) -> util::Run {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    util::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("{} {}", program.display(), args.join(" ")),
    }
}

fn json(r: &util::Run) -> serde_json::Value {
    r.success();
    serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {}", r.cmdline, r.stdout))
}

fn max_txid(replica: &Path) -> u64 {
    (0..=9u8)
        .flat_map(|l| ltx_files(replica, l))
        .map(|(_, max)| max)
        .max()
        .unwrap_or(0)
}

fn config(dir: &Path, socket: &Path, dbs: &str) -> PathBuf {
    let cfg = dir.join("walstream.yml");
    std::fs::write(
        &cfg,
        format!(
            "socket:\n  enabled: true\n  path: {}\n  permissions: 0600\ndbs:\n{dbs}",
            socket.display()
        ),
    )
    .unwrap();
    cfg
}

fn file_db(db: &Path, replica: &Path) -> String {
    format!(
        "  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        replica.display()
    )
}

#[test]
fn control_register_sync_wait_unregister_start_stop_without_restart() {
    let tmp = util::tempdir();
    let d = tmp.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    let (rep_a, rep_b) = (d.join("rep-a"), d.join("rep-b"));
    let sock = d.join("ctl.sock");
    create_db(&a);
    write(&a, "a0", 10);
    let cfg = config(d, &sock, &file_db(&a, &rep_a));
    let mut rep = Replicator::with_config(&cfg, &d.join("log"));
    rep.wait_for_log("control socket listening", Duration::from_secs(30));
    {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let m = std::fs::metadata(&sock).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
    }
    let w = |args: &[&str]| {
        let mut v = args.to_vec();
        v.insert(1, "-socket");
        v.insert(2, s(&sock));
        util::walstream(&v)
    };

    // register: b.db starts replicating without a restart.
    create_db(&b);
    write(&b, "b0", 20);
    let url_b = format!("file://{}", rep_b.display());
    let r = w(&["register", "-replica", &url_b, s(&b)]);
    r.success();
    assert!(r.stdout.contains("status: registered"), "{}", r.stdout);
    assert!(w(&["register", "-replica", "file:///elsewhere", s(&b)])
        .stdout
        .contains("status: already registered"));
    let list = json(&w(&["list", "-json"]));
    let paths: Vec<&str> = list["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [s(&a), s(&b)]);

    // sync -wait: when it returns, the replica holds every commit made before the call.
    for round in 0..3 {
        write(&b, &format!("b{}", round + 1), 50);
        let want = util::source_digest(&b);
        let t0 = Instant::now();
        let out = json(&w(&["sync", "-wait", "-json", s(&b)]));
        let took = t0.elapsed();
        let txid = out["txid"].as_u64().unwrap();
        let replica_txid = out["replica_txid"].as_u64().unwrap();
        assert!(txid > 0 && replica_txid >= txid, "{out}");
        assert!(
            max_txid(&rep_b) >= txid,
            "round {round}: sync -wait returned before the replica held {txid}: {:?}",
            ltx_files(&rep_b, 0)
        );
        assert_eq!(
            restored_digest(&util::file_url(&rep_b), d, &[]),
            want,
            "round {round}: restore right after sync -wait ({took:?}) misses commits"
        );
    }

    // stop: replication of b pauses (the registration stays); start resumes it.
    let r = w(&["stop", s(&b)]);
    r.success();
    assert!(
        r.stdout.contains("status: stopped") && r.stdout.contains("state: stopped"),
        "{}",
        r.stdout
    );
    let list = json(&w(&["list", "-json"]));
    assert_eq!(list["databases"][1]["status"], "stopped", "{list}");
    let held = max_txid(&rep_b);
    write(&b, "while-stopped", 30);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(max_txid(&rep_b), held, "a stopped database was uploaded");
    let err = w(&["sync", s(&b)]).failure();
    assert!(err.contains("sync failed") && err.contains("b.db"), "{err}");
    let r = w(&["start", s(&b)]);
    r.success();
    assert!(r.stdout.contains("status: started"), "{}", r.stdout);
    let want = util::source_digest(&b);
    let out = json(&w(&["sync", "-wait", "-json", s(&b)]));
    assert!(out["replica_txid"].as_u64().unwrap() > held, "{out}");
    assert_eq!(restored_digest(&util::file_url(&rep_b), d, &[]), want);

    // unregister: b stops being replicated; its replica is kept.
    let r = w(&["unregister", s(&b)]);
    r.success();
    assert!(r.stdout.contains("status: unregistered"), "{}", r.stdout);
    let list = json(&w(&["list", "-json"]));
    assert_eq!(list["databases"].as_array().unwrap().len(), 1, "{list}");
    let held = max_txid(&rep_b);
    assert!(held > 0);
    write(&b, "after-unregister", 30);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        max_txid(&rep_b),
        held,
        "an unregistered database was uploaded"
    );
    let err = w(&["sync", "-wait", s(&b)]).failure();
    assert!(err.contains("database not found"), "{err}");

    // a.db was replicated throughout.
    write(&a, "a1", 10);
    let want = util::source_digest(&a);
    json(&w(&["sync", "-wait", "-json", s(&a)]));
    assert_eq!(restored_digest(&util::file_url(&rep_a), d, &[]), want);

    // info, txid over plain HTTP.
    let info = json(&w(&["info", "-json"]));
    assert_eq!(info["pid"].as_i64().unwrap(), rep.pid() as i64, "{info}");
    assert_eq!(info["database_count"], 1);
    let stopped = rep.stop();
    assert!(!sock.exists(), "the socket file was left behind");
    assert!(!stopped.log.contains("ERROR"), "{}", stopped.log);
}

#[test]
fn control_litestream_cli_against_walstream_socket() {
    let tmp = util::tempdir();
    let d = tmp.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    let (rep_a, rep_b) = (d.join("rep-a"), d.join("rep-b"));
    let sock = d.join("ctl.sock");
    create_db(&a);
    write(&a, "a0", 10);
    let cfg = config(d, &sock, &file_db(&a, &rep_a));
    let mut rep = Replicator::with_config(&cfg, &d.join("log"));
    rep.wait_for_log("control socket listening", Duration::from_secs(30));
    let ls = |args: &[&str]| {
        let mut v = args.to_vec();
        v.insert(1, "-socket");
        v.insert(2, s(&sock));
        util::litestream(&v)
    };
    create_db(&b);
    write(&b, "b0", 20);
    let url_b = format!("file://{}", rep_b.display());
    let r = ls(&["register", "-replica", &url_b, s(&b)]);
    r.success();
    assert!(r.stdout.contains("status: registered"), "{}", r.stdout);

    write(&b, "b1", 40);
    let want = util::source_digest(&b);
    let r = ls(&["sync", "-wait", s(&b)]);
    r.success();
    let field = |name: &str| -> u64 {
        r.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} in {}", r.stdout))
            .trim()
            .parse()
            .unwrap()
    };
    let (txid, replica_txid) = (field("txid"), field("replica_txid"));
    assert!(txid > 0 && replica_txid >= txid, "{}", r.stdout);
    assert!(max_txid(&rep_b) >= txid);
    assert_eq!(restored_digest(&url_b, d, &[]), want);

    let list = json(&ls(&["list", "-json"]));
    let dbs = list["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 2, "{list}");
    assert!(dbs.iter().all(|e| e["status"] == "replicating"), "{list}");
    let r = ls(&["list"]);
    r.success();
    assert!(
        r.stdout.contains(&format!("{} [replicating]", b.display())),
        "{}",
        r.stdout
    );

    let info = json(&ls(&["info", "-json"]));
    assert_eq!(info["pid"].as_i64().unwrap(), rep.pid() as i64, "{info}");
    assert_eq!(info["database_count"], 2, "{info}");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");

    for (cmd, status) in [
        ("stop", "stopped"),
        ("start", "started"),
        ("unregister", "unregistered"),
    ] {
        let r = ls(&[cmd, s(&b)]);
        r.success();
        assert!(
            r.stdout.contains(&format!("status: {status}")),
            "{cmd}: {}",
            r.stdout
        );
    }
    let r = ls(&["sync", s(&b)]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("database not found"), "{}", r.stderr);
    rep.stop();
}

#[test]
fn control_walstream_cli_against_litestream_socket() {
    let tmp = util::tempdir();
    let d = tmp.path();
    let (a, b) = (d.join("a.db"), d.join("b.db"));
    let (rep_a, rep_b) = (d.join("rep-a"), d.join("rep-b"));
    let sock = d.join("ls.sock");
    create_db(&a);
    write(&a, "a0", 10);
    let cfg = config(d, &sock, &file_db(&a, &rep_a));
    let mut ls = Replicator::litestream(&["replicate", "-config", s(&cfg)]).start(&d.join("log"));
    // Litestream logs to stdout (not kept by the harness): wait for its socket.
    let t0 = Instant::now();
    while !sock.exists() {
        ls.assert_running();
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "Litestream's socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let w = |args: &[&str]| {
        let mut v = args.to_vec();
        v.insert(1, "-socket");
        v.insert(2, s(&sock));
        util::walstream(&v)
    };
    let info = json(&w(&["info", "-json"]));
    assert_eq!(info["version"], "0.5.17", "{info}");
    assert_eq!(info["pid"].as_i64().unwrap(), ls.pid() as i64);
    let r = w(&["info"]);
    r.success();
    assert!(r.stdout.contains("Databases:  1"), "{}", r.stdout);

    write(&a, "a1", 30);
    let out = json(&w(&["sync", "-wait", "-json", s(&a)]));
    let txid = out["txid"].as_u64().unwrap();
    assert!(
        out["replica_txid"].as_u64().unwrap() >= txid && txid > 0,
        "{out}"
    );
    assert!(max_txid(&rep_a) >= txid);

    create_db(&b);
    write(&b, "b0", 10);
    let r = w(&[
        "register",
        "-replica",
        &format!("file://{}", rep_b.display()),
        s(&b),
    ]);
    r.success();
    assert!(r.stdout.contains("status: registered"), "{}", r.stdout);
    let list = json(&w(&["list", "-json"]));
    assert_eq!(list["databases"].as_array().unwrap().len(), 2, "{list}");
    let r = w(&["stop", "-json", s(&b)]);
    assert_eq!(json(&r)["status"], "stopped");
    let r = w(&["unregister", s(&b)]);
    r.success();
    assert!(r.stdout.contains("status: unregistered"), "{}", r.stdout);
    let err = w(&["start", s(&b)]).failure();
    assert!(err.contains("start failed: database not found"), "{err}");
    ls.stop();
}

#[test]
fn control_socket_path_not_usable_is_one_line() {
    let tmp = util::tempdir();
    let d = tmp.path();
    let a = d.join("a.db");
    create_db(&a);
    std::fs::write(d.join("plain-file"), b"x").unwrap();
    for bad in [
        d.join("plain-file/ctl.sock"),
        PathBuf::from("/proc/walstream-test.sock"),
        d.join("plain-file"),
    ] {
        let cfg = config(d, &bad, &file_db(&a, &d.join("rep")));
        let r = util::walstream(&["replicate", "-config", s(&cfg)]);
        // The log has the start-up line; the error is one line of its own.
        assert!(r.code.is_some_and(|c| c != 0), "{r:?}");
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{}", r.stderr);
        assert!(
            errors[0].contains("control socket") && errors[0].contains(s(&bad)),
            "{}",
            errors[0]
        );
        assert!(!d.join("rep").exists(), "replication started anyway");
    }
}

#[test]
fn control_status_and_reset() {
    let tmp = util::tempdir();
    let d = tmp.path();
    let a = d.join("a.db");
    let rep_a = d.join("rep-a");
    let sock = d.join("ctl.sock");
    create_db(&a);
    write(&a, "a0", 10);
    let cfg = config(d, &sock, &file_db(&a, &rep_a));
    let mut rep = Replicator::with_config(&cfg, &d.join("log"));
    rep.wait_for_log("control socket listening", Duration::from_secs(30));
    write(&a, "a1", 10);
    let out = json(&util::walstream(&[
        "sync",
        "-socket",
        s(&sock),
        "-wait",
        "-json",
        s(&a),
    ]));
    let txid = out["txid"].as_u64().unwrap();

    // Live: asked through the socket.
    let st = json(&util::walstream(&["status", "-config", s(&cfg), "-json"]));
    let row = &st[0];
    assert_eq!(row["database"], s(&a), "{st}");
    assert_eq!(row["status"], "replicating", "{st}");
    assert_eq!(row["local_txid"], format!("{txid:016x}"), "{st}");
    assert_eq!(row["replica_txid"], format!("{txid:016x}"), "{st}");
    assert_eq!(row["backlog_files"], 0, "{st}");
    assert_eq!(row["lag_seconds"], 0.0, "{st}");

    // reset refuses while replicate holds the database, and removes nothing.
    let meta_ltx = d.join(".a.db-litestream/ltx/0");
    let before = util::dir_entries(&meta_ltx);
    assert!(!before.is_empty());
    let err = util::walstream(&["reset", "-config", s(&cfg), s(&a)]).failure();
    assert!(err.contains("being replicated"), "{err}");
    assert_eq!(util::dir_entries(&meta_ltx), before);
    rep.stop();

    // Offline: the meta directory and the replica.
    let st = json(&util::walstream(&["status", "-config", s(&cfg), "-json"]));
    assert_eq!(st[0]["status"], "not replicating", "{st}");
    assert_eq!(st[0]["replica_txid"], format!("{txid:016x}"), "{st}");
    assert_eq!(st[0]["backlog_files"], 0, "{st}");
    let r = util::walstream(&["status", "-config", s(&cfg)]);
    r.success();
    assert!(r.stdout.starts_with("database"), "{}", r.stdout);
    assert!(r.stdout.contains("not replicating"), "{}", r.stdout);

    // Dry run lists, removes nothing; reset removes the local LTX files.
    let r = util::walstream(&["reset", "-config", s(&cfg), "-dry-run", s(&a)]);
    r.success();
    assert!(r.stdout.contains("No files were removed."), "{}", r.stdout);
    assert_eq!(util::dir_entries(&meta_ltx), before);
    let r = util::walstream(&["reset", "-config", s(&cfg), s(&a)]);
    r.success();
    assert!(!d.join(".a.db-litestream/ltx").exists());

    // The next replicate continues the replica (a fresh snapshot above its TXID).
    write(&a, "a2", 10);
    let want = util::source_digest(&a);
    let mut rep = Replicator::with_config(&cfg, &d.join("log2"));
    rep.wait_for_log("control socket listening", Duration::from_secs(30));
    let out = json(&util::walstream(&[
        "sync",
        "-socket",
        s(&sock),
        "-wait",
        "-json",
        s(&a),
    ]));
    assert!(out["txid"].as_u64().unwrap() > txid, "{out}");
    assert_eq!(restored_digest(&util::file_url(&rep_a), d, &[]), want);
    rep.stop();
}

#[test]
fn control_sync_wait_s3_lists_the_object() {
    let endpoint = std::env::var("WALSTREAM_TEST_S3_ENDPOINT")
        .expect("WALSTREAM_TEST_S3_ENDPOINT is not set: start moto (scripts/servers/moto.sh)");
    let tmp = util::tempdir();
    let d = tmp.path();
    let a = d.join("a.db");
    let sock = d.join("ctl.sock");
    let bucket = format!(
        "it-ctl-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let moto = |method: &str, path: &str| -> String {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(host).unwrap();
        write!(c, "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    };
    assert!(moto("PUT", &format!("/{bucket}")).contains(" 200"));
    // Uploads of LTX files are held 1.5 s by a proxy: a sync -wait that did not wait for the
    // store would return before the file is there.
    let proxy = super::fault_proxy::FaultProxy::start(&endpoint);
    proxy.set_config(super::fault_proxy::FaultConfig {
        enabled: true,
        path_suffix: Some(".ltx".into()),
        stall: 1.0,
        stall_for: Duration::from_millis(1500),
        ..Default::default()
    });
    let via_proxy = format!(
        "s3://{bucket}/db?endpoint={}&region=us-east-1&forcePathStyle=true",
        proxy.endpoint()
    );
    let url = format!("s3://{bucket}/db?endpoint={endpoint}&region=us-east-1&forcePathStyle=true");
    create_db(&a);
    write(&a, "a0", 10);
    let cfg = config(
        d,
        &sock,
        &format!(
            "  - path: {}\n    replica:\n      url: {via_proxy}\n",
            a.display()
        ),
    );
    let env: Vec<(String, String)> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                std::env::var(k).unwrap_or_else(|_| "test".into()),
            )
        })
        .collect();
    let mut rep = Replicator::walstream(&["replicate", "-config", s(&cfg)])
        .env(&env)
        .start(&d.join("log"));
    rep.wait_for_log("control socket listening", Duration::from_secs(30));
    for round in 0..3 {
        write(&a, &format!("r{round}"), 40);
        let want = util::source_digest(&a);
        let out = json(&util::walstream(&[
            "sync",
            "-socket",
            s(&sock),
            "-wait",
            "-json",
            s(&a),
        ]));
        let txid = out["txid"].as_u64().unwrap();
        assert!(
            out["duration_ms"].as_u64().unwrap() >= 1400,
            "round {round}: sync -wait returned before the held upload finished: {out}"
        );
        // Listing the bucket right after the return shows the file that holds the TXID.
        let listing = moto("GET", &format!("/{bucket}?list-type=2&prefix=db/"));
        let on_store = listing
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .filter_map(|k| k.rsplit('/').next())
            .filter_map(|n| ltx::parse_file_name(n).map(|(_, max)| max.0))
            .max()
            .unwrap_or(0);
        assert!(
            on_store >= txid,
            "round {round}: store holds {on_store}, sync -wait said {txid}"
        );
        assert_eq!(restored_digest(&url, d, &env), want, "round {round}");
    }
    assert!(count(&a) > 0);
    rep.stop();
}

#[test]
fn control_dir_watch_picks_up_new_and_drops_deleted_databases() {
    let tmp = util::tempdir();
    let d = tmp.path();
    let data = d.join("tenants");
    let backup = d.join("backup");
    std::fs::create_dir_all(data.join("sub")).unwrap();
    let early = data.join("early.db");
    create_db(&early);
    write(&early, "e0", 5);
    let cfg = d.join("walstream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: '*.db'\n    recursive: true\n    watch: true\n    replica:\n      type: file\n      path: {}\n",
            data.display(),
            backup.display()
        ),
    )
    .unwrap();
    let mut rep = Replicator::with_config(&cfg, &d.join("log"));
    rep.wait_for_log("watching for new databases", Duration::from_secs(30));

    // Databases created while running, in the directory and a subdirectory.
    let new1 = data.join("new1.db");
    let new2 = data.join("sub/new2.db");
    let doomed = data.join("doomed.db");
    for (db, tag) in [(&new1, "n1"), (&new2, "n2"), (&doomed, "d")] {
        let t0 = Instant::now();
        create_db(db);
        write(db, tag, 20);
        // Picked up within a second: its replica appears.
        let rel = db.strip_prefix(&data).unwrap();
        let replica = backup.join(rel);
        while max_txid(&replica) == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(3),
                "{} not picked up within 3s; log:\n{}",
                db.display(),
                rep.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{} took {:?}",
            db.display(),
            t0.elapsed()
        );
    }
    // A matching file that is not SQLite: one line, nothing else stops.
    std::fs::write(data.join("junk.db"), b"this is not a database at all").unwrap();
    std::fs::write(data.join("notes.txt"), b"ignored: does not match").unwrap();
    rep.wait_for_log("junk.db", Duration::from_secs(5));

    // A deleted database stops being replicated; its replica is kept.
    std::thread::sleep(Duration::from_millis(500));
    util::remove_db(&doomed);
    rep.wait_for_log("stopping its replication", Duration::from_secs(5));
    let doomed_replica = backup.join("doomed.db");
    let kept = max_txid(&doomed_replica);
    assert!(kept > 0);

    for (db, tag) in [(&early, "e1"), (&new1, "n1b"), (&new2, "n2b")] {
        write(db, tag, 30);
    }
    let wants: Vec<(PathBuf, String)> = [&early, &new1, &new2]
        .iter()
        .map(|p| (p.to_path_buf(), util::source_digest(p)))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let stopped = rep.stop();
    let junk_lines = stopped
        .log
        .lines()
        .filter(|l| l.contains("junk.db"))
        .count();
    assert_eq!(junk_lines, 1, "{}", stopped.log);
    assert!(
        stopped.log.contains("not a SQLite database"),
        "{}",
        stopped.log
    );
    assert!(!stopped.log.contains("notes.txt"), "{}", stopped.log);
    assert_eq!(
        max_txid(&doomed_replica),
        kept,
        "the deleted database's replica changed"
    );
    assert!(
        doomed_replica.join("ltx").exists(),
        "the deleted database's replica was removed"
    );

    // Every live one restores identical, by its path through the config.
    for (db, want) in wants {
        let out = d.join(format!(
            "restored-{}",
            db.file_name().unwrap().to_string_lossy()
        ));
        util::walstream(&["restore", "-config", s(&cfg), "-o", s(&out), s(&db)]).success();
        assert_eq!(util::logical_digest(&out), want, "{}", db.display());
    }
}

/// Runs deploy/docker/entrypoint.sh with our binary; returns the run.
fn entrypoint(cfg: &Path, app: &[&str]) -> util::Run {
    let script = util::repo_root().join("deploy/docker/entrypoint.sh");
    let mut cmd = std::process::Command::new(&script);
    cmd.args(app)
        .env("WALSTREAM_BIN", util::bin())
        .env("WALSTREAM_CONFIG", cfg)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG");
    let out = cmd.output().unwrap();
    util::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("{} {}", script.display(), app.join(" ")),
    }
}

#[test]
fn deploy_entrypoint_restores_on_start_and_supervises_the_app() {
    let tmp = util::tempdir();
    let d = tmp.path();
    let db = d.join("data/app.db");
    let replica = d.join("replica");
    let cfg = d.join("litestream.yml");
    std::fs::write(&cfg, format!("dbs:\n{}", file_db(&db, &replica))).unwrap();
    // The app: one row per boot, the row count it saw in a file, then exits with code 7. Its
    // arguments carry quotes and spaces, which the entrypoint passes through -exec intact.
    let app = |boot: &str| -> Vec<String> {
        vec![
            "python3".into(),
            "-c".into(),
            format!(
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=WAL'); \
                 c.execute('CREATE TABLE IF NOT EXISTS t(v TEXT)'); \
                 n=c.execute('SELECT count(*) FROM t').fetchone()[0]; \
                 c.execute('INSERT INTO t VALUES (?)', (sys.argv[2],)); c.commit(); \
                 open(sys.argv[3],'w').write(str(n)); sys.exit(7)"
            ),
            db.to_str().unwrap().into(),
            format!("boot '{boot}' with spaces"),
            d.join(format!("seen-{boot}")).to_str().unwrap().into(),
        ]
    };
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    for (boot, seen) in [("one", "0"), ("two", "1"), ("three", "2")] {
        let argv = app(boot);
        let args: Vec<&str> = argv.iter().map(String::as_str).collect();
        let r = entrypoint(&cfg, &args);
        // The log is on stdout (Litestream's default); stderr holds no error.
        assert_eq!(r.code, Some(7), "boot {boot}: {}{}", r.stdout, r.stderr);
        assert_eq!(
            std::fs::read_to_string(d.join(format!("seen-{boot}"))).unwrap(),
            seen,
            "boot {boot}: the app did not see the restored rows; log:\n{}{}",
            r.stdout,
            r.stderr
        );
        assert!(!r.stderr.contains("error:"), "{}", r.stderr);
        if boot != "one" {
            assert!(
                r.stdout.contains("restored it from the replica"),
                "{}",
                r.stdout
            );
        }
        // The container's disk is gone before the next boot.
        util::remove_db(&db);
        let _ = std::fs::remove_dir_all(d.join("data/.app.db-litestream"));
    }
    // The rows, quotes and spaces intact, are on the replica.
    let out = d.join("final.db");
    util::walstream(&["restore", "-o", s(&out), &util::file_url(&replica)]).success();
    let c = Connection::open(&out).unwrap();
    let rows: Vec<String> = c
        .prepare("SELECT v FROM t ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        [
            "boot 'one' with spaces",
            "boot 'two' with spaces",
            "boot 'three' with spaces"
        ]
    );
}

#[test]
fn deploy_entrypoint_without_config_is_one_line() {
    let tmp = util::tempdir();
    let r = entrypoint(&tmp.path().join("missing.yml"), &["true"]);
    assert_eq!(r.code, Some(1));
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("config file not found"), "{}", r.stderr);
}
