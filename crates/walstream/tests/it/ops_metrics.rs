//! Issue 11, operations part 2: Prometheus metrics (parity with Litestream 0.5.17's names and
//! labels, replication gauges), logging (JSON lines, stdout, repeated warnings, no secrets),
//! the heartbeat, and the local backlog cap. Real processes; moto where S3 matters
//! (scripts/servers/moto.sh); the real Litestream via LITESTREAM_BIN.
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fleet_util::{commit, create_db, open, restore_digest, Replicator};
use super::util;

fn env_or_fail(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: this test needs moto. Run scripts/test.sh, or source \
             scripts/servers/lib.sh and scripts/servers/moto.sh"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(host).unwrap();
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.lines().next().unwrap_or("").contains(" 200"),
        "create bucket {bucket}: {resp}"
    );
}

/// `GET http://127.0.0.1:port/metrics` (None while nothing answers).
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    assert!(head.contains(" 200 "), "{head}");
    Some(body.to_string())
}

fn scrape_until(port: u16) -> String {
    let t0 = Instant::now();
    loop {
        if let Some(b) = scrape(port) {
            return b;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "nothing serves :{port}/metrics"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every (name, label names) of the `litestream_*` families in a scrape (histogram series under
/// their family's name, without `le`).
fn families(text: &str) -> BTreeSet<(String, Vec<String>)> {
    let mut histograms = BTreeSet::new();
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(n), Some("histogram")) = (it.next(), it.next()) {
                histograms.insert(n.to_string());
            }
        }
    }
    let mut out = BTreeSet::new();
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = l.find(['{', ' ']).unwrap();
        let mut name = l[..name_end].to_string();
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if histograms.contains(base) {
                    name = base.to_string();
                }
            }
        }
        if !name.starts_with("litestream_") && !name.starts_with("walstream_") {
            continue;
        }
        let mut labels: Vec<String> = Vec::new();
        if l[name_end..].starts_with('{') {
            let inner = &l[name_end + 1..l.rfind('}').unwrap()];
            for part in inner.split("\",") {
                let k = part.split('=').next().unwrap().trim().to_string();
                if k != "le" && !k.is_empty() {
                    labels.push(k);
                }
            }
        }
        labels.sort();
        out.insert((name, labels));
    }
    out
}

/// Sample values by full series text (`name{labels}`).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The value of the one series of `name` whose text contains `having`.
fn value(text: &str, name: &str, having: &str) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|(k, _)| (k == name || k.starts_with(&format!("{name}{{"))) && k.contains(having))
        .map(|(_, v)| v)
}

