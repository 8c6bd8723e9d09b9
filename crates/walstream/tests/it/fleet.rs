//! Many databases in one `walstream replicate` (issue 9, "What must be shown"), on file replicas.
//!
//! - **Scale**: N databases from one `dir:` entry, the binary run under
//!   `prlimit --nofile=1024:20000` (walstream raises its soft limit to the hard one): every
//!   database on the replica within a deadline; then commits to random databases, each on the
//!   replica within 2 s (COMMIT returned -> L0 file renamed into place); RSS <= 1 GB and no
//!   descriptor on any database file once cold, at most one descriptor per idle database plus 32
//!   fixed ones (today: the lease owner file's flock, one per database); random databases restore equal to
//!   their sources. Default suite: 300 databases, 30 commits, 20 restores. Full size (10,000
//!   databases, 10 minutes, 100 commits, 100 restores):
//!   `WALSTREAM_FLEET_FULL=1 cargo test --release -p walstream --test tests it::fleet::fleet_scale_full -- --ignored --nocapture`
//! - **Lag under a spread load**: databases each committing twice a second, lag p99 <= 1 s.
//!   Default suite: 100 databases for 15 s, p99 <= 2 s (a loaded shared machine). Full (200 databases, 60 s):
//!   `WALSTREAM_FLEET_FULL=1 cargo test --release -p walstream --test tests it::fleet::fleet_lag_full -- --ignored --nocapture`
//!
//! Lag is measured per database, one commit at a time: the newest L0 TXID on the replica is
//! read after the previous commit was seen there, the row committed, and the replica's L0
//! directory polled (every 10 ms) until a newer file is complete. The figures are printed.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::fleet_util::{
    commit, cpu_ticks, create_db, fd_targets, max_l0, nofile_limits, open, pct, restore_digest,
    rss_kib, ticks_per_sec, wait_l0_above, Replicator,
};
use super::util;

struct Fleet {
    _dir: tempfile::TempDir,
    root: PathBuf,
    dbs: Vec<PathBuf>,
    replica: PathBuf,
    cfg: PathBuf,
}

impl Fleet {
    /// `n` databases in `<root>/dbs`, one `dir:` entry replicating them to `<root>/replica/<name>`.
    fn new(n: usize) -> Fleet {
        let dir = util::tempdir();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let dbdir = root.join("dbs");
        std::fs::create_dir_all(&dbdir).unwrap();
        let t0 = Instant::now();
        let dbs: Vec<PathBuf> = (0..n)
            .map(|i| {
                let p = dbdir.join(format!("tenant{i:05}.db"));
                create_db(&p);
                p
            })
            .collect();
        eprintln!("fleet: created {n} databases in {:?}", t0.elapsed());
        let replica = root.join("replica");
        let cfg = root.join("walstream.yml");
        std::fs::write(
            &cfg,
            format!(
                "dbs:\n  - dir: {}\n    pattern: '*.db'\n    replica:\n      path: {}\n",
                dbdir.display(),
                replica.display()
            ),
        )
        .unwrap();
        Fleet {
            _dir: dir,
            root,
            dbs,
            replica,
            cfg,
        }
    }

    fn replica_of(&self, db: &Path) -> PathBuf {
        self.replica.join(db.file_name().unwrap())
    }

    fn url_of(&self, db: &Path) -> String {
        format!("file://{}", self.replica_of(db).display())
    }

