//! Fault tolerance.
//!
//! - Deterministic retry paths: the library's replicator and restore over a file replica wrapped
//!   in [`FaultStore`], which fails, stalls or cuts calls on a schedule and counts attempts.
//! - Real network faults: the `walstream` binary against moto behind [`FaultProxy`], which
//!   answers 503 SlowDown, stalls, and cuts responses mid-body. These need moto: run
//!   `scripts/test.sh` (it starts moto and sets `WALSTREAM_TEST_S3_ENDPOINT`).
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use rusqlite::Connection;
use walstream::db::{Db, DbOptions};
use walstream::replica::{self, Replica};
use walstream::restore::{self, RestoreOptions, Target};
use walstream::storage::fault::{file_key, Cut, FaultKind, FaultStore, Op, Stall};
use walstream::storage::file::FileStore;
use walstream::storage::{DynStore, LtxFileInfo, ReplicaStore, SNAPSHOT_LEVEL};
use walstream::TxId;

use super::fault_proxy::{Fault, FaultConfig, FaultProxy, Record};
use super::util::{logical_digest, tempdir, walstream};

/// An application database in WAL mode with one table, and the connection writing to it.
pub(super) fn app_db(dir: &Path) -> (PathBuf, Connection) {
    let path = dir.join("app.db");
    let c = Connection::open(&path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, body BLOB NOT NULL);",
    )
    .unwrap();
    (path, c)
}

/// Commits `rows` rows of `size` pseudo-random bytes in one transaction.
pub(super) fn commit(c: &Connection, rows: usize, size: usize) {
    c.execute_batch("BEGIN").unwrap();
    for _ in 0..rows {
        c.execute("INSERT INTO t(body) VALUES (randomblob(?1))", [size as i64])
            .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
}

/// The database side of replication, driven by hand: `Db` writes L0 files, `Replica` uploads.
struct Pipeline {
    db: Db,
    rep: Replica,
}

impl Pipeline {
    async fn new(path: &Path, store: DynStore) -> Pipeline {
        let remote = replica::remote_max_txid(&store).await.unwrap();
        let mut db = Db::new(path, DbOptions::default()).unwrap();
        let complete = replica::local_chain_complete(db.meta(), remote).unwrap();
        db.reconcile(remote, complete).unwrap();
        let rep = Replica::new(store, db.meta().clone(), remote);
        Pipeline { db, rep }
    }

    /// Turns new WAL frames into L0 files.
    fn sync_db(&mut self) {
        while self.db.sync().unwrap().is_some() {}
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        self.db.shutdown();
    }
}

fn file_store(dir: &Path) -> DynStore {
    Arc::new(FileStore::new(dir.join("replica")))
}

async fn listing(store: &dyn ReplicaStore) -> Vec<LtxFileInfo> {
    let mut all = Vec::new();
    for level in 0..=SNAPSHOT_LEVEL {
        all.extend(store.ltx_files(level).await.unwrap());
    }
    all
}

/// Restores the newest state of `store` and returns its logical digest.
async fn restored_digest(store: &DynStore, dir: &Path, name: &str) -> String {
    let out = dir.join(name);
    restore::run(store, &RestoreOptions::new(&out, Target::Latest))
        .await
        .unwrap_or_else(|e| panic!("restore {name}: {e}"));
    logical_digest(&out)
}

/// Every LTX file on the store decodes, pages and checksums included, and its header covers
/// the TXIDs its name says.
async fn assert_all_decode(store: &dyn ReplicaStore) -> usize {
    let files = listing(store).await;
    for f in &files {
        let bytes: Vec<u8> = store
            .open_ltx_file(f.level, f.min_txid, f.max_txid, 0)
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .concat();
        assert_eq!(
            bytes.len() as u64,
            f.size,
            "{}: size",
            file_key(f.level, f.min_txid, f.max_txid)
        );
        let mut dec = ltx::Decoder::new(&bytes[..]).unwrap_or_else(|e| {
            panic!(
                "{}: corrupt header: {e}",
                file_key(f.level, f.min_txid, f.max_txid)
            )
        });
        let (min, max) = (dec.header().min_txid, dec.header().max_txid);
        assert_eq!((min, max), (f.min_txid, f.max_txid), "header TXIDs");
        let mut page = vec![0u8; dec.header().page_size as usize];
        while dec
            .next_page(&mut page)
            .unwrap_or_else(|e| {
                panic!(
                    "{}: corrupt page: {e}",
                    file_key(f.level, f.min_txid, f.max_txid)
                )
            })
            .is_some()
        {}
        dec.finish().unwrap_or_else(|e| {
            panic!(
                "{}: corrupt trailer: {e}",
                file_key(f.level, f.min_txid, f.max_txid)
            )
        });
    }
    files.len()
}

/// L0 TXIDs on the store are each present once and contiguous from 1.
async fn assert_l0_contiguous(store: &dyn ReplicaStore) -> Vec<u64> {
    let txids: Vec<u64> = store
        .ltx_files(0)
        .await
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f.min_txid, f.max_txid);
            f.max_txid.0
        })
        .collect();
    let want: Vec<u64> = (1..=txids.len() as u64).collect();
    assert_eq!(txids, want, "L0 files should be 1..=n, each once");
    txids
}

