//! What the abs, gs and sftp tests share: reading the test servers' variables, the full
//! replicate → write → kill -9 → restart → write → stop → restore cycle through the real binary,
//! and checks of failing restores.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::harness::Replicator;
use super::util;

/// A test server's variable, or a failure that says how to get the servers.
pub fn env_or_fail(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the test servers are missing. Run scripts/test.sh, which installs \
             and starts them (scripts/servers/*.sh) and runs the suite"
        ),
    }
}

/// A path component no other test (or run) uses.
pub fn unique(name: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{name}-{}-{nanos:x}-{seq}", std::process::id())
}

/// A TCP port on 127.0.0.1 with nothing listening.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A replica on a real server, as the binary is told about it.
pub struct Remote {
    /// The `replica:` mapping for a config file, one `key: value` per line.
    pub replica_yaml: String,
    /// A replica URL the binary accepts for `replicate DB URL` and `restore`.
    pub url: String,
    /// Environment for the binary (credentials, endpoints).
    pub env: Vec<(String, String)>,
}

/// Runs `walstream` with extra environment.
pub fn walstream_env(args: &[&str], env: &[(String, String)]) -> util::Run {
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

fn write_rows(db: &Path, round: u32, rows: u32) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        let blob: Vec<u8> = (0..(300 + (i * 37 + round * 101) % 5000))
            .map(|j| (j * 7 + i + round) as u8)
            .collect();
        tx.execute(
            "INSERT INTO t(v, b) VALUES (?1, ?2)",
            rusqlite::params![format!("r{round}-{i}"), blob],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute("UPDATE t SET v = v || '-u' WHERE id % 5 = ?1", [round % 5])
        .unwrap();
    c.execute("DELETE FROM t WHERE id % 13 = ?1", [round % 13])
        .unwrap();
}

/// Restores `remote` into `out` (replacing it); whether that worked.
fn try_restore(remote: &Remote, out: &Path) -> util::Run {
    util::remove_db(out);
    walstream_env(
        &["restore", "-o", out.to_str().unwrap(), &remote.url],
        &remote.env,
    )
}

/// Polls restores until one has the source's content.
fn wait_caught_up(remote: &Remote, db: &Path, out: &Path, rep: &mut Replicator) {
    let want = util::logical_digest(db);
    // Generous: the machine may be busy compiling and testing other things.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        rep.assert_running();
        let r = try_restore(remote, out);
        if r.code == Some(0) && util::logical_digest(out) == want {
            return;
        }
        let last = format!("{}{}", r.stdout, r.stderr);
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up within 120 s; last restore said: {last}\nlog:\n{}",
            rep.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The whole cycle against a real server. The first run is configured by a config file, the
/// second by the URL; the final restore must equal the source.
pub fn replication_cycle(remote: &Remote) {
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    let out = dir.path().join("restored.db");
    let log = dir.path().join("walstream.log");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB); CREATE INDEX t_v ON t(v);",
        )
        .unwrap();
    }
    let indented: String = remote
        .replica_yaml
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let cfg = dir.path().join("walstream.yml");
    std::fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    replica:\n{indented}", db.display()),
    )
    .unwrap();

    let mut rep = Replicator::walstream(&[
        "replicate",
        "-log-level",
        "debug",
        "-config",
        cfg.to_str().unwrap(),
    ])
    .env(&remote.env)
    .start(&log);
    for round in 0..3 {
        write_rows(&db, round, 40);
    }
    wait_caught_up(remote, &db, &out, &mut rep);
    write_rows(&db, 3, 40);
    rep.kill9();

    // Written while nobody replicates: the restart must pick it up.
    write_rows(&db, 4, 60);
    let mut rep = Replicator::walstream(&[
        "replicate",
        "-log-level",
        "debug",
        db.to_str().unwrap(),
        &remote.url,
    ])
    .env(&remote.env)
    .start(&log);
    for round in 5..8 {
        write_rows(&db, round, 40);
    }
    wait_caught_up(remote, &db, &out, &mut rep);
    rep.stop();

    let final_out = dir.path().join("final.db");
    try_restore(remote, &final_out).success();
    assert_eq!(
        util::logical_digest(&final_out),
        util::logical_digest(&db),
        "restored content differs from the source"
    );
    assert_eq!(util::integrity(&final_out), "ok");

    // The real Litestream 0.5.17 restores the same replica, from the same config file, to the
    // same bytes.
    let ls_out = dir.path().join("litestream.db");
    let args = [
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        ls_out.to_str().unwrap(),
        db.to_str().unwrap(),
    ];
    let r = litestream_env(&args, &remote.env);
    r.success();
    assert_eq!(
        util::sha256_file(&ls_out),
        util::sha256_file(&final_out),
        "Litestream's restore differs from walstream's"
    );
}

/// Runs the real Litestream with extra environment.
fn litestream_env(args: &[&str], env: &[(String, String)]) -> util::Run {
    let mut cmd = Command::new(util::litestream_bin());
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
        cmdline: format!("litestream {}", args.join(" ")),
    }
}

/// The other direction: the real Litestream 0.5.17 replicates (configured by
/// `remote.replica_yaml`), walstream restores what it wrote, to Litestream's own restore's bytes.
pub fn litestream_writes_walstream_restores(remote: &Remote) {
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    let out = dir.path().join("restored.db");
    let log = dir.path().join("litestream.log");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);",
        )
        .unwrap();
    }
    let indented: String = remote
        .replica_yaml
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    replica:\n{indented}", db.display()),
    )
    .unwrap();
    let mut rep = Replicator::litestream(&["replicate", "-config", cfg.to_str().unwrap()])
        .env(&remote.env)
        .start(&log);
    for round in 0..3 {
        write_rows(&db, round, 40);
    }
    wait_caught_up(remote, &db, &out, &mut rep);
    rep.stop();
    let ls_out = dir.path().join("litestream.db");
    let args = [
        "restore",
        "-config",
        cfg.to_str().unwrap(),
        "-o",
        ls_out.to_str().unwrap(),
        db.to_str().unwrap(),
    ];
    litestream_env(&args, &remote.env).success();
    assert_eq!(util::logical_digest(&out), util::logical_digest(&db));
    assert_eq!(
        util::sha256_file(&out),
        util::sha256_file(&ls_out),
        "walstream's restore of Litestream's replica differs from Litestream's"
    );
}

/// A restore that must fail: non-zero exit, one `error: ` line naming every `must_name` (retry
/// warnings may come before it), no `secrets` in the output, and nothing at the output path.
/// Returns the error line.
pub fn restore_fails(
    url: &str,
    env: &[(String, String)],
    must_name: &[&str],
    secrets: &[&str],
) -> String {
    let dir = util::tempdir();
    let out = dir.path().join("out.db");
    let r = walstream_env(&["restore", "-o", out.to_str().unwrap(), url], env);
    assert!(
        r.code.is_some_and(|c| c != 0),
        "{} should have failed:\n{}{}",
        r.cmdline,
        r.stdout,
        r.stderr
    );
    let errors: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "{}: one error line expected:\n{}",
        r.cmdline,
        r.stderr
    );
    let line = errors[0].to_string();
    for s in must_name {
        assert!(line.contains(s), "error should name {s:?}: {line}");
    }
    for s in secrets {
        assert!(
            !r.stderr.contains(s) && !r.stdout.contains(s),
            "secret {s:?} in output: {}{}",
            r.stdout,
            r.stderr
        );
    }
    assert!(!out.exists(), "restore left {}", out.display());
    assert_eq!(util::dir_entries(dir.path()), Vec::<String>::new());
    line
}

/// `replicate` that must fail at start: non-zero exit, the error names every `must_name`, no
/// secret in the output, and the database is untouched (no WAL, no meta directory).
pub fn replicate_fails(
    replica_yaml: &str,
    env: &[(String, String)],
    must_name: &[&str],
    secrets: &[&str],
) {
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    {
        let c = Connection::open(&db).unwrap();
        c.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let before = util::sha256_file(&db);
    let indented: String = replica_yaml
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect();
    let cfg = dir.path().join("walstream.yml");
    std::fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    replica:\n{indented}", db.display()),
    )
    .unwrap();
    let mut rep = Replicator::walstream(&["replicate", "-config", cfg.to_str().unwrap()])
        .env(env)
        .start(&dir.path().join("stderr.log"));
    // A replicator that keeps retrying instead of failing would hang the test: bound it.
    let Some(status) = rep.wait_exit(Duration::from_secs(60)) else {
        panic!("replicate did not fail within 60 s:\n{}", rep.log());
    };
    let stderr = rep.log();
    assert!(
        status.code().is_some_and(|c| c != 0),
        "replicate should fail with an exit code: {status:?}\n{stderr}"
    );
    let error_line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("error"))
        .unwrap_or_else(|| panic!("no error line in:\n{stderr}"));
    for s in must_name {
        assert!(
            error_line.contains(s),
            "error should name {s:?}: {error_line}"
        );
    }
    for s in secrets {
        assert!(!stderr.contains(s), "secret {s:?} in stderr:\n{stderr}");
    }
    assert_eq!(util::sha256_file(&db), before, "database changed");
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let wal = PathBuf::from(wal);
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL written"
    );
}