    /// Waits until every database has an L0 file on the replica; the time it took.
    fn wait_all_replicated(&self, r: &mut Replicator, within: Duration) -> Duration {
        let t0 = Instant::now();
        let mut pending: Vec<&PathBuf> = self.dbs.iter().collect();
        loop {
            // Any level: a slow start lets L1 compaction and L0 retention run first.
            pending.retain(|db| !has_ltx(&self.replica_of(db)));
            if pending.is_empty() {
                return t0.elapsed();
            }
            r.assert_running();
            assert!(
                t0.elapsed() < within,
                "{} of {} databases not on the replica {within:?} after start (first: {}):\n{}",
                pending.len(),
                self.dbs.len(),
                pending[0].display(),
                r.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Descriptors of a process (all of them, sockets and inotify included).
fn fd_count(pid: u32) -> usize {
    fd_targets(&pid.to_string()).len()
}

struct ScaleSize {
    dbs: usize,
    start_deadline: Duration,
    commits: usize,
    restores: usize,
}

fn fleet_scale(size: ScaleSize) {
    let fleet = Fleet::new(size.dbs);
    let log = fleet.root.join("walstream.log");
    let started = Instant::now();
    // WALSTREAM_FLEET_LOG_LEVEL=debug to look into a slow commit.
    let level = std::env::var("WALSTREAM_FLEET_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let mut r = Replicator::start(
        &fleet.cfg,
        &log,
        &[("WALSTREAM_COLD_AFTER", "2s"), ("LOG_LEVEL", &level)],
        &["prlimit", "--nofile=1024:20000", "--"],
    );
    let pid = r.pid();
    let all_in = fleet.wait_all_replicated(&mut r, size.start_deadline);
    let (soft, hard) = nofile_limits(pid);
    assert_eq!(
        (soft.as_str(), hard.as_str()),
        ("20000", "20000"),
        "walstream did not raise its soft RLIMIT_NOFILE to the hard limit"
    );
    let cpu_start = cpu_ticks(pid);
    eprintln!(
        "fleet scale: {} databases on the replica {all_in:?} after start (deadline {:?}); \
         nofile soft/hard {soft}/{hard}; CPU for the start {:.1} s",
        size.dbs,
        size.start_deadline,
        cpu_start as f64 / ticks_per_sec() as f64
    );

    // Commits to random databases, one at a time: each on the replica within 2 s.
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut lags = Vec::new();
    let picks: Vec<&PathBuf> = fleet.dbs.choose_multiple(&mut rng, size.commits).collect();
    for (k, db) in picks.iter().enumerate() {
        let rep = fleet.replica_of(db);
        let before = max_l0(&rep);
        let c = open(db);
        commit(&c, &format!("scale-{k}"));
        let lag = wait_l0_above(
            &rep,
            before,
            Duration::from_secs(10),
            Duration::from_millis(5),
        );
        drop(c);
        let lag = lag.unwrap_or_else(|| {
            let name = db.file_name().unwrap().to_string_lossy().into_owned();
            let text = r.log_text();
            let about: Vec<&str> = text.lines().filter(|l| l.contains(&name)).collect();
            panic!(
                "{}: commit not on the replica in 10 s; its log lines:\n{}\nlog tail:\n{}",
                db.display(),
                about[about.len().saturating_sub(30)..].join("\n"),
                r.log_tail()
            )
        });
        lags.push(lag);
        r.assert_running();
    }
    lags.sort();
    eprintln!(
        "fleet scale: {} commits to random databases: lag p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        pct(&lags, 50.0),
        pct(&lags, 99.0),
        lags.last().unwrap()
    );
    assert!(
        *lags.last().unwrap() <= Duration::from_secs(2),
        "a commit took {:?} to reach the replica (bound 2 s)",
        lags.last().unwrap()
    );

    // Once cold: RSS and descriptors.
    let t0 = Instant::now();
    let (mut fds, mut rss);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        fds = fd_count(pid);
        rss = rss_kib(pid);
        if fds <= fleet.dbs.len() + 32 || t0.elapsed() > Duration::from_secs(30) {
            break;
        }
    }
    let ticks0 = cpu_ticks(pid);
    let w0 = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let idle_cpu =
        (cpu_ticks(pid) - ticks0) as f64 / ticks_per_sec() as f64 / w0.elapsed().as_secs_f64()
            * 100.0;
    eprintln!(
        "fleet scale: idle: {fds} descriptors for {} databases ({:.3} per database), RSS {} MiB, \
         CPU {idle_cpu:.2} % of a core over 5 s",
        fleet.dbs.len(),
        fds as f64 / fleet.dbs.len() as f64,
        rss / 1024
    );
    // No idle database holds a descriptor on its database, -wal or -shm (no SQLite connection).
    let targets = fd_targets(&pid.to_string());
    let dbdir = fleet.dbs[0].parent().unwrap();
    let on_db_files: Vec<_> = targets
        .iter()
        .filter(|t| t.parent() == Some(dbdir))
        .collect();
    assert!(
        on_db_files.is_empty(),
        "idle databases hold descriptors on their files: {on_db_files:?}"
    );
    // What is left per database is the lease owner file's flock in its meta directory (one per
    // database, held for the process's life: see lease::Owner). The bound is <= 1 per
    // idle database on average; allow the process's fixed descriptors (runtime, inotify,
    // sockets, logs) on top.
    let owner_locks = targets
        .iter()
        .filter(|t| t.ends_with(walstream::lease::OWNER_FILE))
        .count();
    eprintln!(
        "fleet scale: of {fds} descriptors, {owner_locks} are lease owner-file locks, {} other",
        fds - owner_locks
    );
    assert!(
        fds <= fleet.dbs.len() + 32,
        "{fds} descriptors for {} idle databases (more than one each plus 32 fixed)",
        fleet.dbs.len()
    );
    assert!(rss <= 1024 * 1024, "RSS {rss} KiB > 1 GB");

    // Random databases restore equal to their sources.
    let out = fleet.root.join("restored.db");
    let t0 = Instant::now();
    for db in fleet.dbs.choose_multiple(&mut rng, size.restores) {
        let want = util::logical_digest(db);
        let got = restore_digest(&fleet.url_of(db), &out)
            .unwrap_or_else(|e| panic!("restore of {}: {e}", db.display()));
        assert_eq!(got, want, "restore of {} differs", db.display());
    }
    eprintln!(
        "fleet scale: {} random databases restored equal to their sources in {:?}; total {:?}",
        size.restores,
        t0.elapsed(),
        started.elapsed()
    );
    r.assert_running();
    let st = r.stop(Duration::from_secs(60));
    assert!(
        st.is_some_and(|s| s.success()),
        "walstream on SIGTERM: {st:?}\n{}",
        r.log_tail()
    );
}

/// Scale, scaled down for the default suite: 300 databases.
#[test]
fn fleet_scale_300() {
    fleet_scale(ScaleSize {
        dbs: 300,
        start_deadline: Duration::from_secs(60),
        commits: 30,
        restores: 20,
    });
}

/// Scale at full size: 10,000 databases (about 15 minutes with the set-up).
#[test]
#[ignore = "full size: WALSTREAM_FLEET_FULL=1 cargo test --release -p walstream --test tests it::fleet::fleet_scale_full -- --ignored --nocapture"]
fn fleet_scale_full() {
    assert!(
        std::env::var_os("WALSTREAM_FLEET_FULL").is_some(),
        "set WALSTREAM_FLEET_FULL=1 to run the full-size scale test"
    );
    // WALSTREAM_FLEET_DBS runs it at another size (to look into a figure without the full set-up).
    let dbs = std::env::var("WALSTREAM_FLEET_DBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    fleet_scale(ScaleSize {
        dbs,
        start_deadline: Duration::from_secs(600),
        commits: 100,
        restores: 100,
    });
}

fn fleet_lag(n: usize, window: Duration, p99_bound: Duration) {
    let fleet = Fleet::new(n);
    let log = fleet.root.join("walstream.log");
    let mut r = Replicator::start(&fleet.cfg, &log, &[], &[]);
    let pid = r.pid();
    let all_in = fleet.wait_all_replicated(&mut r, Duration::from_secs(60));
    eprintln!("fleet lag: {n} databases on the replica {all_in:?} after start");
    let stop = Arc::new(AtomicBool::new(false));
    let lags = Arc::new(Mutex::new(Vec::new()));
    let misses = Arc::new(Mutex::new(Vec::new()));
    let ticks0 = cpu_ticks(pid);
    let t_start = Instant::now();
    let threads: Vec<_> = fleet
        .dbs
        .iter()
        .enumerate()
        .map(|(i, db)| {
            let db = db.clone();
            let rep = fleet.replica_of(&db);
            let (stop, lags, misses) = (stop.clone(), lags.clone(), misses.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(i as u64);
                let c = open(&db);
                // Spread the commits over the half-second.
                let mut next = Instant::now() + Duration::from_millis(rng.gen_range(0..500));
                let mut k = 0;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next += Duration::from_millis(500);
                    let before = max_l0(&rep);
                    commit(&c, &format!("lag-{k}"));
                    k += 1;
                    match wait_l0_above(
                        &rep,
                        before,
                        Duration::from_secs(10),
                        Duration::from_millis(10),
                    ) {
                        Some(l) => lags.lock().unwrap().push(l),
                        None => misses.lock().unwrap().push(db.display().to_string()),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(window);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let wall = t_start.elapsed();
    let cpu = (cpu_ticks(pid) - ticks0) as f64 / ticks_per_sec() as f64 / wall.as_secs_f64();
    r.assert_running();
    let misses = misses.lock().unwrap().clone();
    assert!(
        misses.is_empty(),
        "{} commits not on the replica within 10 s (first {})",
        misses.len(),
        misses[0]
    );
    let mut lags = lags.lock().unwrap().clone();
    lags.sort();
    let (p50, p99, max) = (pct(&lags, 50.0), pct(&lags, 99.0), *lags.last().unwrap());
    eprintln!(
        "fleet lag: {n} databases x 2 commits/s for {wall:?}: {} commits, lag p50 {p50:?}, p99 {p99:?}, \
         max {max:?}; walstream CPU {:.0} % of a core",
        lags.len(),
        cpu * 100.0
    );
    // Each database committed about twice a second (fewer only if the lag ran long).
    assert!(
        lags.len() as f64 >= n as f64 * window.as_secs_f64() * 1.5,
        "only {} commits in {wall:?}",
        lags.len()
    );
    assert!(p99 <= p99_bound, "lag p99 {p99:?} > {p99_bound:?}");
    // Every database equals its replica at the end.
    let out = fleet.root.join("restored.db");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for db in fleet.dbs.choose_multiple(&mut rng, 5) {
        assert_eq!(
            restore_digest(&fleet.url_of(db), &out).unwrap(),
            util::logical_digest(db),
            "{}",
            db.display()
        );
    }
    let st = r.stop(Duration::from_secs(60));
    assert!(st.is_some_and(|s| s.success()), "{st:?}\n{}", r.log_tail());
}

/// Lag under a spread load, scaled down: 100 databases for 15 s, p99 <= 1 s as in the issue.
/// (It once read p50 1.006 s: a commit's frames raise a file event before the writer publishes
/// them in the `-shm`, and that publication raises none; the WAL task now looks again within
/// milliseconds when it sees frames past mxFrame.)
#[test]
fn fleet_lag_spread_100() {
    fleet_lag(100, Duration::from_secs(15), Duration::from_secs(1));
}

/// Lag under a spread load at full size: 200 databases for 60 s.
#[test]
#[ignore = "full size: WALSTREAM_FLEET_FULL=1 cargo test --release -p walstream --test tests it::fleet::fleet_lag_full -- --ignored --nocapture"]
fn fleet_lag_full() {
    assert!(std::env::var_os("WALSTREAM_FLEET_FULL").is_some());
    fleet_lag(200, Duration::from_secs(60), Duration::from_secs(1));
}

/// Whether a file replica holds a complete LTX file at any level.
fn has_ltx(replica: &Path) -> bool {
    let Ok(levels) = std::fs::read_dir(replica.join("ltx")) else {
        return false;
    };
    levels.flatten().any(|l| {
        std::fs::read_dir(l.path()).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| ltx::parse_file_name(&e.file_name().to_string_lossy()).is_some())
        })
    })
}
