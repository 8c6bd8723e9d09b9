//! Outside interference, through the real binary: a second walstream on the same replica (the
//! lease, on the file backend and on moto), the database or its WAL changed behind walstream's
//! back, and a full local disk (a file-size limit on the running process).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::harness::Replicator;
use super::util::{self, source_digest};

/// The environment for walstream: moto's when `s3`, nothing otherwise.
fn env(s3: bool) -> Vec<(String, String)> {
    if !s3 {
        return Vec::new();
    }
    ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .map(|k| (k.to_string(), env_or_fail(k)))
        .collect()
}

fn env_or_fail(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the S3 interference tests need moto. Run scripts/test.sh, or \
             `source scripts/servers/lib.sh; source scripts/servers/moto.sh`"
        ),
    }
}

fn command(program: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn run(program: &Path, args: &[&str], env: &[(String, String)]) -> util::Run {
    let out = command(program, args, env).output().unwrap();
    util::Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("{} {}", program.display(), args.join(" ")),
    }
}

/// `walstream replicate -config <cfg>` with `env`, logging to `log`.
fn start(cfg: &Path, env: &[(String, String)], log: &Path) -> Replicator {
    Replicator::walstream(&["replicate", "-config", cfg.to_str().unwrap()])
        .env(env)
        .start(log)
}