/// Uploads that fail twice (with the write lost, or landed before the error) are retried and
/// land once each; the replica restores to the source.
#[tokio::test(start_paused = true)]
async fn faults_upload_failing_twice_lands_once_and_restores() {
    for lands in [false, true] {
        let dir = tempdir();
        let (path, app) = app_db(dir.path());
        let inner = file_store(dir.path());
        let store = Arc::new(
            FaultStore::new(inner.clone())
                .fail_first(Op::Write, 2)
                .write_lands_before_error(lands),
        );
        let mut p = Pipeline::new(&path, store.clone()).await;
        for round in 0..5 {
            commit(&app, 10, 200);
            p.sync_db();
            let n = p.rep.sync().await.unwrap();
            assert!(n >= 1, "round {round}: nothing uploaded");
        }
        let txids = assert_l0_contiguous(inner.as_ref()).await;
        assert!(txids.len() >= 5, "{txids:?}");
        for t in &txids {
            assert_eq!(
                store.attempts(Op::Write, &file_key(0, TxId(*t), TxId(*t))),
                3,
                "L0 {t}, lands={lands}"
            );
        }
        assert_eq!(store.injected(), 2 * store.total_attempts(Op::Write) / 3);
        assert_all_decode(inner.as_ref()).await;
        assert_eq!(
            restored_digest(&inner, dir.path(), "restored.db").await,
            logical_digest(&path)
        );
        // Uploaded L0 files left the meta directory, except the newest (the WAL position).
        assert_eq!(p.db.meta().list(0).unwrap().len(), 1);
    }
}

