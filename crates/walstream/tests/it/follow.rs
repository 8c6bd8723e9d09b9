//! Follow mode (`restore -f`) end to end: the real binary replicating a real SQLite database to a
//! file replica, a follower keeping a copy, and readers of the copy in this process.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::harness::Replicator;
use super::util::tempdir;

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    src: PathBuf,
    replica: PathBuf,
    config: PathBuf,
    out: PathBuf,
}

/// A source database with tables `a` and `b` (each writer transaction changes both alike), and
/// a config naming it with a file replica.
fn setup(extra_config: &str) -> Setup {
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    let src = dir.join("src.db");
    let replica = dir.join("replica");
    let out = dir.join("copy").join("follow.db");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let c = Connection::open(&src).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=wal;
         CREATE TABLE a(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad BLOB);
         CREATE TABLE b(id INTEGER PRIMARY KEY, v INTEGER NOT NULL, pad BLOB);",
    )
    .unwrap();
    let config = dir.join("walstream.yml");
    std::fs::write(
        &config,
        format!(
            "{extra_config}dbs:\n  - path: {}\n    monitor-interval: 100ms\n    replica:\n      path: {}\n      sync-interval: 100ms\n",
            src.display(),
            replica.display()
        ),
    )
    .unwrap();
    Setup {
        _dir: tmp,
        dir,
        src,
        replica,
        config,
        out,
    }
}

impl Setup {
    fn wait_first_file(&self) {
        wait_for("first L0 file", Duration::from_secs(30), || {
            self.replica.join("ltx/0").read_dir().is_ok_and(|d| {
                d.flatten()
                    .any(|e| ltx::parse_file_name(&e.file_name().to_string_lossy()).is_some())
            })
        });
    }

    fn replicate(&self, history: bool) -> Replicator {
        let cfg = self.config.to_string_lossy().into_owned();
        let mut p = Replicator::walstream(&["replicate", "-config", &cfg, "-log-level", "debug"]);
        if history {
            p = p.var("WALSTREAM_EXPERIMENTAL_HISTORY", "1");
        }
        p.start(&self.dir.join("replicate.log"))
    }

    /// `restore -f` of the source's config entry into `out`.
    fn follow(&self, log: &str, interval: Option<&str>) -> Replicator {
        let cfg = self.config.to_string_lossy().into_owned();
        let out = self.out.to_string_lossy().into_owned();
        let src = self.src.to_string_lossy().into_owned();
        let mut args = vec![
            "restore",
            "-f",
            "-log-level",
            "debug",
            "-config",
            &cfg,
            "-o",
            &out,
        ];
        if let Some(i) = interval {
            args.extend(["-follow-interval", i]);
        }
        args.push(&src);
        Replicator::walstream(&args)
            .name("follower")
            .start(&self.dir.join(log))
    }

    fn txid_file(&self) -> Option<u64> {
        let mut p = self.out.as_os_str().to_owned();
        p.push("-txid");
        let t = std::fs::read_to_string(PathBuf::from(p)).ok()?;
        u64::from_str_radix(t.trim(), 16).ok()
    }
}

/// One writer transaction: the same row into `a` and `b`, and both first rows' `v` bumped, so
/// that count(a) = count(b) and sum(a.v) = sum(b.v) after every commit. `pad` makes some
/// transactions span many pages.
fn write_tx(c: &mut Connection, i: i64, pad: usize) {
    let tx = c.transaction().unwrap();
    let blob = vec![(i % 251) as u8; pad];
    tx.execute(
        "INSERT INTO a(v, pad) VALUES (?1, ?2)",
        rusqlite::params![i, blob],
    )
    .unwrap();
    tx.execute("UPDATE a SET v = v + 1 WHERE id = 1", [])
        .unwrap();
    tx.execute(
        "INSERT INTO b(v, pad) VALUES (?1, ?2)",
        rusqlite::params![i, blob],
    )
    .unwrap();
    tx.execute("UPDATE b SET v = v + 1 WHERE id = 1", [])
        .unwrap();
    tx.commit().unwrap();
}