fn create_db(db: &Path) {
    let c = Connection::open(db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
}

/// One transaction of `rows` rows tagged `tag`.
fn write_rows(db: &Path, tag: &str, rows: u32) {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("{tag}-{i}-{}", "x".repeat(200))],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Restores `replica` into `out` with walstream; `None` if the restore failed. A restore that
/// succeeds must pass the integrity check.
fn restore(replica: &str, env: &[(String, String)], out: &Path) -> Option<String> {
    util::remove_db(out);
    let r = run(
        &util::bin(),
        &["restore", "-o", out.to_str().unwrap(), replica],
        env,
    );
    if r.code != Some(0) {
        return None;
    }
    assert_eq!(
        util::integrity(out),
        "ok",
        "restore of {replica} is corrupt"
    );
    Some(util::logical_digest(out))
}

/// Polls restores until the content equals `db`'s.
fn wait_caught_up(replica: &str, env: &[(String, String)], db: &Path, p: &mut Replicator) {
    let want = source_digest(db);
    let out = db.with_extension("caught-up.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        p.assert_running();
        if restore(replica, env, &out).as_deref() == Some(want.as_str()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{replica} did not catch up with {} within 60 s; log:\n{}",
            db.display(),
            p.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Restores with Litestream 0.5.17 too (the lease object must not bother it): same content.
fn litestream_restores(replica: &str, env: &[(String, String)], db: &Path, dir: &Path) {
    let out = dir.join("litestream-restored.db");
    util::remove_db(&out);
    let mut ls_env: Vec<(String, String)> = env.to_vec();
    ls_env.retain(|(k, _)| k != "AWS_CA_BUNDLE");
    run(
        &util::litestream_bin(),
        &["restore", "-o", out.to_str().unwrap(), replica],
        &ls_env,
    )
    .success();
    assert_eq!(util::integrity(&out), "ok");
    assert_eq!(util::logical_digest(&out), source_digest(db));
}

/// A replica for the two-writer tests: a directory, or a fresh bucket on moto.
struct Target {
    s3: bool,
    url: String,
    /// file: the directory; s3: the bucket.
    place: String,
}

impl Target {
    fn new(s3: bool, dir: &Path, tag: &str) -> Target {
        if !s3 {
            let d = dir.join("replica");
            std::fs::create_dir_all(&d).unwrap();
            return Target {
                s3,
                url: util::file_url(&d),
                place: d.display().to_string(),
            };
        }
        let endpoint = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let bucket = format!("it-{tag}-{}-{nanos:x}", std::process::id());
        http(&endpoint, "PUT", &format!("/{bucket}"));
        Target {
            s3,
            url: format!(
                "s3://{bucket}/app?endpoint={endpoint}&region=us-east-1&forcePathStyle=true"
            ),
            place: bucket,
        }
    }

    /// Every replica object (key relative to the replica, size), sorted; the lease excluded.
    fn objects(&self) -> Vec<(String, u64)> {
        let mut v = if self.s3 {
            let endpoint = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
            let body = http(&endpoint, "GET", &format!("/{}?list-type=2", self.place));
            body.split("<Contents>")
                .skip(1)
                .map(|c| {
                    let tag = |t: &str| {
                        c.split(&format!("<{t}>"))
                            .nth(1)
                            .and_then(|r| r.split(&format!("</{t}>")).next())
                            .unwrap_or("")
                            .to_string()
                    };
                    (tag("Key"), tag("Size").parse().unwrap_or(0))
                })
                .collect()
        } else {
            let mut v = Vec::new();
            walk(Path::new(&self.place), Path::new(&self.place), &mut v);
            v
        };
        v.retain(|(k, _)| !k.contains(".walstream/"));
        v.sort();
        v
    }

    fn config(&self, db: &Path, ttl: &str) -> String {
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {}\n      lease-ttl: {ttl}\n",
            db.display(),
            self.url
        )
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            out.push((rel, e.metadata().unwrap().len()));
        }
    }
}

/// One unsigned HTTP/1.1 request to moto; returns the body (asserts a 2xx status).
fn http(endpoint: &str, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("{host}: {e}"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.lines().next().unwrap_or("").to_string();
    assert!(status.contains(" 200"), "{method} {path}: {resp}");
    resp.split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string()
}

/// A failed run's `error: ...` line (the process logs before it).
#[track_caller]
fn error_line(r: &util::Run) -> String {
    assert!(
        r.code.is_some_and(|c| c != 0),
        "{} should have failed:\n{}",
        r.cmdline,
        r.stderr
    );
    r.stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("{}: no error line in:\n{}", r.cmdline, r.stderr))
        .to_string()
}

fn owner_token(db: &Path) -> String {
    let meta = db.with_file_name(format!(
        ".{}-litestream",
        db.file_name().unwrap().to_string_lossy()
    ));
    std::fs::read_to_string(meta.join("walstream-lease-owner"))
        .unwrap()
        .trim()
        .to_string()
}

/// A second walstream (other database, other meta directory) on A's replica refuses, naming the
/// replica and A's owner, and writes nothing; A's replica restores to A's content exactly.
/// After A is killed with SIGKILL, B is still refused until the TTL has passed, then takes over.
fn two_writers(s3: bool) {
    let dir = util::tempdir();
    let env = env(s3);
    let target = Target::new(s3, dir.path(), "lease");
    let (da, db_) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db_).unwrap();
    let (a, b) = (da.join("app.db"), db_.join("app.db"));
    create_db(&a);
    create_db(&b);
    write_rows(&a, "a0", 50);
    write_rows(&b, "b0", 70);
    let ttl = 3;
    let cfg_a = dir.path().join("a.yml");
    let cfg_b = dir.path().join("b.yml");
    std::fs::write(&cfg_a, target.config(&a, &format!("{ttl}s"))).unwrap();
    std::fs::write(&cfg_b, target.config(&b, &format!("{ttl}s"))).unwrap();

    let mut pa = start(&cfg_a, &env, &dir.path().join("a.log"));
    wait_caught_up(&target.url, &env, &a, &mut pa);
    let token_a = owner_token(&a);

    let before = target.objects();
    let started = Instant::now();
    let refused = run(
        &util::bin(),
        &["replicate", "-config", cfg_b.to_str().unwrap()],
        &env,
    );
    let line = error_line(&refused);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "refusing took {:?}",
        started.elapsed()
    );
    assert!(
        line.contains("is leased to") && line.contains(&token_a) && line.contains(&target.place),
        "refusal should name the replica and A's owner ({token_a}): {line}"
    );
    assert!(line.contains(&a.display().to_string()), "{line}");
    write_rows(&a, "a1", 40);
    wait_caught_up(&target.url, &env, &a, &mut pa);
    let after = target.objects();
    assert!(
        before.iter().all(|o| after.contains(o)),
        "objects vanished while B was refused: {before:?} -> {after:?}"
    );
    let out = dir.path().join("check.db");
    assert_eq!(
        restore(&target.url, &env, &out),
        Some(source_digest(&a)),
        "the replica must hold exactly A's content"
    );
    eprintln!(
        "two_writers(s3={s3}): {} objects after A's writes, refusal in {:?}",
        after.len(),
        started.elapsed()
    );

    // A dies without releasing: B is refused until the TTL has run out.
    pa.kill9();
    let killed = Instant::now();
    let early = run(
        &util::bin(),
        &["replicate", "-config", cfg_b.to_str().unwrap()],
        &env,
    );
    if killed.elapsed() < Duration::from_secs(ttl - 1) {
        assert!(
            error_line(&early).contains("is leased to"),
            "{}",
            early.stderr
        );
    }
    assert_eq!(target.objects(), after, "a refused B wrote to the replica");
    std::thread::sleep(Duration::from_secs(ttl).saturating_sub(killed.elapsed()));
    let mut pb = start(&cfg_b, &env, &dir.path().join("b.log"));
    pb.wait_for_log("taking over an expired lease", Duration::from_secs(30));
    wait_caught_up(&target.url, &env, &b, &mut pb);
    write_rows(&b, "b1", 30);
    wait_caught_up(&target.url, &env, &b, &mut pb);
    let log = pb.stop().log;
    assert!(log.contains("lease released"), "{log}");
    eprintln!(
        "two_writers(s3={s3}): B took over {:?} after the kill; {} objects at the end",
        killed.elapsed(),
        target.objects().len()
    );
    litestream_restores(&target.url, &env, &b, dir.path());
}