/// A long outage (50 failed attempts per file, minutes of virtual time) is waited out: uploads
/// retry until the store is back, then the replica catches up in order.
#[tokio::test(start_paused = true)]
async fn faults_upload_outage_catches_up_when_store_returns() {
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    let inner = file_store(dir.path());
    let store = Arc::new(FaultStore::new(inner.clone()).fail_first(Op::Write, 50));
    let mut p = Pipeline::new(&path, store.clone()).await;
    commit(&app, 20, 100);
    p.sync_db();
    commit(&app, 20, 100);
    p.sync_db();
    assert!(
        p.db.meta().list(0).unwrap().len() >= 2,
        "L0 files wait locally"
    );
    let start = tokio::time::Instant::now();
    p.rep.sync().await.unwrap();
    assert!(
        start.elapsed() > Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    let txids = assert_l0_contiguous(inner.as_ref()).await;
    for t in txids {
        assert_eq!(
            store.attempts(Op::Write, &file_key(0, TxId(t), TxId(t))),
            51
        );
    }
    assert_eq!(
        restored_digest(&inner, dir.path(), "restored.db").await,
        logical_digest(&path)
    );
}

/// Seeded random failures (some landing before the error) and stalls on every call while the
/// app writes; once faults stop, the replica catches up and restores to the source.
#[tokio::test(start_paused = true)]
async fn faults_random_faults_lose_nothing() {
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    let inner = file_store(dir.path());
    let store = Arc::new(
        FaultStore::new(inner.clone())
            .fail_randomly(0.4, 20240601)
            .write_lands_before_error(true)
            .stall_first(Op::Write, 1, Stall::For(Duration::from_secs(3))),
    );
    // Startup's listing is not retried (an unreachable store is reported at once).
    store.set_enabled(false);
    let mut p = Pipeline::new(&path, store.clone()).await;
    store.set_enabled(true);
    for _ in 0..20 {
        commit(&app, 5, 300);
        p.sync_db();
        p.rep.sync().await.unwrap();
    }
    assert!(
        store.injected() >= 20,
        "only {} faults injected",
        store.injected()
    );
    store.set_enabled(false);
    commit(&app, 5, 300);
    p.sync_db();
    p.rep.sync().await.unwrap();
    assert_l0_contiguous(inner.as_ref()).await;
    assert_all_decode(inner.as_ref()).await;
    assert_eq!(
        restored_digest(&inner, dir.path(), "restored.db").await,
        logical_digest(&path)
    );
}

/// A permanent upload error (403) is not retried; it names the file; the L0 file stays local and
/// goes up once the store accepts it.
#[tokio::test]
async fn faults_upload_permanent_error_stops_naming_key() {
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    let inner = file_store(dir.path());
    let store = Arc::new(FaultStore::new(inner.clone()).fail_first_with(
        Op::Write,
        1,
        FaultKind::Permanent,
    ));
    let mut p = Pipeline::new(&path, store.clone()).await;
    commit(&app, 10, 100);
    p.sync_db();
    let err = p.rep.sync().await.unwrap_err();
    let msg = format!("{err}");
    let key = file_key(0, TxId(1), TxId(1));
    assert!(msg.contains(&key) && msg.contains("403"), "{msg}");
    assert!(msg.contains(&inner.describe()), "names the replica: {msg}");
    assert_eq!(
        store.attempts(Op::Write, &key),
        1,
        "a permanent error was retried"
    );
    assert!(inner.ltx_files(0).await.unwrap().is_empty());
    assert_eq!(
        p.db.meta().list(0).unwrap().len(),
        1,
        "the L0 file must stay local"
    );
    p.rep.sync().await.unwrap();
    assert_eq!(
        restored_digest(&inner, dir.path(), "restored.db").await,
        logical_digest(&path)
    );
}

/// Once the process is stopping, a failing upload retries for the shutdown timeout, then gives
/// up with the error (the file stays local for the next start).
#[tokio::test(start_paused = true)]
async fn faults_upload_retry_is_bounded_after_stop() {
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    let inner = file_store(dir.path());
    let store = Arc::new(FaultStore::new(inner.clone()).fail_first(Op::Write, u32::MAX));
    let stop = Arc::new(AtomicBool::new(false));
    let mut p = Pipeline::new(&path, store.clone()).await;
    p.rep = Replica::new(store.clone(), p.db.meta().clone(), None)
        .with_stop(stop.clone(), Duration::from_secs(30));
    commit(&app, 10, 100);
    p.sync_db();
    stop.store(true, Ordering::SeqCst);
    let start = tokio::time::Instant::now();
    let err = p.rep.sync().await.unwrap_err();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(30) && waited < Duration::from_secs(40),
        "{waited:?}"
    );
    assert!(format!("{err}").contains("503"), "{err}");
    assert_eq!(p.db.meta().list(0).unwrap().len(), 1);
}

