//! Replication end to end: real SQLite, the real `walstream` binary, processes killed with
//! SIGKILL, and the real Litestream 0.5.17 for the switching test.
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rusqlite::Connection;

use super::harness::Replicator;
use super::util::{self, integrity, logical_digest, ltx_files, remove_db, source_digest};

/// `walstream replicate -log-level debug DB REPLICA`, logging to `log`.
fn start_replicator(db: &Path, replica: &Path, log: &Path) -> Replicator {
    Replicator::start(
        &[
            "replicate",
            "-log-level",
            "debug",
            db.to_str().unwrap(),
            replica.to_str().unwrap(),
        ],
        log,
    )
}

fn restore(replica: &Path, out: &Path, txid: Option<u64>) {
    remove_db(out);
    let txid = txid.map(|t| format!("{t:016x}"));
    let mut args = vec!["restore", "-o", out.to_str().unwrap()];
    if let Some(t) = &txid {
        args.extend(["-txid", t.as_str()]);
    }
    args.push(replica.to_str().unwrap());
    util::walstream(&args).success();
}

fn litestream_restore(replica: &Path, out: &Path) {
    remove_db(out);
    let url = format!("file://{}", replica.display());
    util::litestream(&["restore", "-o", out.to_str().unwrap(), &url]).success();
}

/// TXIDs of the L0 files on a file replica.
fn l0_txids(replica: &Path) -> Vec<u64> {
    ltx_files(replica, 0)
        .into_iter()
        .map(|(_, max)| max)
        .collect()
}

/// (min, max) of the files of one level on a file replica, for messages: at most the first
/// three and the last three.
fn l_txids(replica: &Path, level: u8) -> Vec<(u64, u64)> {
    let mut v = ltx_files(replica, level);
    if v.len() > 6 {
        let n = v.len();
        v.drain(3..n - 3);
    }
    v
}

/// Polls until a restore of `replica` has the digest `want`.
fn wait_replicated(replica: &Path, out: &Path, want: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        if replica.join("ltx/0").exists() {
            remove_db(out);
            let o = util::walstream(&[
                "restore",
                "-o",
                out.to_str().unwrap(),
                replica.to_str().unwrap(),
            ]);
            if o.code == Some(0) && logical_digest(out) == want {
                return start.elapsed();
            }
            last = format!(
                "exit {:?}, stderr: {}, files: {:?}",
                o.code,
                o.stderr,
                (0..=9)
                    .map(|l| (l, l_txids(replica, l)))
                    .filter(|(_, v)| !v.is_empty())
                    .collect::<Vec<_>>()
            );
        }
        assert!(
            start.elapsed() < timeout,
            "replica did not reach the source state within {timeout:?}; last restore: {last}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn app_conn(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL").unwrap();
    c
}

fn count_snapshots(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .matches("taking a full snapshot")
        .count()
}

fn e2e_at_page_size(page_size: u32) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let log = dir.path().join("walstream.log");
    {
        // Starts in rollback-journal mode: walstream switches it to WAL.
        let c = Connection::open(&db).unwrap();
        c.execute_batch(&format!(
            "PRAGMA page_size={page_size}; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, b BLOB); CREATE INDEX t_v ON t(v);"
        ))
        .unwrap();
    }
    let rep = start_replicator(&db, &replica, &log);
    std::thread::sleep(Duration::from_millis(300));
    let c = app_conn(&db);
    let mut rng = rand::rngs::StdRng::seed_from_u64(page_size as u64);
    for round in 0..6 {
        let tx = c.unchecked_transaction().unwrap();
        let rows = if page_size >= 65536 { 30 } else { 200 };
        for i in 0..rows {
            let blob: Vec<u8> = (0..rng.gen_range(10..3 * page_size as usize))
                .map(|_| rng.gen())
                .collect();
            tx.execute(
                "INSERT INTO t(v, b) VALUES (?1, ?2)",
                rusqlite::params![format!("r{round}-{i}"), blob],
            )
            .unwrap();
        }
        tx.commit().unwrap();
        c.execute("UPDATE t SET v = v || '-u' WHERE id % 7 = ?1", [round])
            .unwrap();
        c.execute("DELETE FROM t WHERE id % 11 = ?1", [round])
            .unwrap();
        if round == 2 {
            c.execute_batch("VACUUM").unwrap();
        }
        if round % 2 == 1 {
            let busy: i64 = c
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .unwrap();
            assert_eq!(busy, 0, "app TRUNCATE checkpoint was blocked");
        }
    }
    c.execute("DELETE FROM t WHERE id > 600", []).unwrap();
    c.execute_batch("VACUUM").unwrap();
    let want = source_digest(&db);
    let out = dir.path().join("restored.db");
    let lag = wait_replicated(&replica, &out, &want, Duration::from_secs(20));
    eprintln!("page size {page_size}: replica caught up {lag:?} after the last write");
    rep.stop();
    restore(&replica, &out, None);
    assert_eq!(integrity(&out), "ok");
    assert_eq!(
        logical_digest(&out),
        want,
        "restored content differs from the source"
    );
    // The real Litestream restores what walstream wrote, to the same bytes.
    let out2 = dir.path().join("litestream.db");
    litestream_restore(&replica, &out2);
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&out2).unwrap(),
        "walstream and Litestream restores differ"
    );
    assert_eq!(
        count_snapshots(&log),
        1,
        "needless full snapshots:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
}

