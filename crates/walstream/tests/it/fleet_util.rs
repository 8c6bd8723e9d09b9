//! Helpers for the server tests (issue 9): small SQLite databases, the L0 files of a file
//! replica, a running `walstream replicate` with its log, and /proc figures (CPU, RSS,
//! descriptors, limits).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::util;

/// Creates a WAL-mode database with a table `t(id, v)` and one row.
pub fn create_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL);
         INSERT INTO t(v) VALUES ('first');",
    )
    .unwrap();
}

/// An app connection (busy timeout set).
pub fn open(path: &Path) -> Connection {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    c
}

/// One committed row; returns when COMMIT returned.
pub fn commit(c: &Connection, tag: &str) {
    c.execute("INSERT INTO t(v) VALUES (?1)", [tag]).unwrap();
}

/// `PRAGMA wal_checkpoint(mode)`: `(busy, log, checkpointed)`.
pub fn checkpoint(c: &Connection, mode: &str) -> (i64, i64, i64) {
    c.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

/// The newest max TXID among the complete L0 files of a file replica (`<replica>/ltx/0`);
/// temp files (hidden, `.tmp`) are not complete and do not count.
pub fn max_l0(replica: &Path) -> Option<u64> {
    let rd = std::fs::read_dir(replica.join("ltx").join("0")).ok()?;
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".ltx")?;
            let (min, max) = stem.split_once('-')?;
            if min.len() != 16 || max.len() != 16 {
                return None;
            }
            u64::from_str_radix(max, 16).ok()
        })
        .max()
}

/// Polls `max_l0` every `every` until it is above `above`; the time it took, or `None` after
/// `within`.
pub fn wait_l0_above(
    replica: &Path,
    above: Option<u64>,
    within: Duration,
    every: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if max_l0(replica) > above {
            return Some(t0.elapsed());
        }
        if t0.elapsed() > within {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// `walstream restore -o <out> <url>`, then the restored database's logical digest.
pub fn restore_digest(url: &str, out: &Path) -> Result<String, String> {
    util::remove_db(out);
    let r = util::walstream(&["restore", "-o", out.to_str().unwrap(), url]);
    if r.code != Some(0) {
        return Err(format!("{}: {:?}: {}", r.cmdline, r.code, r.stderr.trim()));
    }
    Ok(util::logical_digest(out))
}

/// A running `walstream replicate`, its stderr in a log file. Killed on drop.
pub struct Replicator {
    pub child: Child,
    pub log: PathBuf,
}

impl Replicator {
    /// `[prefix...] walstream replicate -config <cfg>` with extra environment.
    pub fn start(cfg: &Path, log: &Path, env: &[(&str, &str)], prefix: &[&str]) -> Replicator {
        let err = std::fs::File::create(log).unwrap();
        let mut cmd = if let Some((first, rest)) = prefix.split_first() {
            let mut c = Command::new(first);
            c.args(rest).arg(util::bin());
            c
        } else {
            Command::new(util::bin())
        };
        cmd.args(["replicate", "-config"])
            .arg(cfg)
            .env_remove("LOG_LEVEL")
            .env_remove("LITESTREAM_CONFIG")
            .env_remove("WALSTREAM_COLD_AFTER")
            .stdout(err.try_clone().unwrap())
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Replicator {
            child: cmd.spawn().unwrap(),
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for messages.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics (with the log) if the process has exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("walstream replicate exited ({st}):\n{}", self.log_tail());
        }
    }

    /// SIGTERM, then waits (up to `within`) for exit; the exit status.
    pub fn stop(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields after the command name in /proc/<pid>/stat (index 0 is the state).
fn stat_fields(pid: u32) -> Vec<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &s[s.rfind(')').unwrap() + 2..];
    after.split_whitespace().map(str::to_string).collect()
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let f = stat_fields(pid);
    // Fields 14 and 15 of stat(5); index 0 here is field 3.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Clock ticks per second.
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident set size, in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Targets of a process's open descriptors.
pub fn fd_targets(pid: &str) -> Vec<PathBuf> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `(soft, hard)` "Max open files" from /proc/<pid>/limits.
pub fn nofile_limits(pid: u32) -> (String, String) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .to_string();
    let f: Vec<&str> = line["Max open files".len()..].split_whitespace().collect();
    (f[0].to_string(), f[1].to_string())
}

/// Percentile (0..=100) of sorted durations.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A file:// URL of a path that may not exist yet.
pub fn file_url_of(path: &Path) -> String {
    format!("file://{}", path.display())
}