/// A download cut mid-body resumes where it broke: the second open of each file starts at the
/// offset already received, and the restore equals the source.
#[tokio::test]
async fn faults_restore_cut_download_resumes_from_offset() {
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    let inner = file_store(dir.path());
    {
        let mut p = Pipeline::new(&path, inner.clone()).await;
        for _ in 0..3 {
            commit(&app, 20, 500);
            p.sync_db();
            p.rep.sync().await.unwrap();
        }
    }
    let files = listing(inner.as_ref()).await;
    let cut = 1000;
    assert!(
        files.iter().all(|f| f.size > cut),
        "files too small to cut: {files:?}"
    );
    let store = Arc::new(FaultStore::new(inner.clone()).cut_first_opens(1, cut, Cut::Error));
    let dyn_store: DynStore = store.clone();
    assert_eq!(
        restored_digest(&dyn_store, dir.path(), "restored.db").await,
        logical_digest(&path)
    );
    for f in &files {
        let key = file_key(f.level, f.min_txid, f.max_txid);
        assert_eq!(store.open_offsets(&key), [0, cut], "{key}");
    }
    assert_eq!(store.injected() as usize, files.len());
}

/// Transient open failures are retried a bounded number of times, then the restore fails
/// naming the file; a permanent one (403) fails at once. Nothing is left at the output.
#[tokio::test(start_paused = true)]
async fn faults_restore_errors_name_the_file() {
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    let inner = file_store(dir.path());
    {
        let mut p = Pipeline::new(&path, inner.clone()).await;
        commit(&app, 10, 100);
        p.sync_db();
        p.rep.sync().await.unwrap();
    }
    let key = file_key(0, TxId(1), TxId(1));
    for (kind, attempts) in [(FaultKind::Permanent, 1), (FaultKind::Transient, 6)] {
        let store = Arc::new(FaultStore::new(inner.clone()).fail_first_with(Op::Open, 100, kind));
        let dyn_store: DynStore = store.clone();
        let out = dir.path().join(format!("out-{kind:?}.db"));
        let err = restore::run(&dyn_store, &RestoreOptions::new(&out, Target::Latest))
            .await
            .unwrap_err();
        let mut msg = err.to_string();
        let mut src = std::error::Error::source(&err);
        while let Some(s) = src {
            msg.push_str(&format!(": {s}"));
            src = s.source();
        }
        assert!(
            msg.contains("0000000000000001-0000000000000001.ltx"),
            "{msg}"
        );
        assert!(msg.contains(&key), "{msg}");
        assert_eq!(store.attempts(Op::Open, &key), attempts, "{kind:?}: {msg}");
        assert_eq!(err.is_retryable(), kind == FaultKind::Transient);
        assert!(!out.exists());
    }
    // The listing is retried too.
    let store = Arc::new(FaultStore::new(inner.clone()).fail_first(Op::List, 2));
    let dyn_store: DynStore = store.clone();
    assert_eq!(
        restored_digest(&dyn_store, dir.path(), "listed.db").await,
        logical_digest(&path)
    );
    assert_eq!(store.attempts(Op::List, "0/"), 3);
}

// ---------------------------------------------------------------------------------------------
// Real network faults: the binary, moto, and the fault proxy.

pub(super) fn moto() -> String {
    std::env::var("WALSTREAM_TEST_S3_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            panic!("WALSTREAM_TEST_S3_ENDPOINT is not set: the fault proxy tests need moto; run scripts/test.sh (it starts moto via scripts/servers/moto.sh)")
        })
}

/// Creates a bucket with an unsigned `PUT /<bucket>` (moto accepts it) and returns its name.
pub(super) fn new_bucket(tag: &str) -> String {
    use std::io::{Read, Write};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let bucket = format!("ws-fault-{tag}-{}-{nanos}", std::process::id());
    let endpoint = moto();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s =
        std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("moto at {host}: {e}"));
    write!(
        s,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(
        resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
        "create bucket: {resp}"
    );
    bucket
}

pub(super) fn s3_url(bucket: &str, endpoint: &str) -> String {
    format!("s3://{bucket}/db?endpoint={endpoint}&region=us-east-1&forcePathStyle=true")
}

/// The object path the proxy sees for a file (path-style).
fn object_path(bucket: &str, f: &LtxFileInfo) -> String {
    format!("/{bucket}/db/{:04x}/{}", f.level, f.file_name())
}