#[test]
fn interference_two_writers_file_second_refused_then_takes_over_after_ttl() {
    two_writers(false);
}

#[test]
fn interference_two_writers_s3_second_refused_then_takes_over_after_ttl() {
    two_writers(true);
}

/// The same database restarted right after SIGKILL proves it is the same owner (the token in its
/// meta directory) and takes the lease back at once, without waiting for the TTL.
#[test]
fn interference_same_db_restarted_after_kill9_takes_lease_back_at_once() {
    let dir = util::tempdir();
    let target = Target::new(false, dir.path(), "same");
    let a = dir.path().join("app.db");
    create_db(&a);
    write_rows(&a, "a0", 20);
    let cfg = dir.path().join("a.yml");
    std::fs::write(&cfg, target.config(&a, "60s")).unwrap();
    let mut p = start(&cfg, &[], &dir.path().join("a.log"));
    wait_caught_up(&target.url, &[], &a, &mut p);
    p.kill9();
    let log = dir.path().join("a2.log");
    let mut p = start(&cfg, &[], &log);
    p.wait_for_log(
        "taking back our own unexpired lease",
        Duration::from_secs(20),
    );
    write_rows(&a, "a1", 20);
    wait_caught_up(&target.url, &[], &a, &mut p);
    p.stop();
}

/// A stalled holder (SIGSTOP past its TTL) is replaced; when it wakes up its renewal loses the
/// conditional write, it logs the new owner and writes nothing more, and the replica holds the
/// new owner's database.
#[test]
fn interference_stalled_holder_is_fenced_after_takeover() {
    let dir = util::tempdir();
    let target = Target::new(false, dir.path(), "fence");
    let (da, db_) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&da).unwrap();
    std::fs::create_dir_all(&db_).unwrap();
    let (a, b) = (da.join("app.db"), db_.join("app.db"));
    create_db(&a);
    create_db(&b);
    write_rows(&a, "a0", 30);
    write_rows(&b, "b0", 60);
    let cfg_a = dir.path().join("a.yml");
    let cfg_b = dir.path().join("b.yml");
    std::fs::write(&cfg_a, target.config(&a, "2s")).unwrap();
    std::fs::write(&cfg_b, target.config(&b, "2s")).unwrap();
    let mut pa = start(&cfg_a, &[], &dir.path().join("a.log"));
    wait_caught_up(&target.url, &[], &a, &mut pa);
    pa.signal(libc::SIGSTOP);
    write_rows(&a, "a1", 30);
    std::thread::sleep(Duration::from_millis(2500));
    let mut pb = start(&cfg_b, &[], &dir.path().join("b.log"));
    pb.wait_for_log("taking over an expired lease", Duration::from_secs(20));
    wait_caught_up(&target.url, &[], &b, &mut pb);
    let token_b = owner_token(&b);
    pa.signal(libc::SIGCONT);
    pa.wait_for_log("lease lost", Duration::from_secs(20));
    let log_a = pa.log();
    assert!(log_a.contains(&token_b), "A's log should name B:\n{log_a}");
    // A keeps running but writes nothing more.
    let settled = target.objects();
    write_rows(&a, "a2", 30);
    std::thread::sleep(Duration::from_secs(3));
    pa.assert_running();
    write_rows(&b, "b1", 10);
    wait_caught_up(&target.url, &[], &b, &mut pb);
    let now = target.objects();
    assert!(
        settled.iter().all(|o| now.contains(o)),
        "a file B wrote was replaced or removed after the takeover: {settled:?} -> {now:?}"
    );
    pb.stop();
    drop(pa);
    litestream_restores(&target.url, &[], &b, dir.path());
}

