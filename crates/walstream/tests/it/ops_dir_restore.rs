//! Restore on start for each database of a `dir:` entry (issue 11): the databases the entry's
//! replica holds that its pattern covers and that are missing locally are restored before the
//! directory is scanned, and replication goes on; a database that exists is left alone; one the
//! pattern does not cover is not restored; a store that cannot be listed fails the start naming
//! it. Real processes, a file replica and moto.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::util;

/// A `replicate` running in the background, its output in files.
struct Running {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Running {
    fn start(dir: &Path, name: &str, args: &[&str], env: &[(String, String)]) -> Running {
        let out = dir.join(format!("{name}.out"));
        let err = dir.join(format!("{name}.err"));
        let child = Command::new(util::bin())
            .args(args)
            .current_dir(dir)
            .env_remove("LOG_LEVEL")
            .env_remove("LITESTREAM_CONFIG")
            .env("WALSTREAM_COLD_AFTER", "2s")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        Running { child, out, err }
    }

    fn log(&self) -> String {
        format!(
            "{}{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }

    /// Waits for the exit (at most `limit`): `(code, stdout then stderr)`.
    fn wait(&mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < limit,
                "walstream did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), self.log())
    }

    fn terminate(&mut self) -> (Option<i32>, String) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        self.wait(Duration::from_secs(60))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(what: &str, limit: Duration, log: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A database with table `t` holding `n` rows tagged `tag`.
fn make_db(path: &Path, tag: &str, n: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = Connection::open(path).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(x TEXT)")
        .unwrap();
    for i in 0..n {
        c.execute("INSERT INTO t VALUES (?1)", [format!("{tag}-{i}")])
            .unwrap();
    }
}

fn insert(path: &Path, value: &str) {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute("INSERT INTO t VALUES (?1)", [value]).unwrap();
}

/// Removes a database, its -wal/-shm and its meta directory (`.<name>-litestream`).
fn remove_local(db: &Path) {
    util::remove_db(db);
    let meta = db.with_file_name(format!(
        ".{}-litestream",
        db.file_name().unwrap().to_string_lossy()
    ));
    std::fs::remove_dir_all(&meta).unwrap();
}

fn config(d: &Path, data: &Path, pattern: &str, extra: &str, replica: &str) -> PathBuf {
    let cfg = d.join(format!("walstream-{}.yml", pattern.replace('*', "star")));
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - dir: {}\n    pattern: '{pattern}'\n    recursive: true\n{extra}    replica:\n{replica}",
            data.display()
        ),
    )
    .unwrap();
    cfg
}

/// Whether restoring `url` gives a database with a row `value`.
fn replica_has(d: &Path, url: &str, value: &str, env: &[(String, String)]) -> bool {
    let out = d.join("probe.db");
    util::remove_db(&out);
    let ok = Command::new(util::bin())
        .args(["restore", "-o", out.to_str().unwrap(), url])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap()
        .status
        .success();
    ok && Connection::open(&out)
        .unwrap()
        .query_row("SELECT count(*) FROM t WHERE x = ?1", [value], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap()
        == 1
}

/// The whole scenario on one store: `base` is the dir entry's replica URL (without its
/// `query`), `replica_yaml` its `replica:` block, `restore_flag` whether boot 2 uses the CLI flag
/// (else the YAML key).
fn dir_restore_scenario(
    d: &Path,
    base: &str,
    query: Option<&str>,
    replica_yaml: &str,
    env: &[(String, String)],
    restore_flag: bool,
) {
    let data = d.join("data");
    let a = data.join("a.db");
    let b = data.join("b.db");
    let c = data.join("sub/deeper/c.db");
    let x = data.join("x.sqlite");
    make_db(&a, "a", 30);
    make_db(&b, "b", 20);
    make_db(&c, "c", 10);
    make_db(&x, "x", 5);

    // Boot 1: every SQLite file of the directory (pattern `*`) goes to the replica.
    let all = config(d, &data, "*", "", replica_yaml);
    let mut boot1 = Running::start(
        d,
        "boot1",
        &["replicate", "-once", "-config", all.to_str().unwrap()],
        env,
    );
    let (code, log) = boot1.wait(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{log}");
    let digest_a = util::logical_digest(&a);
    let digest_c = util::logical_digest(&c);
    assert_ne!(digest_a, digest_c);
    // b.db stays, with a row its replica never saw: a restore would lose it.
    insert(&b, "local-only");
    let digest_b = util::logical_digest(&b);
    let inode_b = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&b).unwrap());

    // Everything local of a.db, c.db (its directories too) and x.sqlite is gone.
    remove_local(&a);
    remove_local(&x);
    std::fs::remove_dir_all(data.join("sub")).unwrap();
    assert!(!a.exists() && !c.exists() && !x.exists());

    // Boot 2 covers only `*.db`: a.db and c.db come back, x.sqlite does not, b.db is left alone.
    let (extra, mut args) = if restore_flag {
        ("", vec!["replicate", "-restore-if-db-not-exists"])
    } else {
        ("    restore-if-db-not-exists: true\n", vec!["replicate"])
    };
    let dbs = config(d, &data, "*.db", extra, replica_yaml);
    args.extend(["-config", dbs.to_str().unwrap()]);
    let mut boot2 = Running::start(d, "boot2", &args, env);
    wait_for(
        "the dir entry's restore",
        Duration::from_secs(60),
        || boot2.log(),
        || {
            boot2
                .log()
                .contains("restore on start of a dir entry: done")
        },
    );
    let log = boot2.log();
    assert!(
        log.contains("databases=4 restored=2"),
        "the replica lists a.db, b.db, sub/deeper/c.db and x.sqlite; two were missing:\n{log}"
    );
    assert!(
        log.contains("pattern does not cover: not restoring it")
            && log.contains("database=x.sqlite"),
        "{log}"
    );
    assert_eq!(util::logical_digest(&a), digest_a, "a.db restored");
    assert_eq!(util::logical_digest(&c), digest_c, "c.db restored");
    assert_eq!(util::logical_digest(&b), digest_b, "b.db untouched");
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&b).unwrap()),
        inode_b,
        "b.db replaced"
    );
    assert!(!x.exists(), "x.sqlite is not covered by *.db:\n{log}");
    assert!(log.contains("database exists; not restoring it"), "{log}");