pub(super) struct Replicator {
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

impl Replicator {
    fn start(db: &Path, url: &str, log: &Path) -> Replicator {
        let f = std::fs::File::create(log).unwrap();
        let child = Command::new(super::util::bin())
            .args(["replicate", "-log-level", "debug"])
            .arg(db)
            .arg(url)
            // Stalls longer than this count as timeouts.
            .env("WALSTREAM_S3_READ_TIMEOUT", "1s")
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

    pub(super) fn stop(mut self) -> String {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                assert!(st.success(), "walstream replicate exited with {st}:\n{log}");
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "walstream did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn count(records: &[Record], f: impl Fn(&Record) -> bool) -> usize {
    records.iter().filter(|r| f(r)).count()
}

/// `walstream replicate` to moto through the proxy while it answers 503 SlowDown, stalls past the
/// read timeout, cuts and drops responses (writes that landed but failed), as the app commits.
/// Nothing is lost, no object on moto is corrupt, and once the faults stop the replica catches
/// up and restores to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_s3_proxy_during_replication_lose_nothing() {
    let bucket = new_bucket("rep");
    let proxy = FaultProxy::start(&moto());
    let direct = walstream::storage::open_url(&s3_url(&bucket, &moto())).unwrap();
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    commit(&app, 50, 200);
    let rep = Replicator::start(
        &path,
        &s3_url(&bucket, &proxy.endpoint()),
        &dir.path().join("replicate.log"),
    );

    // Faults start once replication runs (startup itself does not retry).
    let deadline = Instant::now() + Duration::from_secs(20);
    while direct
        .ltx_files(0)
        .await
        .map(|f| f.is_empty())
        .unwrap_or(true)
    {
        assert!(
            Instant::now() < deadline,
            "nothing replicated in 20 s:\n{}",
            std::fs::read_to_string(&rep.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Four seconds of flaky network, then a three-second outage (every request 503), longer
    // than object_store's own few retries, so walstream's retry has to wait it out.
    let flaky = FaultConfig {
        enabled: true,
        slowdown: 0.25,
        stall: 0.15,
        stall_for: Duration::from_millis(1500),
        cut: 0.2,
        seed: 7,
        ..FaultConfig::default()
    };
    proxy.set_config(flaky.clone());
    let outage_at = Instant::now() + Duration::from_secs(4);
    let writes_until = outage_at + Duration::from_secs(3);
    let mut outage = false;
    while Instant::now() < writes_until {
        if !outage && Instant::now() >= outage_at {
            outage = true;
            proxy.set_config(FaultConfig {
                slowdown: 1.0,
                ..flaky.clone()
            });
        }
        commit(&app, 3, 300);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    proxy.set_enabled(false);
    let faulted = proxy.records();
    let want = logical_digest(&path);

    // Catch-up: the replica restores to the source within seconds of the faults stopping.
    let stopped = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let out = dir.path().join(format!("poll-{n}.db"));
        if let Ok(()) = restore::run(&direct, &RestoreOptions::new(&out, Target::Latest))
            .await
            .map(|_| ())
        {
            if logical_digest(&out) == want {
                break;
            }
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(25),
            "no catch-up 25 s after the faults stopped:\n{}",
            std::fs::read_to_string(&rep.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let log = rep.stop();
    assert!(!log.contains("panicked"), "{log}");

    let objects = assert_all_decode(direct.as_ref()).await;
    assert_l0_contiguous(direct.as_ref()).await;
    let out = dir.path().join("final.db");
    walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &s3_url(&bucket, &moto()),
    ])
    .success();
    assert_eq!(logical_digest(&out), want);

    let slowdowns = count(&faulted, |r| r.faults.contains(&Fault::SlowDown));
    let broken = count(&faulted, |r| {
        r.faults.contains(&Fault::Cut) || r.faults.contains(&Fault::Drop)
    });
    let stalls = count(&faulted, |r| r.faults.contains(&Fault::Stall));
    let faulted_puts = count(&faulted, |r| r.method == "PUT" && !r.faults.is_empty());
    eprintln!(
        "{} requests during faults: {slowdowns} SlowDown, {broken} cut or dropped, {stalls} stalled, {faulted_puts} faulted PUTs; {objects} objects on moto",
        faulted.len()
    );
    assert!(
        slowdowns > 0 && broken > 0 && stalls > 0 && faulted_puts > 0,
        "too few faults: {faulted:#?}"
    );
    assert!(
        log.contains("retrying"),
        "walstream's own retry never ran:\n{log}"
    );
}

/// The start offset of a `Range: bytes=N-` or `bytes=N-M` header.
fn range_start(r: &Record) -> u64 {
    r.range
        .as_deref()
        .and_then(|h| h.strip_prefix("bytes="))
        .and_then(|h| h.split('-').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

/// `walstream restore` from moto through the proxy, which cuts the first five GETs of every LTX
/// object halfway through the body. The restore equals the source, and every object was read
/// once: each retry asked for the range starting where the cut fell, so the bytes served sum to
/// the object's size (and are under twice it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_s3_proxy_cut_downloads_resume_by_range() {
    let bucket = new_bucket("restore");
    let direct_url = s3_url(&bucket, &moto());
    let direct = walstream::storage::open_url(&direct_url).unwrap();
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    for _ in 0..2 {
        commit(&app, 100, 1000);
        walstream(&["replicate", "-once", path.to_str().unwrap(), &direct_url]).success();
    }
    let files = listing(direct.as_ref()).await;
    assert!(files.len() >= 2, "{files:?}");

    let proxy = FaultProxy::start(&moto());
    proxy.set_config(FaultConfig {
        enabled: true,
        path_suffix: Some(".ltx".into()),
        cut_first_gets: 5,
        cut_fraction: 0.5,
        ..FaultConfig::default()
    });
    let out = dir.path().join("restored.db");
    let run = walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &s3_url(&bucket, &proxy.endpoint()),
    ]);
    run.success();
    assert_eq!(logical_digest(&out), logical_digest(&path));

    let records = proxy.records();
    for f in &files {
        let p = object_path(&bucket, f);
        let gets: Vec<&Record> = records
            .iter()
            .filter(|r| r.method == "GET" && r.path == p)
            .collect();
        let cuts = gets
            .iter()
            .filter(|r| r.faults.contains(&Fault::Cut))
            .count();
        assert_eq!(cuts, 5, "{p}: {gets:#?}");
        let mut served = 0;
        for g in &gets {
            assert_eq!(
                range_start(g),
                served,
                "{p}: a retry did not start where the cut fell: {gets:#?}"
            );
            served += g.body_bytes;
        }
        assert_eq!(served, f.size, "{p}: bytes served");
        assert!(served < 2 * f.size);
        assert!(
            gets[1..].iter().all(|g| g.range.is_some()),
            "{p}: {gets:#?}"
        );
    }
    // Five cuts outlast object_store's own three body retries, so walstream's resume ran too.
    assert!(run.stderr.contains("resuming"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// Issue 5, item 4b: an outage during live replication, between flaky periods.

/// `walstream replicate -config` with `min-checkpoint-page-count` set, logging to `log`.
pub(super) fn start_with_config(
    db: &Path,
    url: &str,
    min_checkpoint: u64,
    log: &Path,
) -> Replicator {
    let cfg = log.with_extension("yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    min-checkpoint-page-count: {min_checkpoint}\n    replica:\n      url: \"{url}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let f = std::fs::File::create(log).unwrap();
    let child = Command::new(super::util::bin())
        .args(["replicate", "-log-level", "debug", "-config"])
        .arg(&cfg)
        .env("WALSTREAM_S3_READ_TIMEOUT", "1s")
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

/// Every key in a bucket, by a raw ListObjectsV2 to moto (not through walstream's listing, which
/// skips names it does not parse).
fn raw_keys(bucket: &str) -> Vec<String> {
    use std::io::{Read, Write};
    let endpoint = moto();
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut s = std::net::TcpStream::connect(host).unwrap();
        let q = match &token {
            Some(t) => format!(
                "list-type=2&continuation-token={}",
                t.replace('=', "%3D")
                    .replace('+', "%2B")
                    .replace('/', "%2F")
            ),
            None => "list-type=2".to_string(),
        };
        write!(
            s,
            "GET /{bucket}?{q} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let mut rest = resp.as_str();
        while let Some(i) = rest.find("<Key>") {
            let after = &rest[i + 5..];
            let j = after.find("</Key>").unwrap();
            keys.push(after[..j].to_string());
            rest = &after[j..];
        }
        token = resp
            .split_once("<NextContinuationToken>")
            .and_then(|(_, r)| r.split_once("</NextContinuationToken>"))
            .map(|(t, _)| t.to_string());
        if token.is_none() {
            break;
        }
    }
    keys
}

/// Size of a file, 0 when missing.
fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Flaky network (10 % 503 SlowDown, 5 % cut mid-body, 5 % stalled 2 s), then an outage of
/// `outage` (every request 503) while the app writes far more than the checkpoint threshold,
/// then flaky again, then clean. Checks: the WAL stays bounded during the outage (the database
/// thread checkpoints on its own schedule; unsent L0 files wait in the meta directory); the
/// replica catches up and restores to the source within `catch_up`; every object in the bucket
/// is a complete, valid LTX file; a restore through the same flaky proxy succeeds.
async fn outage_during_replication(
    tag: &str,
    outage: Duration,
    commit_every: Duration,
    catch_up: Duration,
) {
    const MIN_CHECKPOINT: u64 = 200;
    const ROWS: usize = 20;
    let bucket = new_bucket(tag);
    let proxy = FaultProxy::start(&moto());
    let direct = walstream::storage::open_url(&s3_url(&bucket, &moto())).unwrap();
    let dir = tempdir();
    let (path, app) = app_db(dir.path());
    let wal = dir.path().join("app.db-wal");
    let meta_l0 = dir.path().join(".app.db-litestream/ltx/0");
    commit(&app, 20, 200);
    let rep = start_with_config(
        &path,
        &s3_url(&bucket, &proxy.endpoint()),
        MIN_CHECKPOINT,
        &dir.path().join("replicate.log"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while direct
        .ltx_files(0)
        .await
        .map(|f| f.is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "nothing replicated in 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let flaky = FaultConfig {
        enabled: true,
        slowdown: 0.10,
        cut: 0.05,
        stall: 0.05,
        stall_for: Duration::from_secs(2),
        seed: 4242,
        ..FaultConfig::default()
    };
    let page = 4096u64;
    let frame = page + 24;
    let bound = 32 + (MIN_CHECKPOINT + 4 * ROWS as u64 + 64) * frame;

    // Flaky for 5 s.
    proxy.set_config(flaky.clone());
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        commit(&app, ROWS, 4000);
        tokio::time::sleep(commit_every).await;
    }
    // The outage.
    proxy.set_config(FaultConfig {
        slowdown: 1.0,
        ..flaky.clone()
    });
    let started = Instant::now();
    let (mut max_wal, mut max_local, mut written, mut samples) = (0u64, 0usize, 0u64, 0usize);
    while started.elapsed() < outage {
        commit(&app, ROWS, 4000);
        written += (ROWS as u64) * 4000;
        max_wal = max_wal.max(file_len(&wal));
        max_local = max_local.max(std::fs::read_dir(&meta_l0).map(|d| d.count()).unwrap_or(0));
        samples += 1;
        tokio::time::sleep(commit_every).await;
    }
    let outage_records = proxy.records().len();
    // Flaky for 4 s more, then clean.
    proxy.set_config(flaky.clone());
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        commit(&app, ROWS, 4000);
        max_wal = max_wal.max(file_len(&wal));
        tokio::time::sleep(commit_every).await;
    }
    proxy.set_enabled(false);
    let faulted = proxy.records();
    let want = logical_digest(&path);

    let stopped = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let out = dir.path().join(format!("poll-{n}.db"));
        if restore::run(&direct, &RestoreOptions::new(&out, Target::Latest))
            .await
            .is_ok()
            && logical_digest(&out) == want
        {
            break;
        }
        let _ = std::fs::remove_file(&out);
        assert!(
            stopped.elapsed() < catch_up,
            "no catch-up {catch_up:?} after the faults stopped:\n{}",
            std::fs::read_to_string(&rep.log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let caught_up = stopped.elapsed();

    // Restore through the same flaky proxy while replication still runs.
    proxy.set_config(FaultConfig {
        seed: 99,
        ..flaky.clone()
    });
    let before_restore = proxy.records().len();
    let out = dir.path().join("through-faults.db");
    let run = walstream(&[
        "restore",
        "-o",
        out.to_str().unwrap(),
        &s3_url(&bucket, &proxy.endpoint()),
    ]);
    run.success();
    assert_eq!(logical_digest(&out), want);
    let restore_records: Vec<Record> = proxy.records()[before_restore..].to_vec();
    proxy.set_enabled(false);
    let log = rep.stop();
    assert!(!log.contains("panicked"), "{log}");

    // Every object in the bucket is a whole LTX file under a valid name, besides the two-writer
    // lease beside the levels (a walstream extension).
    let mut keys = raw_keys(&bucket);
    keys.retain(|k| k != "db/.walstream/lease");
    let bad: Vec<&String> = keys
        .iter()
        .filter(|k| {
            let mut parts = k.split('/');
            !(parts.next() == Some("db")
                && parts.next().is_some_and(|l| l.len() == 4)
                && parts.next().and_then(ltx::parse_file_name).is_some()
                && parts.next().is_none())
        })
        .collect();
    assert!(bad.is_empty(), "stray objects: {bad:?}");
    let objects = assert_all_decode(direct.as_ref()).await;
    assert_eq!(objects, keys.len(), "listing vs raw keys");
    assert_l0_contiguous(direct.as_ref()).await;

    let by_kind = |rs: &[Record], f: Fault| count(rs, |r| r.faults.contains(&f));
    eprintln!(
        "outage {tag}: {outage:?} outage, WAL max {max_wal} bytes (bound {bound}, {} frames of {page}), \
         {written} bytes committed during the outage in {samples} commits, up to {max_local} L0 files waiting locally; \
         caught up {caught_up:?} after faults stopped; {objects} objects, all decode",
        (max_wal.saturating_sub(32)) / frame
    );
    eprintln!(
        "faults injected during replication ({} requests, {outage_records} until the outage ended): SlowDown={} Cut={} Drop={} Stall={}; \
         during the restore ({} requests): SlowDown={} Cut={} Drop={} Stall={}",
        faulted.len(),
        by_kind(&faulted, Fault::SlowDown),
        by_kind(&faulted, Fault::Cut),
        by_kind(&faulted, Fault::Drop),
        by_kind(&faulted, Fault::Stall),
        restore_records.len(),
        by_kind(&restore_records, Fault::SlowDown),
        by_kind(&restore_records, Fault::Cut),
        by_kind(&restore_records, Fault::Drop),
        by_kind(&restore_records, Fault::Stall),
    );
    assert!(
        written > 2 * bound,
        "the outage did not write enough to test the bound"
    );
    assert!(
        max_wal <= bound,
        "WAL grew to {max_wal} bytes during the outage (bound {bound})"
    );
    assert!(
        max_local >= 5,
        "L0 files should wait locally during the outage"
    );
    assert!(by_kind(&faulted, Fault::SlowDown) > 0 && by_kind(&faulted, Fault::Stall) > 0);
}

/// The default-suite version: an 8 s outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_s3_outage_wal_bounded_and_catches_up() {
    outage_during_replication(
        "out8",
        Duration::from_secs(8),
        Duration::from_millis(100),
        Duration::from_secs(60),
    )
    .await;
}

/// The long version: a 60 s outage. `cargo test -p walstream --test tests -- --ignored
/// faults_s3_long_outage` (with moto running, as scripts/test.sh does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: a 60 s outage; run with --ignored"]
async fn faults_s3_long_outage_60s_wal_bounded_and_catches_up() {
    outage_during_replication(
        "out60",
        Duration::from_secs(60),
        Duration::from_millis(200),
        Duration::from_secs(120),
    )
    .await;
}
