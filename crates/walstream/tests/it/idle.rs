//! Idle costs nothing: the real `walstream replicate` on moto, behind a counting proxy
//! ([`FaultProxy`] with faults off records every request), measured over a quiet window after a
//! warm-up that ends once the last write's compactions are done.
//!
//! - `idle_one_database_*`: one database. Over the window: CPU ≤ 0.1 % of a core (utime + stime
//!   from `/proc/<pid>/stat` over wall time), zero requests at the proxy, zero new LTX files on
//!   the store, the database and its WAL unchanged (sha256 and mtime), no log line. Litestream
//!   0.5.17 replicates a second database in the same run, behind its own proxy, and its figures
//!   are printed beside (only that it ran is asserted).
//! - `idle_fleet_*`: databases from one `dir:` entry. Over the window: CPU ≤ 1 %, zero requests,
//!   zero new LTX files; RSS and descriptors printed.
//!
//! Each test prints one `idle-summary:` line per replicator with its figures. The defaults are
//! scaled down for the default suite (200 databases, 20 s windows); `scripts/bench-idle.sh` runs
//! the full figures through the environment:
//! - `WALSTREAM_IDLE_WINDOW_SECS`: the measured window (default 20);
//! - `WALSTREAM_IDLE_FLEET`: databases in the fleet (default 200);
//! - `WALSTREAM_IDLE_FLEET_LITESTREAM=1`: run Litestream on a fleet of the same size beside.
//!
//! Warm-up rule: the levels are shortened (L1 1 s, L2 2 s) and L0 retention is 1 s, so what the
//! last write owes is done within seconds. The test waits until, for every database, L1 and L2
//! hold the highest TXID on the store and L0 was pruned down to files L1 does not cover, and then
//! until the proxy saw no request for [`QUIET`] (longer than the lease's renewal interval: the
//! lease is renewed once after the last write, then lapses).
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant, SystemTime};

use rusqlite::Connection;

use super::fault_proxy::FaultProxy;
use super::util;

/// No request for this long ends the warm-up (the lease renews every 10 s, once after a write).
const QUIET: Duration = Duration::from_secs(15);
/// Compaction levels in the configs (L1, L2).
const LEVELS: usize = 2;

fn env_or_fail(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!(
            "{name} is not set: the idle tests need moto. Run scripts/test.sh, which installs and \
             starts it (scripts/servers/moto.sh) and runs the suite"
        ),
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn window() -> Duration {
    Duration::from_secs(env_num("WALSTREAM_IDLE_WINDOW_SECS", 20))
}

fn unique_bucket(tag: &str) -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("idle-{tag}-{}-{seq}-{nanos:x}", std::process::id())
}

/// One unsigned HTTP/1.1 request straight to moto (not through a proxy): status line and body.
fn http(endpoint: &str, method: &str, path: &str) -> (String, String) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("{host}: {e}"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp.lines().next().unwrap_or("").to_string();
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn create_bucket(endpoint: &str, bucket: &str) {
    let (status, body) = http(endpoint, "PUT", &format!("/{bucket}"));
    assert!(
        status.contains(" 200"),
        "create bucket {bucket}: {status} {body}"
    );
}

fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    xml.split(&format!("<{tag}>"))
        .nth(1)
        .and_then(|r| r.split(&format!("</{tag}>")).next())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every key in a bucket, listed straight from moto (all pages).
fn list_keys(endpoint: &str, bucket: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut path = format!("/{bucket}?list-type=2&max-keys=1000");
        if let Some(t) = &token {
            path.push_str(&format!("&continuation-token={}", percent_encode(t)));
        }
        let (status, body) = http(endpoint, "GET", &path);
        assert!(status.contains(" 200"), "list {bucket}: {status} {body}");
        for c in body.split("<Contents>").skip(1) {
            if let Some(k) = xml_tag(c, "Key") {
                keys.insert(k.to_string());
            }
        }
        if xml_tag(&body, "IsTruncated") != Some("true") {
            return keys;
        }
        token = xml_tag(&body, "NextContinuationToken").map(str::to_string);
        assert!(token.is_some(), "truncated listing without a token: {body}");
    }
}

/// `(prefix, level, min TXID, max TXID)` of an LTX key `<prefix>/<level %04x>/<min>-<max>.ltx`.
fn parse_ltx(key: &str) -> Option<(String, u32, u64, u64)> {
    let (rest, name) = key.rsplit_once('/')?;
    let (prefix, level) = rest.rsplit_once('/')?;
    let (min, max) = name.strip_suffix(".ltx")?.split_once('-')?;
    if level.len() != 4 {
        return None;
    }
    Some((
        prefix.to_string(),
        u32::from_str_radix(level, 16).ok()?,
        u64::from_str_radix(min, 16).ok()?,
        u64::from_str_radix(max, 16).ok()?,
    ))
}

