//! Flaky HTTP (issue 9): the `walstream` binary against moto behind [`FaultProxy`], which answers
//! with bytes that are not HTTP ([`Fault::Garbage`]), resets connections ([`Fault::Reset`]), cuts
//! bodies short, `Content-Length` and chunked ([`Fault::Cut`]), and leaves junk on a kept-alive
//! connection after a response, which the client's next request reads as its answer
//! ([`Fault::Junk`]: "invalid HTTP version parsed"). Each kind is injected at least
//! [`AT_LEAST`] times in each phase, counted at the proxy:
//!
//! - restore: every restore exits 0 and equals the source;
//! - replication: `replicate` runs while the app commits; it never exits, and once the faults
//!   stop everything reaches the replica and a restore equals the source;
//! - start: the faults are on before `replicate` starts (its lease and first listings hit them);
//!   it never exits and catches up once they stop.
//!
//! These need moto: run `scripts/test.sh` (it sets `WALSTREAM_TEST_S3_ENDPOINT`).
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use walstream::restore::{self, RestoreOptions, Target};
use walstream::storage::DynStore;

use super::fault_proxy::{Fault, FaultConfig, FaultProxy};
use super::faults::{app_db, commit, moto, new_bucket, s3_url, Replicator};
use super::util::{logical_digest, tempdir, walstream};

/// Each fault kind, at least this many times per phase.
const AT_LEAST: usize = 20;

/// The kinds counted per phase.
const KINDS: [Fault; 4] = [Fault::Garbage, Fault::Reset, Fault::Cut, Fault::Junk];

/// Every kind at a rate that reaches [`AT_LEAST`] quickly, yet low enough that a bounded
/// restore (6 attempts per call) never meets six faults in a row: about one request in five
/// fails, so six in a row is about 1 in 15,000.
fn flaky(seed: u64) -> FaultConfig {
    FaultConfig {
        enabled: true,
        garbage: 0.04,
        reset: 0.04,
        junk: 0.05,
        // Cuts need a body (a listing or a GET); a HEAD, PUT or DELETE picked is dropped instead.
        cut: 0.12,
        cut_fraction: 0.5,
        chunked_listings: true,
        seed,
        ..FaultConfig::default()
    }
}

/// For a running `replicate`, which retries without end: more cuts, since few of its responses
/// have a body (its listings; its uploads answer with none, so a cut picked for them is a drop).
fn flaky_live(seed: u64) -> FaultConfig {
    FaultConfig {
        garbage: 0.05,
        reset: 0.05,
        junk: 0.1,
        cut: 0.25,
        ..flaky(seed)
    }
}

fn enough(proxy: &FaultProxy) -> bool {
    KINDS.iter().all(|k| proxy.count(*k) >= AT_LEAST)
}

fn assert_enough(proxy: &FaultProxy, phase: &str) {
    for k in KINDS {
        let n = proxy.count(k);
        assert!(
            n >= AT_LEAST,
            "{phase}: {k:?} injected {n} times, want >= {AT_LEAST} ({})",
            proxy.counts()
        );
    }
    // The junk was read as an answer at least once (the client reused the connection).
    assert!(
        proxy.count(Fault::JunkHit) > 0,
        "{phase}: no request read the junk ({})",
        proxy.counts()
    );
}

/// `walstream replicate -config` to `url`, with short compaction levels so that the history task
/// lists the store (GETs with bodies) while it runs.
fn start_replicate(db: &Path, url: &str, log: &Path) -> Replicator {
    let cfg = log.with_extension("yml");
    std::fs::write(
        &cfg,
        format!(
            "levels:\n  - interval: 500ms\n  - interval: 1s\n  - interval: 2s\nsnapshot:\n  interval: 1h\n  retention: 1h\n\
             dbs:\n  - path: {}\n    replica:\n      url: \"{url}\"\n      sync-interval: 200ms\n",
            db.display()
        ),
    )
    .unwrap();
    let f = std::fs::File::create(log).unwrap();
    let child = Command::new(super::util::bin())
        .args(["replicate", "-log-level", "debug", "-config"])
        .arg(&cfg)
        .env("WALSTREAM_S3_READ_TIMEOUT", "2s")
        .env_remove("LITESTREAM_CONFIG")
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    Replicator {
        child,
        log: log.to_path_buf(),
    }
}

