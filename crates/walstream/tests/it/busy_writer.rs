//! A writer that commits back to back, never pausing: walstream's checkpoints still restart the
//! WAL, so it stays bounded without the emergency TRUNCATE (and its full snapshot). Before the
//! write lock was taken eagerly, the busy handler's sleeps missed every gap between commits and
//! the WAL reached truncate-page-n within seconds.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};

use super::fleet_util::{file_url_of, restore_digest, Replicator};
use super::util;

#[test]
#[ignore = "issue 10, open: the eager write lock and checkpoint under it (which passed this) \
            were backed out after 2 of 4 runs read the SOURCE database as malformed; with the \
            checkpoint code before it, the WAL reaches truncate-page-n; run with --ignored"]
fn busy_writer_wal_stays_bounded_without_emergency_truncate() {
    let dir = util::tempdir();
    let db = dir.path().join("app.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL);",
    )
    .unwrap();
    drop(c);
    let replica = dir.path().join("replica");
    let cfg = dir.path().join("walstream.yml");
    // Default truncate-page-n (121359 frames, about 500 MB): the emergency path is the failure.
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("walstream.log");
    let mut r = Replicator::start(&cfg, &log, &[("LOG_LEVEL", "debug")], &[]);
    std::thread::sleep(Duration::from_millis(500));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            c.execute_batch("PRAGMA synchronous=NORMAL;").unwrap();
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let (mut n, mut max_id) = (0u64, 0i64);
            let mut v = vec![0u8; 500];
            while !stop.load(Ordering::Relaxed) {
                let tx = c.unchecked_transaction().unwrap();
                for _ in 0..10 {
                    rng.fill_bytes(&mut v);
                    tx.execute("INSERT INTO t(v) VALUES (?1)", [&v]).unwrap();
                    max_id += 1;
                }
                for _ in 0..5 {
                    rng.fill_bytes(&mut v);
                    let id = rng.gen_range(1..=max_id);
                    tx.execute(
                        "UPDATE t SET v = ?1 WHERE id = ?2",
                        rusqlite::params![v, id],
                    )
                    .unwrap();
                }
                tx.commit().unwrap();
                n += 1;
            }
            n
        })
    };
    let wal = dir.path().join("app.db-wal");
    let t0 = Instant::now();
    let mut max_wal = 0u64;
    while t0.elapsed() < Duration::from_secs(8) {
        max_wal = max_wal.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        r.assert_running();
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let commits = writer.join().unwrap();
    let want = util::logical_digest(&db);
    let out = dir.path().join("restored.db");
    let t1 = Instant::now();
    loop {
        if restore_digest(&file_url_of(&replica), &out).ok().as_deref() == Some(want.as_str()) {
            break;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(30),
            "the replica did not reach the source\n{}",
            r.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = r.log_text();
    if std::env::var_os("WALSTREAM_TEST_DUMP").is_some() {
        for l in text.lines().filter(|l| {
            l.contains("checkpoint") || l.contains("snapshot") || l.contains("write lock")
        }) {
            eprintln!("{l}");
        }
    }
    let snapshots = text.matches("taking a full snapshot").count();
    eprintln!(
        "busy writer: {commits} commits in 8 s, WAL file peaked at {:.1} MB, {snapshots} full snapshot(s), replica equal {:?} after",
        max_wal as f64 / 1e6,
        t1.elapsed()
    );
    assert!(commits > 1000, "the writer made only {commits} commits");
    assert!(
        !text.contains("emergency TRUNCATE"),
        "the WAL reached truncate-page-n (peak {max_wal} bytes)\n{}",
        r.log_tail()
    );
    assert_eq!(
        snapshots,
        1,
        "full snapshots besides the first\n{}",
        r.log_tail()
    );
    assert!(
        max_wal < 121_359 * 4120,
        "WAL file peaked at {max_wal} bytes"
    );
}
