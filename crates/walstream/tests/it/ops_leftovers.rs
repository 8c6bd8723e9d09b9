//! Issue 11, the leftovers: logs on stdout by default (Litestream 0.5's default), a database
//! that fails permanently stops only itself, the socket's `list` with `last_sync_at`, and
//! `reset` against a `replicate` starting at the same moment (the replicator's own flocks).
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::harness::Replicator;
use super::util;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn create_db(db: &Path) {
    let c = Connection::open(db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
}

fn write(db: &Path, tag: &str, n: u32) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..n {
        tx.execute("INSERT INTO t(v) VALUES (?1)", [format!("{tag}-{i}")])
            .unwrap();
    }
    tx.commit().unwrap();
}

fn run_env(args: &[&str], env: &[(String, String)]) -> util::Run {
    let mut cmd = Command::new(util::bin());
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
        cmdline: format!("walstream {}", args.join(" ")),
    }
}

/// Polls until a restore of `replica` has `want`'s logical content.
fn wait_restored(replica: &str, want: &Path, dir: &Path, env: &[(String, String)], what: &str) {
    let digest = util::logical_digest(want);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    loop {
        n += 1;
        let out = dir.join(format!("restored-{what}-{n}.db"));
        let r = run_env(&["restore", "-o", s(&out), replica], env);
        if r.code == Some(0) && util::logical_digest(&out) == digest {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the replica {replica} did not catch up within 60 s; last restore: {}{}",
            r.stdout,
            r.stderr
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `replicate` with both streams piped, SIGTERMed after `run_for`: (code, stdout, stderr).
fn run_and_term(cfg: &Path, run_for: Duration) -> (Option<i32>, String, String) {
    let child = Command::new(util::bin())
        .args(["replicate", "-config", s(cfg)])
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(run_for);
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Litestream 0.5.17 logs to stdout unless `logging.stderr: true` (checked on the real binary:
/// `replicate` with no `logging:` key prints its lines on stdout, nothing on stderr; with
/// `stderr: true` the reverse). A fatal error is one `error: ...` line on stderr either way
/// (Litestream's is `Error: ...` on stderr).
#[test]
fn logs_go_to_stdout_by_default_and_to_stderr_with_logging_stderr_true() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    create_db(&db);
    write(&db, "a", 5);
    let version = format!("walstream v{}", env!("CARGO_PKG_VERSION"));
    let body = format!(
        "dbs:\n  - path: {}\n    replica:\n      type: file\n      path: {}\n",
        db.display(),
        d.join("replica").display()
    );
    let plain = d.join("plain.yml");
    std::fs::write(&plain, &body).unwrap();
    let (code, out, err) = run_and_term(&plain, Duration::from_secs(2));
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains(&version), "no start-up line on stdout:\n{out}");
    assert!(out.contains("replicating"), "{out}");
    assert!(out.contains("walstream shut down"), "{out}");
    assert_eq!(err, "", "nothing on stderr by default");

    let to_stderr = d.join("stderr.yml");
    std::fs::write(&to_stderr, format!("logging:\n  stderr: true\n{body}")).unwrap();
    let (code, out, err) = run_and_term(&to_stderr, Duration::from_secs(2));
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains(&version), "no start-up line on stderr:\n{err}");
    assert!(err.contains("walstream shut down"), "{err}");
    assert_eq!(out, "", "nothing on stdout with logging.stderr: true");

    // Bad input after logging started: the log on stdout, the one-line error on stderr.
    let r = util::walstream(&["replicate", s(&db), "bogus://x/y"]);
    let line = r.failure();
    assert!(line.contains("bogus"), "{line}");
    assert_eq!(r.code, Some(1));
}

fn moto() -> String {
    match std::env::var("WALSTREAM_TEST_S3_ENDPOINT") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "WALSTREAM_TEST_S3_ENDPOINT is not set: this test needs moto. Run scripts/test.sh, or \
             source scripts/servers/lib.sh and scripts/servers/moto.sh first"
        ),
    }
}