/// A database with walstream on a file replica, for the single-writer interference tests.
struct Solo {
    dir: tempfile::TempDir,
    db: PathBuf,
    cfg: PathBuf,
    url: String,
    logs: u32,
}

impl Solo {
    fn new() -> Solo {
        let dir = util::tempdir();
        let target = Target::new(false, dir.path(), "solo");
        let db = dir.path().join("app.db");
        create_db(&db);
        let cfg = dir.path().join("walstream.yml");
        std::fs::write(&cfg, target.config(&db, "30s")).unwrap();
        Solo {
            url: target.url,
            dir,
            db,
            cfg,
            logs: 0,
        }
    }

    fn start(&mut self) -> Replicator {
        self.logs += 1;
        let log = self.dir.path().join(format!("run{}.log", self.logs));
        start(&self.cfg, &[], &log)
    }

    /// Waits until the replica restores to the database's content.
    fn caught_up(&self, p: &mut Replicator) {
        wait_caught_up(&self.url, &[], &self.db, p);
    }

    fn wal(&self) -> PathBuf {
        let mut w = self.db.as_os_str().to_owned();
        w.push("-wal");
        PathBuf::from(w)
    }

    /// The final checks: the restore equals the source and passes the integrity check, and
    /// Litestream restores the same.
    fn check_restore(&self) {
        let out = self.dir.path().join("final.db");
        assert_eq!(
            restore(&self.url, &[], &out),
            Some(source_digest(&self.db)),
            "restore differs from the source"
        );
        litestream_restores(&self.url, &[], &self.db, self.dir.path());
    }
}

/// While walstream is down the app writes, and its last connection checkpoints and deletes the
/// WAL: the recorded position points into a WAL that is gone, and the writes are only in the
/// database file. On restart walstream must notice and snapshot.
#[test]
fn interference_wal_deleted_while_down_snapshot_on_restart() {
    let mut s = Solo::new();
    write_rows(&s.db, "w0", 50);
    let mut p = s.start();
    s.caught_up(&mut p);
    write_rows(&s.db, "w1", 20);
    s.caught_up(&mut p);
    p.stop();
    write_rows(&s.db, "down", 40);
    // write_rows closed the only connection: SQLite checkpointed and removed the WAL.
    assert!(!s.wal().exists(), "the WAL should be gone");
    let mut p = s.start();
    s.caught_up(&mut p);
    write_rows(&s.db, "w2", 10);
    s.caught_up(&mut p);
    let log = p.stop().log;
    assert!(
        log.contains("snapshot"),
        "walstream should log the snapshot:\n{log}"
    );
    s.check_restore();
}

/// While walstream is down the app writes, checkpoints with TRUNCATE (the frames move to the
/// database, the WAL restarts with salt-1 + 1) and writes more into the new WAL generation, with
/// its connection still open. The new generation looks like the next one after walstream's
/// position, but the frames in between were never copied: walstream must snapshot, not
/// continue.
#[test]
fn interference_truncate_checkpoint_while_down_then_writes() {
    let mut s = Solo::new();
    write_rows(&s.db, "t0", 50);
    let mut p = s.start();
    s.caught_up(&mut p);
    write_rows(&s.db, "t1", 20);
    s.caught_up(&mut p);
    // An app connection that stays open (so the WAL is not removed at close).
    let app = Connection::open(&s.db).unwrap();
    app.busy_timeout(Duration::from_secs(5)).unwrap();
    app.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    p.stop();
    app.execute("INSERT INTO t(v) VALUES ('down-before-truncate')", [])
        .unwrap();
    let (busy, _, _): (i64, i64, i64) = app
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0, "TRUNCATE checkpoint was blocked");
    app.execute("INSERT INTO t(v) VALUES ('down-after-truncate')", [])
        .unwrap();
    let mut p = s.start();
    s.caught_up(&mut p);
    app.execute("INSERT INTO t(v) VALUES ('up-again')", [])
        .unwrap();
    s.caught_up(&mut p);
    drop(app);
    let log = p.stop().log;
    assert!(
        log.contains("snapshot"),
        "walstream should log the snapshot:\n{log}"
    );
    s.check_restore();
}