/// Panics with the log if `replicate` exited.
fn assert_running(rep: &mut Replicator, phase: &str) {
    if let Some(st) = rep.child.try_wait().unwrap() {
        panic!(
            "{phase}: walstream replicate exited ({st}):\n{}",
            std::fs::read_to_string(&rep.log).unwrap_or_default()
        );
    }
}

/// Waits until a restore straight from moto equals `want`, `replicate` running all along.
async fn wait_caught_up(
    rep: &mut Replicator,
    direct: &DynStore,
    want: &str,
    dir: &Path,
    phase: &str,
) -> Duration {
    let start = Instant::now();
    let mut n = 0;
    loop {
        assert_running(rep, phase);
        n += 1;
        let out = dir.join(format!("{phase}-poll-{n}.db"));
        if restore::run(direct, &RestoreOptions::new(&out, Target::Latest))
            .await
            .is_ok()
            && logical_digest(&out) == want
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{phase}: no catch-up 30 s after the faults stopped:\n{}",
            std::fs::read_to_string(&rep.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Commits while faults are on until each kind reached [`AT_LEAST`] (or `limit` passed);
/// `replicate` must run all along.
async fn write_through_faults(
    rep: &mut Replicator,
    proxy: &FaultProxy,
    app: &rusqlite::Connection,
    limit: Duration,
    phase: &str,
) {
    let start = Instant::now();
    while !enough(proxy) && start.elapsed() < limit {
        assert_running(rep, phase);
        commit(app, 2, 400);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_running(rep, phase);
}

/// A source database replicated to a fresh bucket (directly, no proxy) in many small L0 files,
/// so that one restore makes many requests.
async fn replicated_source(tag: &str, dir: &Path) -> (String, PathBuf) {
    let bucket = new_bucket(tag);
    let (path, app) = app_db(dir);
    let mut rep = start_replicate(&path, &s3_url(&bucket, &moto()), &dir.join("source.log"));
    for _ in 0..40 {
        commit(&app, 5, 500);
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    let direct = walstream::storage::open_url(&s3_url(&bucket, &moto())).unwrap();
    let want = logical_digest(&path);
    wait_caught_up(&mut rep, &direct, &want, dir, "source").await;
    rep.stop();
    (bucket, path)
}

/// Restores through the proxy while it injects every fault kind, until each reached
/// [`AT_LEAST`]: every restore exits 0 and equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_http_restore_retries_every_fault_kind() {
    let dir = tempdir();
    let (bucket, path) = replicated_source("flaky-restore", dir.path()).await;
    let want = logical_digest(&path);
    let proxy = FaultProxy::start(&moto());
    proxy.set_config(flaky(11));
    let url = s3_url(&bucket, &proxy.endpoint());
    let start = Instant::now();
    let mut restores = 0;
    while !enough(&proxy) {
        assert!(
            start.elapsed() < Duration::from_secs(60) && restores < 40,
            "{restores} restores in {:?} did not inject enough faults ({})",
            start.elapsed(),
            proxy.counts()
        );
        restores += 1;
        let out = dir.path().join(format!("restored-{restores}.db"));
        let run = walstream(&["restore", "-o", out.to_str().unwrap(), &url]);
        run.success();
        assert_eq!(
            logical_digest(&out),
            want,
            "restore {restores} differs from the source"
        );
    }
    eprintln!(
        "restore phase: {restores} restores in {:?}, {} requests: {}",
        start.elapsed(),
        proxy.records().len(),
        proxy.counts()
    );
    assert_enough(&proxy, "restore");
}

/// `replicate` running while the app commits and the proxy injects every fault kind: it never
/// exits, and once the faults stop everything reaches moto and restores equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_http_replication_never_gives_up() {
    let bucket = new_bucket("flaky-rep");
    let proxy = FaultProxy::start(&moto());
    let direct = walstream::storage::open_url(&s3_url(&bucket, &moto())).unwrap();
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    commit(&app, 20, 300);
    let mut rep = start_replicate(
        &path,
        &s3_url(&bucket, &proxy.endpoint()),
        &dir.path().join("replicate.log"),
    );
    // Faults start once replication runs.
    wait_caught_up(
        &mut rep,
        &direct,
        &logical_digest(&path),
        dir.path(),
        "replication-start",
    )
    .await;
    proxy.reset_records();
    proxy.set_config(flaky_live(23));
    let faults_on = Instant::now();
    write_through_faults(
        &mut rep,
        &proxy,
        &app,
        Duration::from_secs(45),
        "replication",
    )
    .await;
    proxy.set_enabled(false);
    let faulted = faults_on.elapsed();
    let counts = proxy.counts();
    let requests = proxy.records().len();
    let want = logical_digest(&path);
    let took = wait_caught_up(&mut rep, &direct, &want, dir.path(), "replication").await;
    eprintln!(
        "replication phase: {requests} requests in {faulted:?} of faults: {counts}; caught up {took:?} after"
    );
    assert_enough(&proxy, "replication");
    let log = rep.stop();
    assert!(!log.contains("panicked"), "{log}");

    let out = dir.path().join("final.db");
    walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &s3_url(&bucket, &moto()),
    ])
    .success();
    assert_eq!(logical_digest(&out), want);
}

/// The start phase: `replicate` is started again and again (killed with SIGKILL after 2 s of
/// writes each time) with the faults on from its first request (the lease, the listings, the
/// stale-upload sweep, the first uploads), until each fault kind met >= 20 starting requests.
/// No start exits on its own; once the faults stop, the last one catches up and the restore
/// equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flaky_http_start_never_gives_up() {
    let bucket = new_bucket("flaky-start");
    let proxy = FaultProxy::start(&moto());
    let direct = walstream::storage::open_url(&s3_url(&bucket, &moto())).unwrap();
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    commit(&app, 20, 300);
    let log = dir.path().join("replicate.log");
    let t0 = Instant::now();
    let mut starts = 0u64;
    let mut rep = loop {
        // Denser faults than the replication phase: a start makes a few dozen requests.
        proxy.set_config(FaultConfig {
            garbage: 0.1,
            reset: 0.1,
            junk: 0.15,
            cut: 0.3,
            ..flaky_live(37 + starts)
        });
        starts += 1;
        let mut rep = start_replicate(&path, &s3_url(&bucket, &proxy.endpoint()), &log);
        let this = Instant::now();
        while this.elapsed() < Duration::from_secs(2) {
            assert_running(&mut rep, "start");
            commit(&app, 2, 400);
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_running(&mut rep, "start");
        if enough(&proxy) {
            break rep;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(150),
            "start: not enough faults after {starts} starts ({})",
            proxy.counts()
        );
        rep.child.kill().unwrap();
        rep.child.wait().unwrap();
    };
    proxy.set_enabled(false);
    let counts = proxy.counts();
    let want = logical_digest(&path);
    let took = wait_caught_up(&mut rep, &direct, &want, dir.path(), "start").await;
    eprintln!(
        "start phase: {starts} starts in {:?}: {counts}; caught up {took:?} after the faults stopped",
        t0.elapsed()
    );
    assert_enough(&proxy, "start");
    let log = rep.stop();
    assert!(!log.contains("panicked"), "{log}");
    let out = dir.path().join("final.db");
    walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &s3_url(&bucket, &moto()),
    ])
    .success();
    assert_eq!(logical_digest(&out), want);
}