    // Replication goes on for the restored databases and the kept one.
    insert(&a, "after-restore-a");
    insert(&c, "after-restore-c");
    let url = |rel: &str| match query {
        Some(q) => format!("{base}/{rel}?{q}"),
        None => format!("{base}/{rel}"),
    };
    wait_for(
        "the new writes on the replica",
        Duration::from_secs(60),
        || boot2.log(),
        || {
            replica_has(d, &url("a.db"), "after-restore-a", env)
                && replica_has(d, &url("sub/deeper/c.db"), "after-restore-c", env)
                && replica_has(d, &url("b.db"), "local-only", env)
        },
    );
    let (code, log) = boot2.terminate();
    assert_eq!(code, Some(0), "{log}");
}

#[test]
fn ops_dir_restore_on_start_file_replica() {
    let dir = util::tempdir();
    let d = dir.path();
    let replica = d.join("replica");
    let yaml = format!("      path: {}\n", replica.display());
    dir_restore_scenario(d, replica.to_str().unwrap(), None, &yaml, &[], false);
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

/// Creates a bucket in moto (unsigned, as moto allows).
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

fn s3_keys() -> Vec<(String, String)> {
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

#[test]
fn ops_dir_restore_on_start_s3_then_missing_bucket_fails() {
    let endpoint = moto();
    let bucket = format!(
        "it-dir-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    create_bucket(&endpoint, &bucket);
    let query = format!("endpoint={endpoint}&region=us-east-1&forcePathStyle=true");
    let root = format!("s3://{bucket}/tenants?{query}");
    let yaml = format!("      url: {root}\n");
    let env = s3_keys();
    let dir = util::tempdir();
    let d = dir.path();
    let base = format!("s3://{bucket}/tenants");
    dir_restore_scenario(d, &base, Some(&query), &yaml, &env, true);

    // A bucket that does not exist is not "no databases": the start fails, naming it.
    let data = d.join("data2");
    std::fs::create_dir_all(&data).unwrap();
    let missing = format!("{bucket}-missing");
    let yaml = format!("      url: s3://{missing}/tenants?{query}\n");
    let cfg = config(
        d,
        &data,
        "*.db",
        "    restore-if-db-not-exists: true\n",
        &yaml,
    );
    let mut w = Running::start(
        d,
        "boot3",
        &["replicate", "-config", cfg.to_str().unwrap()],
        &env,
    );
    let (code, log) = w.wait(Duration::from_secs(90));
    assert_eq!(code, Some(1), "{log}");
    let err = std::fs::read_to_string(&w.err).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: restore the databases of ") && last.contains(&missing),
        "{log}"
    );
    assert_eq!(util::dir_entries(&data), Vec::<String>::new());
}

#[test]
fn ops_dir_restore_on_start_fails_naming_an_unreachable_store() {
    let dir = util::tempdir();
    let d = dir.path();
    let data = d.join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Nothing listens on port 1: connection refused, retried, then the error.
    let yaml = "      url: s3://bucket/tenants?endpoint=http://127.0.0.1:1&region=us-east-1\n";
    let cfg = config(d, &data, "*.db", "", yaml);
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_string(), "x".to_string()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), "y".to_string()),
    ];
    let mut w = Running::start(
        d,
        "boot",
        &[
            "replicate",
            "-restore-if-db-not-exists",
            "-config",
            cfg.to_str().unwrap(),
        ],
        &env,
    );
    let (code, log) = w.wait(Duration::from_secs(120));
    assert_eq!(code, Some(1), "{log}");
    let err = std::fs::read_to_string(&w.err).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.starts_with("error: restore the databases of ")
            && last.contains("s3://bucket/tenants"),
        "{log}"
    );
    assert!(
        log.contains("retrying"),
        "the store was not retried:\n{log}"
    );
    assert_eq!(util::dir_entries(&data), Vec::<String>::new());
}