/// The same workload for both programs: 30 commits of 5 KB, 100 ms apart.
fn workload(db: &Path) {
    let c = open(db);
    for i in 0..30 {
        c.execute(
            "INSERT INTO t(v) VALUES (hex(randomblob(2500)) || ?1)",
            [i.to_string()],
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn s3_config(db: &Path, addr_port: u16, endpoint: &str, bucket: &str) -> String {
    format!(
        "addr: 127.0.0.1:{addr_port}\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    \
         checkpoint-interval: 2s\n    min-checkpoint-page-count: 5\n    replica:\n      \
         url: s3://{bucket}/db\n      endpoint: {endpoint}\n      region: us-east-1\n      \
         force-path-style: true\n",
        db.display()
    )
}

/// Every `litestream_*` name and label set the real Litestream 0.5.17 exports after a workload
/// is exported by walstream after the same workload; during replication walstream's sync count
/// and PUT total grow, the replica TXID reaches the local one and the lag reads 0 within 2 s of
/// the last commit.
#[test]
fn metrics_match_litestream_and_follow_replication() {
    let moto = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
    let key = env_or_fail("AWS_ACCESS_KEY_ID");
    let secret = env_or_fail("AWS_SECRET_ACCESS_KEY");
    let env = [
        ("AWS_ACCESS_KEY_ID", key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let tag = format!("{}-{:x}", std::process::id(), rand::random::<u32>());

    // The real Litestream.
    let dir = util::tempdir();
    let ls_db = dir.path().join("ls.db");
    create_db(&ls_db);
    let ls_bucket = format!("it-metrics-ls-{tag}");
    create_bucket(&moto, &ls_bucket);
    let ls_port = free_port();
    let ls_cfg = dir.path().join("litestream.yml");
    std::fs::write(&ls_cfg, s3_config(&ls_db, ls_port, &moto, &ls_bucket)).unwrap();
    let ls_log = std::fs::File::create(dir.path().join("litestream.log")).unwrap();
    let mut ls = Command::new(util::litestream_bin())
        .args(["replicate", "-config"])
        .arg(&ls_cfg)
        .envs(env)
        .stdout(ls_log.try_clone().unwrap())
        .stderr(ls_log)
        .spawn()
        .unwrap();
    scrape_until(ls_port);
    workload(&ls_db);
    std::thread::sleep(Duration::from_secs(4));
    let ls_text = scrape(ls_port).unwrap();
    let _ = ls.kill();
    let _ = ls.wait();
    let want = families(&ls_text);
    assert!(
        want.contains(&("litestream_sync_count".into(), vec!["db".into()])),
        "Litestream exported no sync count: {ls_text}"
    );

    // walstream, the same workload.
    let db = dir.path().join("ws.db");
    create_db(&db);
    let bucket = format!("it-metrics-ws-{tag}");
    create_bucket(&moto, &bucket);
    let port = free_port();
    let cfg = dir.path().join("walstream.yml");
    std::fs::write(&cfg, s3_config(&db, port, &moto, &bucket)).unwrap();
    let mut r = Replicator::start(&cfg, &dir.path().join("walstream.log"), &env, &[]);
    let first = scrape_until(port);
    let c = open(&db);
    commit(&c, "warm-up");
    std::thread::sleep(Duration::from_millis(1500));
    let before = scrape(port).unwrap();
    let db_label = format!("db=\"{}\"", db.display());
    let syncs0 = value(&before, "litestream_sync_count", &db_label).unwrap_or(0.0);
    let puts0 = value(&before, "litestream_replica_operation_total", "\"PUT\"").unwrap_or(0.0);
    workload(&db);
    let last_commit = Instant::now();
    let during = scrape(port).unwrap();
    let syncs1 = value(&during, "litestream_sync_count", &db_label).unwrap();
    let puts1 = value(&during, "litestream_replica_operation_total", "\"PUT\"").unwrap();
    assert!(
        syncs1 > syncs0,
        "sync count did not grow: {syncs0} -> {syncs1}"
    );
    assert!(puts1 > puts0, "PUT total did not grow: {puts0} -> {puts1}");

    // Caught up: replica TXID = local TXID, lag 0, backlog empty, within 2 s of the last commit.
    let caught_up = loop {
        let t = scrape(port).unwrap();
        let local = value(&t, "litestream_txid", &db_label).unwrap();
        let remote = value(&t, "walstream_replica_txid", &db_label).unwrap();
        let lag = value(&t, "walstream_replica_lag_seconds", &db_label).unwrap();
        if local > 0.0 && local == remote && lag == 0.0 {
            assert_eq!(
                value(&t, "walstream_local_backlog_files", &db_label),
                Some(0.0)
            );
            break last_commit.elapsed();
        }
        assert!(
            last_commit.elapsed() < Duration::from_secs(2),
            "not caught up 2 s after the last commit: local {local}, replica {remote}, lag {lag}\n{}",
            r.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("metrics: replica TXID = local and lag 0 after {caught_up:?}");
    std::thread::sleep(Duration::from_secs(3));
    let got_text = scrape(port).unwrap();
    r.assert_running();
    let got = families(&got_text);
    let missing: Vec<_> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "walstream lacks Litestream's {missing:?}\nLitestream:\n{ls_text}\nwalstream:\n{got_text}"
    );
    for extra in [
        "walstream_replica_lag_seconds",
        "walstream_replica_txid",
        "walstream_local_backlog_files",
        "walstream_local_backlog_bytes",
    ] {
        assert!(
            got.contains(&(extra.to_string(), vec!["db".into(), "replica".into()])),
            "{extra}{{db,replica}} missing:\n{got_text}"
        );
    }
    assert!(first.contains("litestream_db_size"), "{first}");
    eprintln!(
        "metrics: Litestream exported {} families, walstream has them all ({} in all)",
        want.len(),
        got.len()
    );
    let st = r.stop(Duration::from_secs(30));
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", r.log_tail());
}

#[test]
fn metrics_port_in_use_is_one_line_and_nonzero_exit() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    create_db(&db);
    let cfg = dir.path().join("w.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replica:\n      url: {}\n",
            db.display(),
            super::fleet_util::file_url_of(&dir.path().join("replica"))
        ),
    )
    .unwrap();
    let run = util::walstream(&["replicate", "-config", cfg.to_str().unwrap()]);
    let line = run.failure();
    assert!(
        line.contains(&format!("127.0.0.1:{port}")) && line.contains("Address already in use"),
        "{line}"
    );
    assert_eq!(run.code, Some(1));
    assert!(
        !dir.path().join("replica").exists(),
        "replication started before the metrics address was known good"
    );
}

/// A `walstream replicate` whose stdout and stderr are both kept.
fn spawn_both(cfg: &Path, env: &[(&str, &str)], extra: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(util::bin());
    cmd.args(["replicate", "-config"])
        .arg(cfg)
        .args(extra)
        .env_remove("LOG_LEVEL")
        .env_remove("LITESTREAM_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

fn term_and_collect(child: std::process::Child) -> (String, String) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `logging: {type: json, stderr: false}`: every line on stdout is a JSON object with time,
/// level and msg (Litestream's keys); nothing on stderr.
#[test]
fn json_logs_to_stdout_parse_line_by_line() {
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    create_db(&db);
    let cfg = dir.path().join("w.yml");
    std::fs::write(
        &cfg,
        format!(
            "logging:\n  type: json\n  stderr: false\ndbs:\n  - path: {}\n    replica:\n      url: {}\n",
            db.display(),
            super::fleet_util::file_url_of(&dir.path().join("replica"))
        ),
    )
    .unwrap();
    let child = spawn_both(&cfg, &[], &[]);
    let c = open(&db);
    for i in 0..5 {
        commit(&c, &format!("row {i}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));
    let (stdout, stderr) = term_and_collect(child);
    assert!(stderr.trim().is_empty(), "stderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 4, "{stdout}");
    let mut msgs = Vec::new();
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        for k in ["time", "level", "msg"] {
            assert!(v.get(k).is_some_and(|x| x.is_string()), "no {k}: {l}");
        }
        msgs.push(v["msg"].as_str().unwrap().to_string());
    }
    assert!(
        msgs.iter().any(|m| m.starts_with("walstream v")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m == "replicating"), "{msgs:?}");
    assert!(msgs.iter().any(|m| m == "walstream shut down"), "{msgs:?}");
}

/// Secrets from the config (an S3 secret key, a password in an SFTP URL) and the environment
/// never appear in the output, not even at trace level, with requests going through to moto
/// and connections refused.
#[test]
fn secrets_never_logged_even_at_trace() {
    let moto = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
    let bucket = format!(
        "it-secret-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    );
    create_bucket(&moto, &bucket);
    let dir = util::tempdir();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    create_db(&a);
    create_db(&b);
    let s3_secret = "Sup3rS3cretKeyValue-xyzzy";
    let sftp_pw = "Pa55w0rd-plugh";
    let env_secret = "EnvS3cret-frotz-42";
    let closed = free_port();
    let cfg = dir.path().join("w.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: s3://{bucket}/a\n      endpoint: {moto}\n      \
             region: us-east-1\n      force-path-style: true\n      access-key-id: AKIDEXAMPLE\n      \
             secret-access-key: {s3_secret}\n  - path: {}\n    replica:\n      \
             url: sftp://user:{sftp_pw}@127.0.0.1:{closed}/backups/b\n",
            a.display(),
            b.display()
        ),
    )
    .unwrap();
    let child = spawn_both(
        &cfg,
        &[
            ("AWS_SECRET_ACCESS_KEY", env_secret),
            ("AWS_ACCESS_KEY_ID", "x"),
        ],
        &["-log-level", "trace"],
    );
    let ca = open(&a);
    let cb = open(&b);
    for i in 0..10 {
        commit(&ca, &format!("a {i}"));
        commit(&cb, &format!("b {i}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let (stdout, stderr) = term_and_collect(child);
    let all = format!("{stdout}{stderr}");
    assert!(
        all.lines().count() > 50,
        "trace level printed little:\n{all}"
    );
    assert!(
        all.contains("127.0.0.1") && all.to_lowercase().contains("sftp"),
        "the SFTP replica's failure is reported"
    );
    for s in [s3_secret, sftp_pw, env_secret] {
        let hits: Vec<&str> = all.lines().filter(|l| l.contains(s)).take(3).collect();
        assert!(hits.is_empty(), "secret {s:?} logged:\n{}", hits.join("\n"));
    }
    eprintln!(
        "secrets: {} lines at trace level, no secret in them",
        all.lines().count()
    );
}

/// A tiny HTTP server that counts requests (answering 200, or closing without answering).
struct PingServer {
    port: u16,
    count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl PingServer {
    fn start(answer: bool) -> PingServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let port = l.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (count.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let mut buf = [0u8; 4096];
                        let n = conn.read(&mut buf).unwrap_or(0);
                        if String::from_utf8_lossy(&buf[..n]).starts_with("GET /ping") {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                        if answer {
                            let _ = conn.write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                            );
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        PingServer { port, count, stop }
    }
    fn pings(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for PingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn heartbeat_config(dir: &Path, db: &Path, url: &str, replica_url: &str) -> std::path::PathBuf {
    let cfg = dir.join("w.yml");
    std::fs::write(
        &cfg,
        format!(
            "heartbeat-url: {url}\ndbs:\n  - path: {}\n    replica:\n      url: {replica_url}\n",
            db.display()
        ),
    )
    .unwrap();
    cfg
}

/// Pings while the database replicates (and while it is idle); none while its store is down.
#[test]
fn heartbeat_pings_only_while_healthy() {
    // Healthy: a file replica, written, then idle.
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    create_db(&db);
    let srv = PingServer::start(true);
    let url = format!("http://127.0.0.1:{}/ping", srv.port);
    let cfg = heartbeat_config(
        dir.path(),
        &db,
        &url,
        &super::fleet_util::file_url_of(&dir.path().join("replica")),
    );
    let env = [("WALSTREAM_HEARTBEAT_INTERVAL", "1s")];
    let mut r = Replicator::start(&cfg, &dir.path().join("w.log"), &env, &[]);
    let c = open(&db);
    for i in 0..10 {
        commit(&c, &format!("row {i}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    r.assert_running();
    let healthy = srv.pings();
    assert!(
        (3..=8).contains(&healthy),
        "{healthy} pings in ~6 s at a 1 s interval\n{}",
        r.log_tail()
    );
    drop(r);

    // Store down (S3 on a port that refuses connections), database written: no ping.
    let dir2 = util::tempdir();
    let db2 = dir2.path().join("app.db");
    create_db(&db2);
    let srv2 = PingServer::start(true);
    let url2 = format!("http://127.0.0.1:{}/ping", srv2.port);
    let closed = free_port();
    let cfg2 = heartbeat_config(
        dir2.path(),
        &db2,
        &url2,
        &format!(
            "s3://b/app?endpoint=http://127.0.0.1:{closed}&region=us-east-1&forcePathStyle=true"
        ),
    );
    let env2 = [
        ("WALSTREAM_HEARTBEAT_INTERVAL", "1s"),
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "y"),
    ];
    let mut r2 = Replicator::start(&cfg2, &dir2.path().join("w.log"), &env2, &[]);
    let c2 = open(&db2);
    for i in 0..10 {
        commit(&c2, &format!("row {i}"));
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(4));
    r2.assert_running();
    assert_eq!(
        srv2.pings(),
        0,
        "pinged with the store down\n{}",
        r2.log_tail()
    );
    eprintln!("heartbeat: {healthy} pings healthy, 0 with the store down");
}

/// A heartbeat URL that does not answer: one warning line (repeats held back, counted), and
/// replication goes on. With the store down, its warning is printed once too.
#[test]
fn heartbeat_not_answering_warns_once_and_repeats_are_rate_limited() {
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    create_db(&db);
    let srv = PingServer::start(false);
    let url = format!("http://127.0.0.1:{}/ping", srv.port);
    let replica = dir.path().join("replica");
    let cfg = heartbeat_config(
        dir.path(),
        &db,
        &url,
        &super::fleet_util::file_url_of(&replica),
    );
    let env = [
        ("WALSTREAM_HEARTBEAT_INTERVAL", "300ms"),
        ("WALSTREAM_LOG_REPEAT_WINDOW", "3s"),
    ];
    let mut r = Replicator::start(&cfg, &dir.path().join("w.log"), &env, &[]);
    let c = open(&db);
    let t0 = Instant::now();
    let mut n = 0;
    while t0.elapsed() < Duration::from_millis(4500) {
        commit(&c, &format!("row {n}"));
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    r.assert_running();
    let log = r.log_text();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("heartbeat failed"))
        .collect();
    assert!(
        srv.pings() >= 8,
        "{} attempts reached the server",
        srv.pings()
    );
    assert!(
        (1..=2).contains(&warnings.len()),
        "{} attempts, {} warning lines:\n{}",
        srv.pings(),
        warnings.len(),
        warnings.join("\n")
    );
    assert!(
        !warnings[0].contains("repeated="),
        "the first warning is not a repeat: {}",
        warnings[0]
    );
    if let Some(w) = warnings.get(1) {
        assert!(w.contains("repeated="), "{w}");
    }
    // Replication went on: a restore holds every row.
    let st = r.stop(Duration::from_secs(30));
    assert!(st.is_some_and(|s| s.success()), "{st:?}");
    let out = dir.path().join("restored.db");
    let got = restore_digest(&super::fleet_util::file_url_of(&replica), &out).unwrap();
    assert_eq!(got, util::logical_digest(&db));
}

/// max-local-backlog: with the store refusing connections, the backlog passes a small cap, is
/// dropped (a warning says so), and the meta directory stops growing; when the store is back,
/// one snapshot replaces it and a restore equals the source.
#[test]
fn backlog_over_cap_is_dropped_and_replaced_by_a_snapshot() {
    let moto = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
    let key = env_or_fail("AWS_ACCESS_KEY_ID");
    let secret = env_or_fail("AWS_SECRET_ACCESS_KEY");
    let bucket = format!(
        "it-backlog-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    );
    create_bucket(&moto, &bucket);
    let port = free_port();
    let url = format!(
        "s3://{bucket}/app.db?endpoint=http://127.0.0.1:{port}&region=us-east-1&forcePathStyle=true"
    );
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    create_db(&db);
    let cap: u64 = 256 * 1024;
    let mport = free_port();
    let cfg = dir.path().join("w.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{mport}\nmax-local-backlog: 256KiB\ndbs:\n  - path: {}\n    replica:\n      url: {url}\n",
            db.display()
        ),
    )
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let mut r = Replicator::start(&cfg, &dir.path().join("w.log"), &env, &[]);
    let meta = dir.path().join(".app.db-litestream").join("ltx");
    let l0_bytes = || -> u64 {
        std::fs::read_dir(meta.join("0"))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let c = open(&db);
    let t0 = Instant::now();
    let mut written = 0u64;
    let mut peak = 0u64;
    let mut sizes = Vec::new();
    while t0.elapsed() < Duration::from_secs(10) {
        // ~8 KB of new pages a commit: about 1 MB in all, four times the cap.
        c.execute("INSERT INTO t(v) VALUES (hex(randomblob(4000)))", [])
            .unwrap();
        written += 8000;
        std::thread::sleep(Duration::from_millis(80));
        let b = l0_bytes();
        peak = peak.max(b);
        sizes.push(b);
        r.assert_running();
    }
    let log = r.log_text();
    assert!(written > 3 * cap, "wrote only {written} bytes");
    assert!(
        log.contains("past max-local-backlog"),
        "no warning before the cap:\n{}",
        r.log_tail()
    );
    assert!(
        log.contains("local backlog over max-local-backlog: dropped it"),
        "backlog not dropped:\n{}",
        r.log_tail()
    );
    // Bounded: the cap plus one sync's file (a commit's pages) at most, never the ~1 MB written.
    assert!(
        peak <= cap + 64 * 1024,
        "meta directory L0 reached {peak} bytes (cap {cap}); sizes {sizes:?}"
    );
    let tail = &sizes[sizes.len() / 2..];
    assert!(
        tail.iter().all(|b| *b <= cap + 64 * 1024),
        "disk use kept growing: {tail:?}"
    );

    // The gauges during the outage: a backlog, a lag of seconds, nothing on the replica.
    let db_label = format!("db=\"{}\"", db.display());
    let t = scrape_until(mport);
    let lag = value(&t, "walstream_replica_lag_seconds", &db_label).unwrap();
    let files = value(&t, "walstream_local_backlog_files", &db_label).unwrap();
    let bytes = value(&t, "walstream_local_backlog_bytes", &db_label).unwrap();
    assert!(
        lag > 0.0 && files >= 1.0 && bytes > 0.0 && bytes <= (cap + 64 * 1024) as f64,
        "outage gauges: lag {lag}, files {files}, bytes {bytes}\n{t}"
    );
    assert_eq!(value(&t, "walstream_replica_txid", &db_label), Some(0.0));

    // The store comes up: one snapshot replaces the backlog, the replica reaches the source.
    let want = util::logical_digest(&db);
    let _fwd = Forwarder::start(port, moto.trim_start_matches("http://").to_string());
    let up = Instant::now();
    let out = dir.path().join("restored.db");
    loop {
        match restore_digest(&url, &out) {
            Ok(d) if d == want => break,
            _ => {}
        }
        r.assert_running();
        assert!(
            up.elapsed() < Duration::from_secs(30),
            "replica did not reach the source within 30 s of the store's return\n{}",
            r.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Caught up: the lag and the backlog read 0.
    let t0 = Instant::now();
    loop {
        let t = scrape(mport).unwrap();
        if value(&t, "walstream_replica_lag_seconds", &db_label) == Some(0.0)
            && value(&t, "walstream_local_backlog_files", &db_label) == Some(0.0)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "gauges after the return:\n{t}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = r.log_text();
    assert!(
        log.contains("a snapshot replaces the dropped backlog")
            && log.contains("taking a full snapshot into L0"),
        "{}",
        r.log_tail()
    );
    eprintln!(
        "backlog: {written} bytes written with the store down, L0 peak {peak} (cap {cap}); replica = source {:?} after the store came up",
        up.elapsed()
    );
    let st = r.stop(Duration::from_secs(30));
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", r.log_tail());
}

/// Forwards connections on `127.0.0.1:port` to `upstream` until dropped (the store coming up).
struct Forwarder {
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    fn start(port: u16, upstream: String) -> Forwarder {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((down, _)) => {
                        let _ = down.set_nonblocking(false);
                        let Ok(up) = TcpStream::connect(&upstream) else {
                            continue;
                        };
                        let (d2, u2) = (down.try_clone().unwrap(), up.try_clone().unwrap());
                        std::thread::spawn(move || pipe(down, up));
                        std::thread::spawn(move || pipe(u2, d2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Forwarder { stop }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
