//! Processes (the replicators), /proc figures, and the SQLite workloads.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, RngCore};
use rusqlite::Connection;

/// One replicator under test.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: &'static str,
    pub bin: PathBuf,
}

/// A running `replicate`.
pub struct Running {
    pub child: Child,
    pub started: Instant,
    pub log: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// CPU seconds (utime + stime) so far.
    pub fn cpu_secs(&self) -> f64 {
        cpu_secs(self.pid())
    }
    /// Peak RSS (VmHWM) in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        status_kib(self.pid(), "VmHWM:") as f64 / 1024.0
    }
    /// SIGKILL, then reaps.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let l: Vec<&str> = s.lines().collect();
        l[l.len().saturating_sub(n)..].join("\n")
    }
}

pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of `pid` in seconds (0 if it is gone).
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name in parentheses: state is field 3; utime 14, stime 15.
    let Some(after) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0.0;
    };
    let f: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    ticks as f64 / clk_tck()
}

/// A `kB` field of /proc/<pid>/status.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The replicator config for one database on S3 at `endpoint`; Litestream 0.5.17 and walstream
/// read the same keys. Everything else is left at its default.
pub fn s3_config(db: &Path, endpoint: &str, bucket: &str, path: &str) -> String {
    format!(
        "dbs:\n  - path: {}\n    replica:\n      type: s3\n      bucket: {bucket}\n      path: {path}\n      \
         endpoint: {endpoint}\n      region: us-east-1\n      force-path-style: true\n",
        db.display()
    )
}

fn command(tool: &Tool) -> Command {
    let mut c = Command::new(&tool.bin);
    c.env_remove("LITESTREAM_CONFIG")
        .env_remove("LOG_LEVEL")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("WALSTREAM_COLD_AFTER")
        .stdin(Stdio::null());
    c
}

/// Starts `replicate -config <cfg>` with its output in `log`.
pub fn start(tool: &Tool, cfg: &Path, log: &Path) -> Result<Running> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let child = command(tool)
        .arg("replicate")
        .arg("-config")
        .arg(cfg)
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {} replicate", tool.bin.display()))?;
    Ok(Running {
        child,
        started: Instant::now(),
        log: log.to_path_buf(),
    })
}

/// `restore -o out <args...>` (flags before the positional argument, for Go's flag parsing); returns the seconds it took. `out` is removed first.
pub fn restore(tool: &Tool, args: &[&str], out: &Path) -> Result<f64> {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", out.display()));
    }
    let t = Instant::now();
    let o = command(tool)
        .arg("restore")
        .arg("-o")
        .arg(out)
        .args(args)
        .output()
        .with_context(|| format!("running {} restore", tool.name))?;
    let secs = t.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!(
            "{} restore {:?} failed ({}): {}{}",
            tool.name,
            args,
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(secs)
}

/// `restore -config cfg -o out db`.
pub fn restore_cfg(tool: &Tool, cfg: &Path, db: &Path, out: &Path) -> Result<f64> {
    let (c, d) = (cfg.display().to_string(), db.display().to_string());
    restore(tool, &["-config", &c, &d], out)
}

pub fn open_app(db: &Path) -> Result<Connection> {
    let c = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    c.busy_timeout(Duration::from_secs(30))?;
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);",
    )
    .with_context(|| format!("setting up {}", db.display()))?;
    Ok(c)
}

pub fn rows(db: &Path) -> Result<i64> {
    let c = Connection::open(db).with_context(|| format!("opening {}", db.display()))?;
    c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .with_context(|| format!("counting rows of {}", db.display()))
}

/// One transaction of the mix: 10 inserts of 500 random bytes, 5 updates of random rows.
pub fn mix_tx(c: &Connection, rng: &mut impl RngCore, max_id: &mut i64) -> Result<()> {
    let tx = c.unchecked_transaction()?;
    {
        let mut ins = tx.prepare_cached("INSERT INTO t(v) VALUES (?1)")?;
        let mut blob = [0u8; 500];
        for _ in 0..10 {
            rng.fill_bytes(&mut blob);
            ins.execute([&blob[..]])?;
        }
        *max_id = tx.last_insert_rowid();
        let mut upd = tx.prepare_cached("UPDATE t SET v = ?1 WHERE id = ?2")?;
        for _ in 0..5 {
            rng.fill_bytes(&mut blob);
            let id = rng.gen_range(1..=(*max_id).max(1));
            upd.execute(rusqlite::params![&blob[..], id])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Runs the mix as fast as possible for `dur`: returns transactions committed.
pub fn run_mix(c: &Connection, dur: Duration) -> Result<u64> {
    let mut rng = rand::thread_rng();
    let mut max_id: i64 = c.query_row("SELECT coalesce(max(id), 0) FROM t", [], |r| r.get(0))?;
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < dur {
        mix_tx(c, &mut rng, &mut max_id)?;
        n += 1;
    }
    Ok(n)
}

/// Fills `db` with random 1,000-byte rows until it holds about `bytes`, `per_tx` rows a commit.
pub fn fill(db: &Path, bytes: u64, per_tx: usize) -> Result<()> {
    let c = open_app(db)?;
    let mut rng = rand::thread_rng();
    let rows = bytes / 1040; // a 1,000-byte row takes about 1,040 bytes of page space
    let mut blob = [0u8; 1000];
    let mut done = 0u64;
    while done < rows {
        let tx = c.unchecked_transaction()?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO t(v) VALUES (?1)")?;
            for _ in 0..per_tx {
                rng.fill_bytes(&mut blob);
                ins.execute([&blob[..]])?;
            }
        }
        tx.commit()?;
        done += per_tx as u64;
    }
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

pub fn db_bytes(db: &Path) -> u64 {
    std::fs::metadata(db).map(|m| m.len()).unwrap_or(0)
}

/// Sorted copy; p in 0..=100.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let idx = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[idx.min(s.len() - 1)]
}
