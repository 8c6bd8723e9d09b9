//! Store down at start (issue 9): `walstream replicate` starts with its S3 endpoint refusing
//! connections (nothing listens on the port), the app writes and checkpoints (PASSIVE, and
//! TRUNCATE now and then) meanwhile, then a TCP forwarder to moto opens on that port: everything
//! is on the replica within 10 s, the restore equals the source, every app checkpoint succeeded
//! (busy = 0), and `replicate` never exited. Needs moto (scripts/servers/moto.sh).
//!
//! Default suite: 15 s of writes with the store down. `WALSTREAM_STORE_DOWN_SECS=30` for the
//! full figure.
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fleet_util::{checkpoint, commit, create_db, open, restore_digest, Replicator};
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

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Forwards every connection on `127.0.0.1:port` to `upstream` (`host:port`) until dropped.
struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    fn start(port: u16, upstream: String) -> Forwarder {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
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
        Forwarder {
            stop,
            thread: Some(thread),
        }
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

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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

#[test]
fn store_down_at_start_then_up() {
    let moto = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
    let key = env_or_fail("AWS_ACCESS_KEY_ID");
    let secret = env_or_fail("AWS_SECRET_ACCESS_KEY");
    let down_for = Duration::from_secs(
        std::env::var("WALSTREAM_STORE_DOWN_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15),
    );
    let bucket = format!("it-down-{}-{:x}", std::process::id(), rand::random::<u32>());
    create_bucket(&moto, &bucket);
    let port = free_port();
    let url = format!(
        "s3://{bucket}/app.db?endpoint=http://127.0.0.1:{port}&region=us-east-1&forcePathStyle=true"
    );
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    create_db(&db);
    let cfg = dir.path().join("walstream.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      url: {url}\n",
            db.display()
        ),
    )
    .unwrap();
    let env = [
        ("AWS_ACCESS_KEY_ID", key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
    ];
    let mut r = Replicator::start(&cfg, &dir.path().join("walstream.log"), &env, &[]);

    // The store refuses connections: the app writes and checkpoints.
    let c = open(&db);
    let t0 = Instant::now();
    let (mut commits, mut passive, mut truncate) = (0u64, 0u64, 0u64);
    let mut waits = Vec::new();
    while t0.elapsed() < down_for {
        commit(&c, &"x".repeat(200 + (commits as usize % 3000)));
        commits += 1;
        if commits % 20 == 0 {
            let mode = if commits % 100 == 0 {
                "TRUNCATE"
            } else {
                "PASSIVE"
            };
            let w = Instant::now();
            let (busy, log, done) = checkpoint(&c, mode);
            waits.push(w.elapsed());
            assert_eq!(
                busy, 0,
                "{mode} checkpoint busy with the store down (log {log}, checkpointed {done})"
            );
            if mode == "TRUNCATE" {
                truncate += 1;
            } else {
                passive += 1;
            }
        }
        if commits % 50 == 0 {
            r.assert_running();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    r.assert_running();
    drop(c);
    waits.sort();
    let log = r.log_text();
    eprintln!(
        "store down: {commits} commits, {passive} PASSIVE + {truncate} TRUNCATE checkpoints (all busy=0, \
         median wait {:?}, max {:?}) in {:?} with the store refusing connections; {} log lines",
        super::fleet_util::pct(&waits, 50.0),
        waits.last().unwrap(),
        t0.elapsed(),
        log.lines().count()
    );
    let meta_l0 = dir.path().join(".app.db-litestream").join("ltx").join("0");
    let local_files = std::fs::read_dir(&meta_l0).map(|d| d.count()).unwrap_or(0);
    eprintln!(
        "store down: {local_files} L0 files kept locally in {}",
        meta_l0.display()
    );

    // The store comes up.
    let want = util::logical_digest(&db);
    let _fwd = Forwarder::start(port, moto.trim_start_matches("http://").to_string());
    let up = Instant::now();
    let out = dir.path().join("restored.db");
    let mut last;
    loop {
        match restore_digest(&url, &out) {
            Ok(d) if d == want => break,
            Ok(_) => last = "an older state".to_string(),
            Err(e) => last = e,
        }
        r.assert_running();
        assert!(
            up.elapsed() < Duration::from_secs(60),
            "the replica did not reach the source within 60 s of the store's return: {last}\n{}",
            r.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "store down: replica equals the source {:?} after the store came up",
        up.elapsed()
    );
    r.assert_running();
    assert!(
        up.elapsed() <= Duration::from_secs(10),
        "the replica reached the source {:?} after the store's return (bound 10 s)",
        up.elapsed()
    );
    let st = r.stop(Duration::from_secs(30));
    assert!(
        st.is_some_and(|s| s.success()),
        "walstream on SIGTERM: {st:?}\n{}",
        r.log_tail()
    );
}