fn ltx_keys(keys: &BTreeSet<String>) -> BTreeSet<String> {
    keys.iter()
        .filter(|k| parse_ltx(k).is_some())
        .cloned()
        .collect()
}

/// Databases (by replica prefix) whose last write's history is done: L1..L`levels` hold the
/// highest TXID on the store and no L0 file remains that L1 covers. Returns the databases still
/// owed something, with what.
fn owed(keys: &BTreeSet<String>, levels: usize) -> BTreeMap<String, String> {
    // prefix -> level -> highest max TXID; prefix -> L0 max TXIDs
    let mut top: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    let mut l0: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for k in keys {
        let Some((prefix, level, _min, max)) = parse_ltx(k) else {
            continue;
        };
        let e = top
            .entry(prefix.clone())
            .or_default()
            .entry(level)
            .or_default();
        *e = (*e).max(max);
        if level == 0 {
            l0.entry(prefix).or_default().push(max);
        }
    }
    let mut out = BTreeMap::new();
    for (prefix, by_level) in &top {
        // Snapshots (L9) are a full copy; compactions are L1..L`levels`.
        let last = by_level
            .iter()
            .filter(|(l, _)| **l as usize <= levels)
            .map(|(_, m)| *m)
            .max()
            .unwrap_or(0);
        let mut missing = Vec::new();
        for level in 1..=levels as u32 {
            let have = by_level.get(&level).copied().unwrap_or(0);
            if have < last {
                missing.push(format!("L{level} at {have:#x} < {last:#x}"));
            }
        }
        let l1 = by_level.get(&1).copied().unwrap_or(0);
        let prunable = l0
            .get(prefix)
            .map_or(0, |v| v.iter().filter(|m| **m < l1).count());
        if prunable > 0 {
            missing.push(format!("{prunable} L0 files covered by L1 not yet pruned"));
        }
        if !missing.is_empty() {
            out.insert(prefix.clone(), missing.join(", "));
        }
    }
    out
}

/// CPU ticks (utime + stime) of a process, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; `after` starts at field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn clk_tck() -> u64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident set size in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Open descriptors.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// sha256 and mtime of a file (`None` when it does not exist).
fn file_state(path: &Path) -> Option<(String, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((util::sha256_file(path), meta.modified().unwrap()))
}