#[test]
fn replicate_end_to_end_page_size_512() {
    e2e_at_page_size(512);
}

#[test]
fn replicate_end_to_end_page_size_4096() {
    e2e_at_page_size(4096);
}

#[test]
fn replicate_end_to_end_page_size_65536() {
    e2e_at_page_size(65536);
}

/// While walstream replicates, the app's own checkpoints in every mode succeed (busy = 0)
/// quickly, nothing is lost, and no needless full snapshot is taken.
#[test]
fn app_checkpoints_every_mode_succeed_while_replicating() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let log = dir.path().join("walstream.log");
    let c = app_conn(&db);
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let rep = start_replicator(&db, &replica, &log);
    std::thread::sleep(Duration::from_millis(500));
    let mut report = Vec::new();
    for mode in ["PASSIVE", "FULL", "RESTART", "TRUNCATE"] {
        let mut waits = Vec::new();
        for i in 0..15 {
            for j in 0..20 {
                c.execute(
                    "INSERT INTO t(v) VALUES (?1)",
                    [format!("{mode}-{i}-{j}-{}", "x".repeat(200))],
                )
                .unwrap();
            }
            let t = Instant::now();
            let (busy, log_frames, ckpt): (i64, i64, i64) = c
                .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .unwrap();
            waits.push(t.elapsed());
            assert_eq!(
                busy, 0,
                "{mode} checkpoint returned busy (log={log_frames}, checkpointed={ckpt})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        waits.sort();
        let median = waits[waits.len() / 2];
        eprintln!(
            "app wal_checkpoint({mode}): median wait {median:?}, max {:?}",
            waits[waits.len() - 1]
        );
        report.push((mode, median));
    }
    let want = source_digest(&db);
    let out = dir.path().join("restored.db");
    wait_replicated(&replica, &out, &want, Duration::from_secs(20));
    rep.stop();
    restore(&replica, &out, None);
    assert_eq!(integrity(&out), "ok");
    assert_eq!(logical_digest(&out), want);
    assert_eq!(
        count_snapshots(&log),
        1,
        "needless full snapshots:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    for (mode, median) in report {
        assert!(
            median <= Duration::from_millis(100),
            "{mode}: median wait {median:?} > 100 ms"
        );
    }
}

/// kill -9 of walstream at seeded random instants during a write workload: every commit that was
/// on the replica before a kill survives, TXIDs only grow, and the final restore equals the source.
#[test]
fn replicate_survives_repeated_kill9() {
    let seed: u64 = std::env::var("WALSTREAM_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261126);
    let kills: usize = std::env::var("WALSTREAM_CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!(
        "crash test: seed {seed}, {kills} kills (WALSTREAM_CRASH_SEED / WALSTREAM_CRASH_KILLS)"
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let log = dir.path().join("walstream.log");
    let c = app_conn(&db);
    c.execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    drop(c);
    // The writer runs for the whole test: one row per transaction, ids 1, 2, 3, ...; now and
    // then an app checkpoint.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let c = app_conn(&db);
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                c.execute(
                    "INSERT INTO t(id, v) VALUES (?1, ?2)",
                    rusqlite::params![n, format!("row {n} {}", "y".repeat((n % 300) as usize))],
                )
                .unwrap();
                if n.is_multiple_of(97) {
                    let mode = ["PASSIVE", "FULL", "RESTART", "TRUNCATE"][(n / 97 % 4) as usize];
                    let _: i64 = c
                        .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))
                        .unwrap();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };
    let mut seen: Vec<(u64, Vec<u8>)> = Vec::new(); // (max TXID before the kill, its file's bytes)
    let mut last_max = 0u64;
    for k in 0..kills {
        let rep = start_replicator(&db, &replica, &log);
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        rep.kill9();
        let txids = l0_txids(&replica);
        let max = txids.last().copied().unwrap_or(0);
        assert!(
            max >= last_max,
            "kill {k}: replica TXID went back from {last_max} to {max}"
        );
        if max > 0 {
            let name = format!("{max:016x}-{max:016x}.ltx");
            seen.push((
                max,
                std::fs::read(replica.join("ltx/0").join(name)).unwrap(),
            ));
        }
        last_max = max;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let rows = writer.join().unwrap();
    let want = source_digest(&db);
    let rep = start_replicator(&db, &replica, &log);
    let out = dir.path().join("restored.db");
    wait_replicated(&replica, &out, &want, Duration::from_secs(30));
    rep.stop();
    // TXIDs are contiguous and every file seen before a kill is still there, unchanged.
    let txids = l0_txids(&replica);
    assert_eq!(
        txids,
        (1..=*txids.last().unwrap()).collect::<Vec<_>>(),
        "gap in replica TXIDs"
    );
    let mut prev_rows = 0i64;
    for (txid, bytes) in &seen {
        let name = format!("{txid:016x}-{txid:016x}.ltx");
        assert_eq!(
            &std::fs::read(replica.join("ltx/0").join(&name)).unwrap(),
            bytes,
            "{name} changed after a kill"
        );
        restore(&replica, &out, Some(*txid));
        assert_eq!(integrity(&out), "ok", "restore at {txid:x}");
        let c = Connection::open(&out).unwrap();
        let (n, max): (i64, Option<i64>) = c
            .query_row("SELECT COUNT(*), MAX(id) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(
            Some(n),
            max.or(Some(0)),
            "restore at {txid:x} is not a prefix of the commits"
        );
        assert!(
            n >= prev_rows,
            "restore at {txid:x} has fewer rows than an earlier TXID"
        );
        prev_rows = n;
    }
    restore(&replica, &out, None);
    assert_eq!(logical_digest(&out), want);
    eprintln!(
        "crash test: {kills} kills, {rows} commits, {} TXIDs, final restore equals the source",
        txids.len()
    );
}

fn max_txid_all_levels(replica: &Path) -> u64 {
    (0..=9)
        .flat_map(|level| ltx_files(replica, level))
        .map(|(_, max)| max)
        .max()
        .unwrap_or(0)
}

fn write_rows(db: &Path, tag: &str, n: usize) {
    let c = app_conn(db);
    for i in 0..n {
        c.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("{tag}-{i}-{}", "z".repeat(i % 500))],
        )
        .unwrap();
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Both restores (walstream's and Litestream's) equal the source; returns the replica's TXID.
fn check_both_restore(dir: &Path, db: &Path, replica: &Path, phase: &str) -> u64 {
    let want = source_digest(db);
    let a = dir.join(format!("{phase}-walstream.db"));
    let b = dir.join(format!("{phase}-litestream.db"));
    restore(replica, &a, None);
    litestream_restore(replica, &b);
    assert_eq!(integrity(&a), "ok", "{phase}");
    if logical_digest(&a) != want {
        let log = std::fs::read_to_string(dir.join("walstream.log")).unwrap_or_default();
        let rows = |p: &Path| -> (i64, i64) {
            let c = Connection::open(p).unwrap();
            c.query_row("SELECT COUNT(*), MAX(id) FROM t", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
        };
        let files: Vec<_> = (0..=9)
            .map(|l| (l, l_txids(replica, l)))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if let Some(keep) = std::env::var_os("WALSTREAM_KEEP_FAILED") {
            let _ = Command::new("cp").arg("-a").arg(dir).arg(keep).status();
        }
        panic!(
            "{phase}: walstream restore differs from the source: rows {:?} vs {:?}; files {files:?}; log:\n{}",
            rows(&a),
            rows(db),
            log.lines().filter(|l| !l.contains("DEBUG")).collect::<Vec<_>>().join("\n")
        );
    }
    assert_eq!(
        logical_digest(&b),
        want,
        "{phase}: Litestream restore differs from the source"
    );
    max_txid_all_levels(replica)
}

/// Litestream 0.5.17 replicates, then walstream takes over the same database and replica, then
/// Litestream again. TXIDs only grow and every restore by either tool equals the source.
#[test]
fn switching_litestream_walstream_litestream() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let url = format!("file://{}", replica.display());
    app_conn(&db)
        .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();

    let ls = Replicator::litestream(&["replicate", db.to_str().unwrap(), &url])
        .start(&dir.path().join("litestream-1.log"));
    std::thread::sleep(Duration::from_millis(1500));
    write_rows(&db, "ls1", 300);
    std::thread::sleep(Duration::from_millis(2500));
    ls.stop();
    let t1 = check_both_restore(dir.path(), &db, &replica, "litestream-1");

    let log = dir.path().join("walstream.log");
    let rep = start_replicator(&db, &replica, &log);
    write_rows(&db, "ws", 300);
    std::thread::sleep(Duration::from_millis(500));
    rep.stop();
    let t2 = check_both_restore(dir.path(), &db, &replica, "walstream");
    assert!(
        t2 > t1,
        "walstream did not continue the TXIDs: {t1:x} -> {t2:x}"
    );
    assert_eq!(
        count_snapshots(&log),
        0,
        "walstream took a needless snapshot on takeover:\n{}",
        std::fs::read_to_string(&log).unwrap()
    );

    let ls = Replicator::litestream(&["replicate", db.to_str().unwrap(), &url])
        .start(&dir.path().join("litestream-2.log"));
    std::thread::sleep(Duration::from_millis(1500));
    write_rows(&db, "ls2", 300);
    std::thread::sleep(Duration::from_millis(2500));
    ls.stop();
    let t3 = check_both_restore(dir.path(), &db, &replica, "litestream-2");
    assert!(
        t3 > t2,
        "Litestream did not continue the TXIDs: {t2:x} -> {t3:x}"
    );
    eprintln!("switching: TXIDs {t1:x} (Litestream) -> {t2:x} (walstream) -> {t3:x} (Litestream)");
}

/// Regression: walstream read the database through short-lived `File`s, and closing one dropped
/// every POSIX lock the process held on the file, SQLite's guard included. The app's last
/// connection then got its EXCLUSIVE lock on close, checkpointed and deleted the WAL past frames
/// not yet copied: the last commits before a shutdown never reached the replica.
#[test]
fn regression_short_lived_db_file_dropped_sqlite_locks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let log = dir.path().join("walstream.log");
    app_conn(&db)
        .execute_batch("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        .unwrap();
    let rep = start_replicator(&db, &replica, &log);
    std::thread::sleep(Duration::from_millis(300));
    for round in 0..8 {
        // Each round: a burst of commits on a connection that then closes (the app's last one).
        let c = app_conn(&db);
        for i in 0..40 {
            c.execute("INSERT INTO t(v) VALUES (?1)", [format!("{round}-{i}")])
                .unwrap();
        }
        drop(c);
        std::thread::sleep(Duration::from_millis(30));
        assert!(
            std::fs::metadata(db.with_extension("db-wal")).is_ok_and(|m| m.len() > 32),
            "round {round}: the app's close removed or emptied the WAL while walstream was attached"
        );
    }
    let want = source_digest(&db);
    std::thread::sleep(Duration::from_millis(300));
    rep.stop();
    let out = dir.path().join("restored.db");
    restore(&replica, &out, None);
    assert_eq!(
        logical_digest(&out),
        want,
        "commits before the shutdown are missing"
    );
}