/// While walstream runs, the app swaps in another database file (rename over, old `-wal`/`-shm`
/// removed) and writes to it: walstream notices the new file, snapshots it, and the replica
/// restores the new database, not a mix.
#[test]
fn interference_database_replaced_while_running() {
    let mut s = Solo::new();
    write_rows(&s.db, "old", 50);
    let mut p = s.start();
    s.caught_up(&mut p);
    let other = s.dir.path().join("other.db");
    create_db(&other);
    write_rows(&other, "new", 30);
    {
        // Fully checkpointed, so the file alone is the database.
        let c = Connection::open(&other).unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    }
    util::remove_sidecars(&other);
    std::fs::rename(&other, &s.db).unwrap();
    util::remove_sidecars(&s.db);
    write_rows(&s.db, "after", 10);
    s.caught_up(&mut p);
    write_rows(&s.db, "after2", 10);
    s.caught_up(&mut p);
    let log = p.stop().log;
    assert!(
        log.contains("replaced"),
        "walstream should log the replacement:\n{log}"
    );
    let c = Connection::open(&s.db).unwrap();
    let old: i64 = c
        .query_row("SELECT COUNT(*) FROM t WHERE v LIKE 'old-%'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(old, 0, "the source is the new database");
    drop(c);
    s.check_restore();
}

/// While walstream runs, the database is deleted (with its `-wal` and `-shm`) and created anew:
/// walstream follows the new file and the replica restores it.
#[test]
fn interference_database_deleted_and_recreated_while_running() {
    let mut s = Solo::new();
    write_rows(&s.db, "first", 40);
    let mut p = s.start();
    s.caught_up(&mut p);
    std::fs::remove_file(&s.db).unwrap();
    util::remove_sidecars(&s.db);
    create_db(&s.db);
    write_rows(&s.db, "second", 25);
    s.caught_up(&mut p);
    write_rows(&s.db, "second-more", 5);
    s.caught_up(&mut p);
    p.stop();
    s.check_restore();
}

/// The local disk fills up (a file-size limit on the running walstream, so its writes fail with
/// EFBIG): no corruption, a clear error naming the file, and once space returns replication
/// catches up.
#[test]
fn interference_local_disk_full_then_recovers() {
    let mut s = Solo::new();
    write_rows(&s.db, "d0", 20);
    let mut p = s.start();
    s.caught_up(&mut p);
    let pid = p.pid().to_string();
    let limit = 64 * 1024;
    let r = run(
        Path::new("prlimit"),
        &["--pid", &pid, &format!("--fsize={limit}:")],
        &[],
    );
    r.success();
    let before = source_digest(&s.db);
    // Each transaction is far larger than the limit, even compressed, so no L0 file of it can
    // be written.
    let app = Connection::open(&s.db).unwrap();
    app.busy_timeout(Duration::from_secs(5)).unwrap();
    for _ in 0..3 {
        app.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300) \
             INSERT INTO t(v) SELECT randomblob(1000) FROM n",
            [],
        )
        .unwrap();
    }
    drop(app);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.log().contains("File too large") {
        assert!(
            Instant::now() < deadline,
            "no EFBIG error logged:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    p.assert_running();
    let log = p.log();
    let line = log
        .lines()
        .find(|l| l.contains("File too large"))
        .unwrap()
        .to_string();
    assert!(
        line.contains(&s.dir.path().display().to_string()),
        "the error should name the file: {line}"
    );
    // The replica is still sound: it restores to the state before the disk filled up.
    let out = s.dir.path().join("during.db");
    assert_eq!(restore(&s.url, &[], &out), Some(before));
    eprintln!("disk full: first error: {line}");
    run(
        Path::new("prlimit"),
        &["--pid", &pid, "--fsize=unlimited:"],
        &[],
    )
    .success();
    let back = Instant::now();
    s.caught_up(&mut p);
    eprintln!(
        "disk full: caught up {:?} after the limit was lifted",
        back.elapsed()
    );
    write_rows(&s.db, "d1", 10);
    s.caught_up(&mut p);
    p.stop();
    s.check_restore();
}