/// (count(a), count(b), sum(a.v), sum(b.v)) in one read transaction.
fn read_state(c: &Connection) -> rusqlite::Result<(i64, i64, i64, i64)> {
    c.query_row(
        "SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b), \
                (SELECT coalesce(sum(v), 0) FROM a), (SELECT coalesce(sum(v), 0) FROM b)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
}

fn open_ro(path: &Path) -> Connection {
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// The source's state and a digest of both tables.
fn content(path: &Path) -> ((i64, i64, i64, i64), String) {
    let c = open_ro(path);
    let tx = c.unchecked_transaction().unwrap();
    let state = read_state(&tx).unwrap();
    let digest: String = tx
        .query_row(
            "SELECT group_concat(x, ',') FROM (SELECT id || ':' || v || ':' || length(pad) || ':' || hex(substr(pad, 1, 2)) AS x FROM a ORDER BY id)",
            [],
            |r| r.get::<_, Option<String>>(0),
        )
        .unwrap()
        .unwrap_or_default();
    let digest_b: String = tx
        .query_row(
            "SELECT group_concat(x, ',') FROM (SELECT id || ':' || v || ':' || length(pad) || ':' || hex(substr(pad, 1, 2)) AS x FROM b ORDER BY id)",
            [],
            |r| r.get::<_, Option<String>>(0),
        )
        .unwrap()
        .unwrap_or_default();
    (state, format!("{digest}|{digest_b}"))
}

fn integrity_ok(path: &Path) {
    let c = open_ro(path);
    let r: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "ok", "{}", path.display());
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the copy's content equals `want`; returns how long it took.
fn wait_converged(
    out: &Path,
    want: &str,
    timeout: Duration,
    follower: &mut Replicator,
) -> Duration {
    let start = Instant::now();
    loop {
        if out.exists() {
            let (_, got) = content(out);
            if got == want {
                return start.elapsed();
            }
        }
        follower.assert_running();
        assert!(
            start.elapsed() < timeout,
            "copy did not converge within {timeout:?}; follower log:\n{}",
            follower.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sum of `bytes=N` over log lines containing `marker`.
fn logged_bytes(log: &str, marker: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            let i = l.find(" bytes=")?;
            l[i + 7..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn follow_tracks_writer_and_readers_never_see_torn_transactions() {
    let s = setup("");
    let mut w = Connection::open(&s.src).unwrap();
    for i in 0..20 {
        write_tx(&mut w, i, 100);
    }
    let mut repl = s.replicate(false);
    wait_for("first L0 file", Duration::from_secs(30), || {
        s.replica
            .join("ltx/0")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some())
    });
    let interval = Duration::from_secs(1);
    let mut follower = s.follow("follow.log", None);
    wait_for(
        "the follower's first restore",
        Duration::from_secs(30),
        || s.txid_file().is_some(),
    );

    // Readers: one connection kept open for the whole run (its page cache must be invalidated),
    // one opened afresh for every read.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [true, false]
        .into_iter()
        .map(|persistent| {
            let out = s.out.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut conn = open_ro(&out);
                let mut reads = 0u64;
                let mut seen = std::collections::BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    if !persistent {
                        conn = open_ro(&out);
                    }
                    let (ca, cb, sa, sb) = read_state(&conn).unwrap_or_else(|e| {
                        panic!("read of the copy failed after {reads} reads: {e}")
                    });
                    assert_eq!(
                        (ca, sa),
                        (cb, sb),
                        "torn transaction seen by a reader (persistent={persistent}) after {reads} reads"
                    );
                    seen.insert(ca);
                    reads += 1;
                    std::thread::sleep(Duration::from_millis(2));
                }
                (reads, seen)
            })
        })
        .collect();

    // The writer: ~6 s of transactions, some spanning many pages.
    let started = Instant::now();
    let mut i = 20;
    while started.elapsed() < Duration::from_secs(6) {
        let pad = if i % 7 == 0 { 20_000 } else { 200 };
        write_tx(&mut w, i, pad);
        i += 1;
        std::thread::sleep(Duration::from_millis(5));
        follower.assert_running();
    }
    drop(w);
    let (_, want) = content(&s.src);

    // Stopping replicate flushes the replica: from then on it is final.
    repl.assert_running();
    repl.stop();
    let final_at = Instant::now();
    let took = wait_converged(&s.out, &want, Duration::from_secs(30), &mut follower);
    eprintln!(
        "follow: {} writer transactions; copy converged {took:?} after the replica was final (interval {interval:?})",
        i
    );
    assert!(
        final_at.elapsed() >= took && took <= 2 * interval,
        "converged after {took:?}, more than 2 follow intervals ({interval:?})"
    );

    stop.store(true, Ordering::Relaxed);
    for (n, r) in readers.into_iter().enumerate() {
        let (reads, seen) = r.join().unwrap();
        eprintln!(
            "follow: reader {n}: {reads} reads, {} distinct states",
            seen.len()
        );
        assert!(reads > 100, "reader {n} made only {reads} reads");
        assert!(
            seen.len() >= 3,
            "reader {n} saw no progress: counts {seen:?}"
        );
    }
    integrity_ok(&s.out);
    let took = follower.stop_with(libc::SIGINT).took;
    eprintln!("follow: stopped on SIGINT in {took:?}");
    let log = std::fs::read_to_string(s.dir.join("follow.log")).unwrap();
    assert!(log.contains("follow mode stopped"), "{log}");
    // The copy is in rollback-journal mode; readers never needed -wal or -shm.
    let header = std::fs::read(&s.out).unwrap();
    assert_eq!((header[18], header[19]), (1, 1));
}

#[test]
fn follow_killed_and_restarted_resumes_without_full_download() {
    let s = setup("");
    let mut w = Connection::open(&s.src).unwrap();
    // About 4 MB of incompressible data: a full restore downloads at least that much.
    for i in 0..200 {
        let tx = w.transaction().unwrap();
        let blob: Vec<u8> = (0..20_000).map(|_| rand::random::<u8>()).collect();
        tx.execute(
            "INSERT INTO a(v, pad) VALUES (?1, ?2)",
            rusqlite::params![i, blob],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO b(v, pad) VALUES (?1, ?2)",
            rusqlite::params![i, blob],
        )
        .unwrap();
        tx.commit().unwrap();
    }
    let mut repl = s.replicate(false);
    s.wait_first_file();
    let mut follower = s.follow("follow1.log", Some("200ms"));
    let (_, want) = content(&s.src);
    wait_converged(&s.out, &want, Duration::from_secs(60), &mut follower);
    // The copy is in place before the follower logs the restore: wait for the line (under
    // load the check above can win that race).
    let logged_by = Instant::now() + Duration::from_secs(10);
    let mut full = 0;
    while full == 0 && Instant::now() < logged_by {
        full = logged_bytes(&follower.log(), "follow: restored in full");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(full > 4_000_000, "first restore downloaded {full} bytes");

    // Kill -9 while the writer writes and the follower applies.
    let mut running = Some(follower);
    for i in 1000..1100 {
        write_tx(&mut w, i, 300);
        if i == 1050 {
            if let Some(f) = running.take() {
                f.kill9();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed_at = s.txid_file().unwrap();
    for i in 1100..1150 {
        write_tx(&mut w, i, 300);
    }
    let (_, want) = content(&s.src);

    let mut follower = s.follow("follow2.log", Some("200ms"));
    let took = wait_converged(&s.out, &want, Duration::from_secs(60), &mut follower);
    repl.assert_running();
    // The log line follows the commit that readers already see.
    wait_for(
        "the applied batch in the log",
        Duration::from_secs(10),
        || follower.log().contains("follow: applied"),
    );
    let log = follower.log();
    assert!(
        log.contains("resuming follow mode from the recorded position"),
        "{log}"
    );
    assert!(!log.contains("follow: restored in full"), "{log}");
    let resumed = logged_bytes(&log, "follow: applied");
    eprintln!(
        "follow: first run downloaded {full} bytes; killed at TXID {killed_at:x}; the restart downloaded {resumed} bytes and converged in {took:?}"
    );
    assert!(
        resumed > 0 && resumed * 4 < full,
        "restart downloaded {resumed} bytes, first restore {full}"
    );
    integrity_ok(&s.out);
    follower.stop();
    repl.stop();
}

#[test]
fn follow_restart_after_l0_compacted_away_uses_higher_levels() {
    let s = setup(
        "levels:\n  - interval: 1s\n  - interval: 3s\nsnapshot:\n  interval: 1h\n  retention: 1h\n\
         l0-retention: 1s\nl0-retention-check-interval: 1s\n",
    );
    let mut w = Connection::open(&s.src).unwrap();
    for i in 0..10 {
        write_tx(&mut w, i, 100);
    }
    let mut repl = s.replicate(true);
    s.wait_first_file();
    let mut follower = s.follow("follow1.log", Some("200ms"));
    let (_, want) = content(&s.src);
    wait_converged(&s.out, &want, Duration::from_secs(60), &mut follower);
    follower.stop();
    let pos = s.txid_file().unwrap();

    // More transactions, then wait until L0 no longer holds the one right after the position.
    for i in 10..60 {
        write_tx(&mut w, i, 100);
        std::thread::sleep(Duration::from_millis(30));
    }
    let (_, want) = content(&s.src);
    let l0_min = |replica: &Path| -> Option<u64> {
        std::fs::read_dir(replica.join("ltx/0"))
            .ok()?
            .flatten()
            .filter_map(|e| ltx::parse_file_name(&e.file_name().to_string_lossy()))
            .map(|(a, _)| a.0)
            .min()
    };
    wait_for(
        "L0 after the position retained away",
        Duration::from_secs(60),
        || {
            repl.assert_running();
            l0_min(&s.replica).is_none_or(|m| m > pos + 1)
        },
    );

    let mut follower = s.follow("follow2.log", Some("200ms"));
    wait_converged(&s.out, &want, Duration::from_secs(60), &mut follower);
    wait_for(
        "the applied batch in the log",
        Duration::from_secs(10),
        || follower.log().contains("follow: applied"),
    );
    let log = follower.log();
    assert!(
        log.contains("resuming follow mode from the recorded position"),
        "{log}"
    );
    assert!(!log.contains("follow: restored in full"), "{log}");
    let applied: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("follow: applied"))
        .collect();
    assert!(
        applied
            .iter()
            .any(|l| l.contains("chain=L1") || l.contains("chain=L2")),
        "no batch started from a higher level: {applied:#?}\nlog:\n{log}"
    );
    integrity_ok(&s.out);
    follower.stop();
    repl.stop();
}