fn create_bucket(endpoint: &str, bucket: &str) {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "create bucket {bucket}: {resp}"
    );
}

fn s3_env() -> Vec<(String, String)> {
    ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .map(|k| {
            (
                k.to_string(),
                std::env::var(k).unwrap_or_else(|_| "test".into()),
            )
        })
        .collect()
}

/// A `dir:` entry with three databases, a matching file that is not SQLite and one that has the
/// SQLite header but nothing valid after it, plus a database registered over the socket whose
/// bucket does not exist: the failing ones are reported (one ERROR line each, `status` and
/// `list` show them) and the three others keep reaching the replica.
#[test]
fn a_database_that_fails_permanently_does_not_stop_the_others() {
    let endpoint = moto();
    let tag = format!(
        "{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let bucket = format!("it-leftovers-{tag}");
    create_bucket(&endpoint, &bucket);
    let env = s3_env();
    let q = format!("endpoint={endpoint}&region=us-east-1&forcePathStyle=true");
    let dir = util::tempdir();
    let d = dir.path();
    let data = d.join("tenants");
    std::fs::create_dir_all(&data).unwrap();
    let names = ["a.db", "b.db", "c.db"];
    for n in names {
        create_db(&data.join(n));
        write(&data.join(n), n, 20);
    }
    std::fs::write(data.join("notes.db"), b"not a database at all\n").unwrap();
    let mut broken = b"SQLite format 3\0".to_vec();
    broken.extend(std::iter::repeat_n(0xA5u8, 8192));
    std::fs::write(data.join("broken.db"), &broken).unwrap();
    let sock = d.join("ctl.sock");
    let cfg = d.join("walstream.yml");
    std::fs::write(
        &cfg,
        format!(
            "socket:\n  enabled: true\n  path: {}\ndbs:\n  - dir: {}\n    pattern: \"*.db\"\n    replica:\n      url: \"s3://{bucket}/tenants?{q}\"\n",
            sock.display(),
            data.display()
        ),
    )
    .unwrap();
    let log = d.join("replicate.log");
    let mut rep = Replicator::walstream(&["replicate", "-config", s(&cfg)])
        .env(&env)
        .start(&log);
    rep.wait_for_log("control socket", Duration::from_secs(30));

    // Register a database whose bucket does not exist.
    let x = d.join("x.db");
    create_db(&x);
    write(&x, "x", 3);
    let missing = format!("s3://{bucket}-missing/x?{q}");
    let r = run_env(
        &["register", "-socket", s(&sock), "-replica", &missing, s(&x)],
        &env,
    );
    r.success();
    let x_abs = x.clone();
    // Its failure is reported once, naming it, and the process goes on.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        rep.assert_running();
        let text = rep.log();
        if text.contains("the other databases go on")
            && text.contains(&format!("{}-missing", bucket))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no report of the failing registered database:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The three good databases still reach the replica, with writes made after the failures.
    for n in names {
        write(&data.join(n), &format!("{n}-after"), 15);
    }
    for n in names {
        wait_restored(
            &format!("s3://{bucket}/tenants/{n}?{q}"),
            &data.join(n),
            d,
            &env,
            n,
        );
    }
    rep.assert_running();

    // `status` (through the socket) shows the failing database's error; `list` marks it
    // failed, the others replicating with a recent last_sync_at.
    let st = run_env(&["status", "-json", "-socket", s(&sock)], &env);
    st.success();
    let v: serde_json::Value = serde_json::from_str(&st.stdout)
        .unwrap_or_else(|e| panic!("status -json: {e}: {}", st.stdout));
    let dbs = v.as_array().unwrap_or_else(|| panic!("{v}"));
    // The file that is not SQLite was never taken for a database.
    assert!(
        !dbs.iter().any(|e| e["database"]
            .as_str()
            .is_some_and(|p| p.ends_with("notes.db"))),
        "{v}"
    );
    let xs = dbs
        .iter()
        .find(|e| e["database"] == x_abs.display().to_string())
        .unwrap_or_else(|| panic!("x.db not in status: {v}"));
    let err = xs["last_error"].as_str().unwrap_or_else(|| panic!("{xs}"));
    assert!(err.contains(&format!("{bucket}-missing")), "{err}");
    let l = run_env(&["list", "-json", "-socket", s(&sock)], &env);
    l.success();
    let v: serde_json::Value = serde_json::from_str(&l.stdout).unwrap();
    let list = v["databases"].as_array().unwrap();
    let entry = |p: &Path| {
        list.iter()
            .find(|e| e["path"] == p.display().to_string())
            .unwrap_or_else(|| panic!("{} not listed: {v}", p.display()))
    };
    assert_eq!(entry(&x_abs)["status"], "failed", "{v}");
    let now = std::time::SystemTime::now();
    for n in names {
        let p = data.join(n);
        let e = entry(&p);
        assert_eq!(e["status"], "replicating", "{v}");
        let at = e["last_sync_at"]
            .as_str()
            .unwrap_or_else(|| panic!("no last_sync_at: {e}"));
        let at = humantime::parse_rfc3339(at).unwrap_or_else(|e| panic!("{at}: {e}"));
        let age = now.duration_since(at).unwrap_or_default();
        assert!(
            age < Duration::from_secs(30),
            "{n}: last_sync_at {age:?} ago"
        );
    }
    // Litestream's CLI reads walstream's list, last_sync_at included.
    let ls = util::litestream(&["list", "-socket", s(&sock)]);
    ls.success();
    assert!(
        ls.stdout.lines().any(|l| l.contains("a.db")
            && l.contains("[replicating]")
            && l.contains("last sync: 20")),
        "{}",
        ls.stdout
    );

    let stopped = rep.stop();
    // The registered database's failure is one ERROR line (rate-limited repeats aside).
    let reports = stopped
        .log
        .lines()
        .filter(|l| {
            l.contains("the other databases go on") && l.contains(&format!("{bucket}-missing"))
        })
        .count();
    assert_eq!(reports, 1, "{}", stopped.log);
}

/// `reset` takes the replicator's own flocks while it clears the meta directory, so a
/// `replicate` starting at that moment waits instead of writing into a directory being removed;
/// and while a `replicate` holds the database, `reset` refuses and removes nothing.
#[test]
fn reset_and_replicate_exclude_each_other_with_the_same_flocks() {
    let dir = util::tempdir();
    let d = dir.path();
    let db = d.join("app.db");
    create_db(&db);
    write(&db, "a", 10);
    let meta = d.join(".app.db-litestream");
    std::fs::create_dir_all(&meta).unwrap();
    let replica = d.join("replica");

    // Hold the locks as `reset` does between its check and its removal.
    let held = walstream::server::lock_meta_dir(&meta)
        .unwrap()
        .expect("nobody holds the meta directory yet");
    let mut rep = Replicator::start(&["replicate", s(&db), s(&replica)], &d.join("log"));
    rep.wait_for_log("waiting for the replicate lock", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !meta.join("ltx").exists(),
        "replicate wrote into the meta directory while reset held it"
    );
    drop(held);
    rep.wait_for_log(
        "replicate lock taken after waiting",
        Duration::from_secs(30),
    );
    wait_restored(&util::file_url(&replica), &db, d, &[], "after the wait");

    // A running replicate holds the database: reset refuses, the locks are not available.
    assert!(walstream::server::lock_meta_dir(&meta).unwrap().is_none());
    let r = util::walstream(&["reset", s(&db)]);
    let line = r.failure();
    assert!(line.contains("is being replicated"), "{line}");
    assert!(meta.join("ltx").exists(), "a refused reset removed files");
    rep.stop();

    // Stopped: reset clears it.
    let r = util::walstream(&["reset", s(&db)]);
    r.success();
    assert!(!meta.join("ltx").exists());
    assert!(walstream::server::lock_meta_dir(&meta).unwrap().is_some());
    let _: PathBuf = meta;
}