fn wal_of(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// A replicator (walstream or Litestream) behind its own counting proxy, writing to one bucket.
struct Side {
    name: &'static str,
    proxy: FaultProxy,
    child: Child,
    log: PathBuf,
    bucket: String,
}

/// A side's counters at the start of the window.
struct Mark {
    at: Instant,
    ticks: u64,
    requests: usize,
    ltx: BTreeSet<String>,
    log_len: usize,
    files: Vec<Option<(String, SystemTime)>>,
}

/// A side's figures over the window.
#[derive(Debug)]
struct Figures {
    secs: f64,
    cpu_pct: f64,
    cpu_ticks: u64,
    requests: Vec<String>,
    new_ltx: Vec<String>,
    gone_ltx: usize,
    log: String,
    changed_files: Vec<PathBuf>,
    rss_mib: f64,
    fds: usize,
}

impl Side {
    /// Starts a proxy to moto, writes the config `yaml(proxy endpoint)` and starts `program`
    /// replicating on it.
    fn start(
        name: &'static str,
        program: &Path,
        dir: &Path,
        bucket: &str,
        yaml: impl FnOnce(&str) -> String,
    ) -> Side {
        let moto = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
        let proxy = FaultProxy::start(&moto);
        let config = dir.join(format!("{name}.yml"));
        std::fs::write(&config, yaml(&proxy.endpoint())).unwrap();
        let log = dir.join(format!("{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(program)
            .args(["replicate", "-config", config.to_str().unwrap()])
            .env_remove("LOG_LEVEL")
            .env_remove("LITESTREAM_CONFIG")
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", env_or_fail("AWS_ACCESS_KEY_ID"))
            .env(
                "AWS_SECRET_ACCESS_KEY",
                env_or_fail("AWS_SECRET_ACCESS_KEY"),
            )
            .env("WALSTREAM_COLD_AFTER", "2s")
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Side {
            name,
            proxy,
            child,
            log,
            bucket: bucket.to_string(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("{} exited with {st}; log:\n{}", self.name, self.log());
        }
    }

    fn keys(&self) -> BTreeSet<String> {
        list_keys(&env_or_fail("WALSTREAM_TEST_S3_ENDPOINT"), &self.bucket)
    }

    /// Waits until `dbs` databases are on the store, none is owed compactions or L0 pruning,
    /// and the proxy saw no request for [`QUIET`].
    fn settle(&mut self, dbs: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last_count = usize::MAX;
        let mut last_change = Instant::now();
        loop {
            self.assert_running();
            let count = self.proxy.records().len();
            if count != last_count {
                last_count = count;
                last_change = Instant::now();
            }
            let keys = self.keys();
            let prefixes: BTreeSet<String> = keys
                .iter()
                .filter_map(|k| parse_ltx(k).map(|p| p.0))
                .collect();
            let owed = owed(&keys, LEVELS);
            if prefixes.len() == dbs && owed.is_empty() && last_change.elapsed() >= QUIET {
                // The listing above happened after the quiet spell began: nothing is owed.
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not settled within {timeout:?}: {} of {dbs} databases on the store, {} owed \
                 (e.g. {:?}), last request {:?} ago; log tail:\n{}",
                self.name,
                prefixes.len(),
                owed.len(),
                owed.iter().next(),
                last_change.elapsed(),
                tail(&self.log(), 20)
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn mark(&self, files: &[PathBuf]) -> Mark {
        Mark {
            at: Instant::now(),
            ticks: cpu_ticks(self.pid()),
            requests: self.proxy.records().len(),
            ltx: ltx_keys(&self.keys()),
            log_len: self.log().len(),
            files: files.iter().map(|f| file_state(f)).collect(),
        }
    }

    fn figures(&self, m: &Mark, files: &[PathBuf]) -> Figures {
        let ticks = cpu_ticks(self.pid());
        let secs = m.at.elapsed().as_secs_f64();
        let records = self.proxy.records();
        let ltx = ltx_keys(&self.keys());
        let log = self.log();
        Figures {
            secs,
            cpu_ticks: ticks - m.ticks,
            cpu_pct: (ticks - m.ticks) as f64 / clk_tck() as f64 / secs * 100.0,
            requests: records[m.requests..]
                .iter()
                .map(|r| format!("{} {} {}", r.method, r.path, r.status))
                .collect(),
            new_ltx: ltx.difference(&m.ltx).cloned().collect(),
            gone_ltx: m.ltx.difference(&ltx).count(),
            log: log.get(m.log_len..).unwrap_or("").to_string(),
            changed_files: files
                .iter()
                .zip(&m.files)
                .filter(|(f, before)| file_state(f) != **before)
                .map(|(f, _)| f.clone())
                .collect(),
            rss_mib: rss_kib(self.pid()) as f64 / 1024.0,
            fds: fds(self.pid()),
        }
    }

    fn summary(&self, test: &str, dbs: usize, f: &Figures) -> String {
        let mut methods: BTreeMap<String, usize> = BTreeMap::new();
        for r in &f.requests {
            *methods
                .entry(r.split(' ').next().unwrap_or("").to_string())
                .or_default() += 1;
        }
        let line = format!(
            "idle-summary: test={test} replicator={} dbs={dbs} window={:.1}s cpu={:.3}% \
             cpu_ticks={} requests={} ({methods:?}) new_ltx={} deleted_ltx={} \
             changed_db_files={} log_lines={} rss={:.1}MiB fds={}",
            self.name,
            f.secs,
            f.cpu_pct,
            f.cpu_ticks,
            f.requests.len(),
            f.new_ltx.len(),
            f.gone_ltx,
            f.changed_files.len(),
            f.log.lines().count(),
            f.rss_mib,
            f.fds,
        );
        println!("{line}");
        line
    }

    /// SIGTERM, then a kill if it does not stop.
    fn stop(mut self) {
        // SAFETY: kill sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Requests counted by method and what they touched: a listing of the bucket, the lease, or an
/// LTX level (`GET L1`).
fn by_kind(records: &[super::fault_proxy::Record]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in records {
        let parts: Vec<&str> = r.path.trim_matches('/').split('/').collect();
        let what = match parts.as_slice() {
            [_bucket] => "list".to_string(),
            [.., level, name] if name.ends_with(".ltx") => {
                format!("L{}", u32::from_str_radix(level, 16).unwrap_or(99))
            }
            [.., name] => (*name).to_string(),
            [] => "?".to_string(),
        };
        *out.entry(format!("{} {what}", r.method)).or_default() += 1;
    }
    out
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The shared part of both configs: shortened levels and L0 retention, so that what a write
/// owes is done within the warm-up. Litestream 0.5.17 reads the same keys.
fn history_yaml() -> &'static str {
    "levels:\n  - interval: 1s\n  - interval: 2s\nl0-retention: 1s\nl0-retention-check-interval: 1s\n"
}

fn s3_replica_yaml(endpoint: &str, bucket: &str, path: &str, indent: &str) -> String {
    format!(
        "{indent}replica:\n{indent}  type: s3\n{indent}  bucket: {bucket}\n{indent}  path: {path}\n\
         {indent}  endpoint: {endpoint}\n{indent}  region: us-east-1\n{indent}  force-path-style: true\n"
    )
}

fn open_wal(db: &Path) -> Connection {
    let c = Connection::open(db).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);",
    )
    .unwrap();
    c
}

fn commit(c: &Connection, seed: u64) {
    let blob: Vec<u8> = (0..500u64).map(|i| (i * 31 + seed) as u8).collect();
    c.execute("INSERT INTO t(v) VALUES (?1)", [blob]).unwrap();
}

/// The replicators side by side: walstream (asserted) and, optionally, Litestream (printed).
fn replicators(with_litestream: bool) -> Vec<(&'static str, PathBuf)> {
    let mut v = vec![("walstream", util::bin())];
    if with_litestream {
        v.push(("litestream", util::litestream_bin()));
    }
    v
}

/// Prints the figures of every side and asserts walstream's against the limits; asserts only
/// that Litestream ran.
fn check(test: &str, dbs: usize, sides: &mut [Side], figures: &[Figures], max_cpu_pct: f64) {
    let mut summary = Vec::new();
    for (side, f) in sides.iter_mut().zip(figures) {
        side.assert_running();
        summary.push(side.summary(test, dbs, f));
    }
    for (side, f) in sides.iter().zip(figures) {
        if side.name != "walstream" {
            assert!(
                !ltx_keys(&side.keys()).is_empty(),
                "{} replicated nothing; log:\n{}",
                side.name,
                tail(&side.log(), 20)
            );
            continue;
        }
        let all = summary.join("\n");
        assert!(
            f.cpu_pct <= max_cpu_pct,
            "idle CPU {:.3} % > {max_cpu_pct} % of a core\n{all}",
            f.cpu_pct
        );
        assert!(
            f.requests.is_empty(),
            "requests at idle:\n{}\n{all}",
            f.requests.join("\n")
        );
        assert!(
            f.new_ltx.is_empty() && f.gone_ltx == 0,
            "LTX files changed at idle: new {:?}, {} deleted\n{all}",
            f.new_ltx,
            f.gone_ltx
        );
        assert!(
            f.changed_files.is_empty(),
            "database files written at idle: {:?}\n{all}",
            f.changed_files
        );
        assert!(
            f.log.trim().is_empty(),
            "log lines at idle (level info):\n{}\n{all}",
            f.log
        );
    }
}

/// One idle database, replicated to moto through a counting proxy. walstream's figures are
/// asserted; Litestream 0.5.17 replicates a second database in the same run and its figures are
/// printed beside.
#[test]
fn idle_one_database_costs_no_cpu_no_request_no_file_no_write() {
    let moto = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
    let dir = util::tempdir();
    let mut sides = Vec::new();
    let mut conns = Vec::new();
    let mut files = Vec::new();
    for (name, program) in replicators(true) {
        let bucket = unique_bucket(&name[..4]);
        create_bucket(&moto, &bucket);
        let db = dir.path().join(format!("{name}.db"));
        // The app: its connection stays open throughout, as a server's would.
        let c = open_wal(&db);
        commit(&c, 0);
        sides.push(Side::start(name, &program, dir.path(), &bucket, |ep| {
            format!(
                "{}dbs:\n  - path: {}\n{}",
                history_yaml(),
                db.display(),
                s3_replica_yaml(ep, &bucket, "one", "    ")
            )
        }));
        files.push(vec![db.clone(), wal_of(&db)]);
        conns.push(c);
    }
    // Warm-up: a few commits, then until the last one's compactions are done and all is quiet.
    for seed in 1..=5 {
        std::thread::sleep(Duration::from_millis(300));
        for c in &conns {
            commit(c, seed);
        }
    }
    sides[0].settle(1, Duration::from_secs(90));

    let marks: Vec<Mark> = sides.iter().zip(&files).map(|(s, f)| s.mark(f)).collect();
    std::thread::sleep(window());
    let figures: Vec<Figures> = sides
        .iter()
        .zip(&marks)
        .zip(&files)
        .map(|((s, m), f)| s.figures(m, f))
        .collect();
    check("one-database", 1, &mut sides, &figures, 0.1);
    drop(conns);
    for s in sides {
        s.stop();
    }
}

/// An idle fleet: `WALSTREAM_IDLE_FLEET` databases (200) from one `dir:` entry on moto, with
/// the same warm-up rule. CPU ≤ 1 % of a core and zero requests over the window; RSS and
/// descriptors printed. With `WALSTREAM_IDLE_FLEET_LITESTREAM=1`, Litestream replicates a fleet
/// of the same size beside it.
#[test]
fn idle_fleet_from_one_dir_entry_costs_no_cpu_no_request() {
    let moto = env_or_fail("WALSTREAM_TEST_S3_ENDPOINT");
    let n = env_num("WALSTREAM_IDLE_FLEET", 200) as usize;
    let with_litestream = std::env::var("WALSTREAM_IDLE_FLEET_LITESTREAM").as_deref() == Ok("1");
    let dir = util::tempdir();
    let t0 = Instant::now();
    let mut sides: Vec<Side> = Vec::new();
    let mut dbs = Vec::new();
    let timeout = Duration::from_secs(120 + n as u64 / 2);
    // One after the other: walstream settles first, so that Litestream's polling of its own
    // fleet cannot slow walstream's warm-up on the shared moto; both are measured together.
    for (name, program) in replicators(with_litestream) {
        let bucket = unique_bucket(&format!("fleet{}", &name[..4]));
        create_bucket(&moto, &bucket);
        let dbdir = dir.path().join(format!("{name}-dbs"));
        std::fs::create_dir(&dbdir).unwrap();
        let paths: Vec<PathBuf> = (0..n)
            .map(|i| dbdir.join(format!("tenant-{i:05}.db")))
            .collect();
        for (i, db) in paths.iter().enumerate() {
            commit(&open_wal(db), i as u64);
        }
        let mut side = Side::start(name, &program, dir.path(), &bucket, |ep| {
            format!(
                "{}dbs:\n  - dir: {}\n    pattern: '*.db'\n{}",
                history_yaml(),
                dbdir.display(),
                s3_replica_yaml(ep, &bucket, "fleet", "    ")
            )
        });
        // Warm-up: one more commit to every database once it replicates (tenants' apps come
        // and go: connections closed). One round keeps the default suite's warm-up short.
        for db in &paths {
            commit(&open_wal(db), 1);
        }
        let written = t0.elapsed();
        if name == "walstream" {
            side.settle(n, timeout);
            println!(
                "idle-fleet: {n} databases created, replicating and written in {written:.1?}, \
                 settled after {:.1?} (of which {QUIET:?} without a request), {} requests so far",
                t0.elapsed(),
                side.proxy.records().len()
            );
            println!(
                "idle-fleet: warm-up requests {:?}",
                by_kind(&side.proxy.records())
            );
        } else {
            // Litestream: until every database is on its store, then the same quiet spell's
            // length (it is never quiet: it polls).
            let deadline = Instant::now() + timeout;
            let mut gone = false;
            loop {
                // Litestream is the comparison, not the subject: at 1,000 databases its own
                // process exited during warm-up here once. Say so, and measure walstream alone.
                if let Some(st) = side.child.try_wait().unwrap() {
                    println!(
                        "idle-fleet: {name} exited with {st} during warm-up ({:.1?}); not compared. Log tail:\n{}",
                        t0.elapsed(),
                        tail(&side.log(), 20)
                    );
                    gone = true;
                    break;
                }
                let on_store: BTreeSet<String> = side
                    .keys()
                    .iter()
                    .filter_map(|k| parse_ltx(k).map(|p| p.0))
                    .collect();
                if on_store.len() >= n || Instant::now() > deadline {
                    println!(
                        "idle-fleet: {name}: {} of {n} databases on the store after {:.1?}",
                        on_store.len(),
                        t0.elapsed()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            if gone {
                side.stop();
                continue;
            }
            std::thread::sleep(QUIET);
        }
        sides.push(side);
        dbs.push(paths);
    }

    let files: Vec<Vec<PathBuf>> = dbs
        .iter()
        .map(|paths| {
            paths
                .iter()
                .flat_map(|db| [db.clone(), wal_of(db)])
                .collect()
        })
        .collect();
    let marks: Vec<Mark> = sides.iter().zip(&files).map(|(s, f)| s.mark(f)).collect();
    std::thread::sleep(window());
    let figures: Vec<Figures> = sides
        .iter()
        .zip(&marks)
        .zip(&files)
        .map(|((s, m), f)| s.figures(m, f))
        .collect();
    check("fleet", n, &mut sides, &figures, 1.0);
    for s in sides {
        s.stop();
    }
}
