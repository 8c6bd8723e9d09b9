//! History end to end: compaction levels, L9 snapshots, point-in-time restore, and Litestream
//! 0.5.17 reading the compacted and snapshot files walstream wrote.
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use rand::{Rng, SeedableRng};
use rusqlite::Connection;

use super::harness::Replicator;
use super::util::{self, copy_dir, ltx_files as files, remove_db};

fn rows(db: &Path) -> i64 {
    let c = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
        .unwrap()
}

fn restore(args: &[&str], replica: &Path, out: &Path) -> util::Run {
    remove_db(out);
    let mut all = vec!["restore", "-o", out.to_str().unwrap()];
    all.extend_from_slice(args);
    all.push(replica.to_str().unwrap());
    util::walstream(&all)
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A workload records (wall time, rows) after each commit; restoring to `-timestamp` at 20 seeded
/// random instants yields a state committed before the instant, and not older than one sync
/// (L0 kept) or one L1 interval (L0 deleted) before it. Shortened intervals make L1, L2 and a
/// snapshot exist; Litestream 0.5.17 restores those files to the same bytes.
#[test]
fn history_time_travel_and_litestream_reads_compacted_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let cfg = dir.path().join("walstream.yml");
    std::fs::write(
        &cfg,
        format!(
            "levels:\n  - interval: 2s\n  - interval: 6s\nsnapshot:\n  interval: 8s\n  retention: 1h\nl0-retention: 1h\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        .unwrap();
    let rep = Replicator::with_config(&cfg, &dir.path().join("walstream.log"));
    std::thread::sleep(Duration::from_millis(500));
    let start = SystemTime::now();
    let mut commits: Vec<(SystemTime, i64)> = Vec::new();
    let t0 = Instant::now();
    let mut n = 0i64;
    while t0.elapsed() < Duration::from_secs(20) {
        n += 1;
        c.execute(
            "INSERT INTO t(v) VALUES (?1)",
            [format!("row {n} {}", "h".repeat((n % 200) as usize))],
        )
        .unwrap();
        commits.push((SystemTime::now(), n));
        std::thread::sleep(Duration::from_millis(40));
    }
    let end = SystemTime::now();
    // Let replication and a round of compaction catch up (on a loaded machine it can lag the
    // writer by seconds; a fixed pause made the last instants fall after the newest file).
    let caught_up_by = Instant::now() + Duration::from_secs(60);
    let probe = dir.path().join("probe.db");
    loop {
        let o = restore(&[], &replica, &probe);
        if o.code == Some(0) && rows(&probe) == n {
            break;
        }
        assert!(
            Instant::now() < caught_up_by,
            "replica never caught up with {n} rows"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(2500));
    rep.stop();
    assert!(!files(&replica, 1).is_empty(), "no L1 files");
    assert!(!files(&replica, 2).is_empty(), "no L2 files");
    assert!(!files(&replica, 9).is_empty(), "no L9 snapshot");

    let committed_before = |t: SystemTime| {
        commits
            .iter()
            .filter(|(at, _)| *at < t)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let out = dir.path().join("pit.db");
    let span = end.duration_since(start).unwrap();
    let mut checked = 0;
    for _ in 0..20 {
        let t = start + Duration::from_millis(rng.gen_range(500..span.as_millis() as u64));
        let o = restore(&["-timestamp", &rfc3339(t)], &replica, &out);
        assert_eq!(
            o.code,
            Some(0),
            "restore -timestamp {}: {}",
            rfc3339(t),
            o.stderr
        );
        let got = rows(&out);
        let upper = committed_before(t);
        // One sync lags the commit by the wake-up and the write: allow half a second.
        let lower = committed_before(t - Duration::from_millis(500));
        assert!(
            got <= upper,
            "restore at {} has {got} rows, more than committed before it ({upper})",
            rfc3339(t)
        );
        assert!(
            got >= lower,
            "restore at {} has {got} rows, older than one sync before it ({lower})",
            rfc3339(t)
        );
        checked += 1;
    }
    // Without L0 (as after l0-retention), the granularity is L1's interval.
    let coarse = dir.path().join("coarse");
    copy_dir(&replica, &coarse);
    std::fs::remove_dir_all(coarse.join("ltx/0")).unwrap();
    for _ in 0..10 {
        let t = start + Duration::from_millis(rng.gen_range(3000..span.as_millis() as u64));
        let o = restore(&["-timestamp", &rfc3339(t)], &coarse, &out);
        assert_eq!(
            o.code,
            Some(0),
            "coarse restore -timestamp {}: {}",
            rfc3339(t),
            o.stderr
        );
        let got = rows(&out);
        assert!(got <= committed_before(t));
        assert!(
            got >= committed_before(t - Duration::from_millis(2500)),
            "coarse restore older than one L1 interval"
        );
    }
    eprintln!("time travel: {checked} fine and 10 coarse instants checked");

    // Litestream restores the compacted and snapshot files walstream wrote (no L0), latest and by
    // -txid at an L2 boundary, to the same bytes as walstream.
    let url = format!("file://{}", coarse.display());
    let mine = dir.path().join("mine.db");
    let theirs = dir.path().join("theirs.db");
    let mut targets = Vec::new();
    if let Some((_, max)) = files(&coarse, 2).first() {
        targets.push(Some(format!("{max:016x}")));
    }
    targets.push(None);
    for target in targets {
        let mut args: Vec<String> = Vec::new();
        if let Some(t) = &target {
            args = vec!["-txid".into(), t.clone()];
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = restore(&a, &coarse, &mine);
        o.success();
        remove_db(&theirs);
        let mut ls_args = vec!["restore", "-o", theirs.to_str().unwrap()];
        ls_args.extend_from_slice(&a);
        ls_args.push(&url);
        util::litestream(&ls_args).success();
        assert_eq!(
            std::fs::read(&mine).unwrap(),
            std::fs::read(&theirs).unwrap(),
            "restores differ at {target:?}"
        );
    }
    assert_eq!(rows(&mine), n);
}

/// Objects and bytes under `replica/ltx`.
fn replica_usage(replica: &Path) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    for level in 0..=9u8 {
        let Ok(rd) = std::fs::read_dir(replica.join("ltx").join(level.to_string())) else {
            continue;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".ltx") {
                n += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (n, bytes)
}

/// The rows of the bounded-storage workload after commit `k`: commit k rewrites row k % 500.
fn expected_rows(k: i64) -> Vec<(i64, String)> {
    let mut rows: Vec<(i64, String)> = (0..500).map(|i| (i, format!("init {i}"))).collect();
    for c in 1..=k {
        let i = (c % 500) as usize;
        rows[i].1 = format!("commit {c} {}", "x".repeat((c % 97) as usize));
    }
    rows
}

/// Bounded storage (the long suite): a steady write workload for 10 minutes (or
/// `WALSTREAM_BOUNDED_SECS`) with shortened levels, snapshots and retention. From the middle on,
/// the replica's object count and bytes stay within ±20 % of their mid-run values, and every
/// restore along the way equals the source's state at the commit it holds.
#[test]
#[ignore = "long suite: 10 minutes; scripts/long.sh runs it"]
fn history_bounded_storage_long() {
    let secs: u64 = std::env::var("WALSTREAM_BOUNDED_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    let cfg = dir.path().join("walstream.yml");
    std::fs::write(
        &cfg,
        format!(
            "levels:\n  - interval: 2s\n  - interval: 20s\nsnapshot:\n  interval: 10s\n  retention: 60s\nl0-retention: 30s\nl0-retention-check-interval: 1s\ndbs:\n  - path: {}\n    replica:\n      path: {}\n",
            db.display(),
            replica.display()
        ),
    )
    .unwrap();
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); CREATE TABLE k(n INTEGER);
         INSERT INTO k VALUES (0);",
    )
    .unwrap();
    {
        let tx = c.unchecked_transaction().unwrap();
        for (i, v) in expected_rows(0) {
            tx.execute(
                "INSERT INTO t(id, v) VALUES (?1, ?2)",
                rusqlite::params![i, v],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let rep = Replicator::with_config(&cfg, &dir.path().join("walstream.log"));
    let out = dir.path().join("check.db");
    let t0 = Instant::now();
    let mut k = 0i64;
    let mut next_sample = Duration::from_secs(30);
    let mut samples: Vec<(u64, u64, u64, i64)> = Vec::new();
    while t0.elapsed() < Duration::from_secs(secs) {
        k += 1;
        let tx = c.unchecked_transaction().unwrap();
        let row = k % 500;
        tx.execute(
            "UPDATE t SET v = ?1 WHERE id = ?2",
            rusqlite::params![format!("commit {k} {}", "x".repeat((k % 97) as usize)), row],
        )
        .unwrap();
        tx.execute("UPDATE k SET n = ?1", [k]).unwrap();
        tx.commit().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if t0.elapsed() >= next_sample {
            next_sample += Duration::from_secs(30);
            let (n, bytes) = replica_usage(&replica);
            let o = restore(&[], &replica, &out);
            o.success();
            let r = Connection::open_with_flags(&out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
            let ok: String = r
                .query_row("PRAGMA integrity_check", [], |x| x.get(0))
                .unwrap();
            assert_eq!(ok, "ok");
            let at: i64 = r.query_row("SELECT n FROM k", [], |x| x.get(0)).unwrap();
            let got: Vec<(i64, String)> = r
                .prepare("SELECT id, v FROM t ORDER BY id")
                .unwrap()
                .query_map([], |x| Ok((x.get(0)?, x.get(1)?)))
                .unwrap()
                .map(|x| x.unwrap())
                .collect();
            assert!(
                at <= k && at >= k - 200,
                "restore at commit {at}, source at {k}"
            );
            assert_eq!(
                got,
                expected_rows(at),
                "restore differs from the source at commit {at}"
            );
            // Scheduled time of this sample (30 s steps): the ±20 % check uses whole minutes.
            let t = next_sample.as_secs() - 30;
            eprintln!(
                "bounded: t={t}s objects={n} bytes={bytes} restore at commit {at} of {k}: equal"
            );
            samples.push((t, n, bytes, at));
        }
    }
    drop(rep);
    // Retention deletes in steps, so the count saws up and down; the settings keep each step
    // small against what is kept (L0 kept 30 s and checked every second, snapshots every 10 s
    // kept 60 s), and samples a whole minute apart are compared. A first try with 10 s of L0
    // checked every 5 s swung ±30 % around a flat mean.
    let minutes: Vec<_> = samples.iter().filter(|s| s.0 % 60 == 0).copied().collect();
    let mid = minutes
        .iter()
        .find(|s| s.0 >= secs / 2)
        .copied()
        .expect("a mid-run sample");
    let worst = samples
        .iter()
        .filter(|s| s.0 >= mid.0)
        .map(|s| ((s.1 as f64 / mid.1 as f64 - 1.0) * 100.0).abs())
        .fold(0.0, f64::max);
    eprintln!("bounded: largest object-count swing from mid-run, any sample: {worst:.0} %");
    for s in minutes.iter().filter(|s| s.0 >= mid.0) {
        let within =
            |v: u64, base: u64| (v as f64) <= base as f64 * 1.2 && (v as f64) >= base as f64 * 0.8;
        assert!(
            within(s.1, mid.1) && within(s.2, mid.2),
            "at {}s: {} objects, {} bytes; at {}s: {} objects, {} bytes (±20 %)",
            s.0,
            s.1,
            s.2,
            mid.0,
            mid.1,
            mid.2
        );
    }
    eprintln!(
        "bounded storage: {} samples, {} commits, mid-run {} objects / {} bytes, later within ±20 %",
        samples.len(),
        k,
        mid.1,
        mid.2
    );
}
