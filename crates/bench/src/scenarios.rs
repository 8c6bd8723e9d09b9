//! The scenarios of issue 10. Each call runs one tool once and pushes its figures.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::proxy::{Proxy, Record};
use crate::report::{Better, Results};
use crate::run::{self, Tool};
use crate::s3;

/// Sizes and places, from the command line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Opts {
    pub rounds: usize,
    pub load_secs: u64,
    pub lag_commits: usize,
    pub restore_mb: u64,
    pub restores: usize,
    pub large_mb: u64,
    pub large_baseline_secs: u64,
    pub fleet: usize,
    pub fleet_window_secs: u64,
    pub catchup_timeout_secs: u64,
    #[serde(skip)]
    pub work: PathBuf,
}

pub struct Ctx {
    pub moto: String,
    pub proxy: Proxy,
    pub opts: Opts,
    pub litestream: Tool,
}

static BUCKETS: AtomicUsize = AtomicUsize::new(0);

impl Ctx {
    /// A fresh bucket on moto.
    fn bucket(&self, tag: &str) -> Result<String> {
        let n = BUCKETS.fetch_add(1, Ordering::SeqCst);
        let b = format!("bench-{}-{tag}-{n}", std::process::id());
        s3::create_bucket(&self.moto, &b)?;
        Ok(b)
    }

    /// A fresh empty directory under the work dir.
    fn dir(&self, tag: &str) -> Result<PathBuf> {
        let n = BUCKETS.fetch_add(1, Ordering::SeqCst);
        let d = self.opts.work.join(format!("{tag}-{n}"));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        Ok(d)
    }

    fn records(&self, bucket: &str) -> Vec<Record> {
        let p = format!("/{bucket}");
        self.proxy
            .records()
            .into_iter()
            .filter(|r| r.path == p || r.path.starts_with(&format!("{p}/")))
            .collect()
    }

    /// Waits until an object (at `level`, `None` = any) completed after `after` at the proxy.
    fn wait_object(
        &self,
        bucket: &str,
        level: Option<&str>,
        after: Instant,
        timeout: Duration,
    ) -> Option<Record> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.records(bucket).into_iter().find(|r| {
                r.end > after
                    && r.completes_object()
                    && r.path.ends_with(".ltx")
                    && level.is_none_or(|l| r.path.contains(&format!("/{l}/")))
            });
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn cfg_file(dir: &Path, name: &str, body: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, body).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

/// Idle lag: a small commit every ~1.5 s, commit -> L0 object complete at the proxy.
pub fn idle_lag(ctx: &Ctx, tool: &Tool, res: &mut Results) -> Result<()> {
    let dir = ctx.dir(&format!("lag-{}", tool.name))?;
    let bucket = ctx.bucket("lag")?;
    let db = dir.join("app.db");
    let c = run::open_app(&db)?;
    c.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])?;
    let cfg = cfg_file(
        &dir,
        "r.yml",
        &run::s3_config(&db, &ctx.proxy.endpoint(), &bucket, "db"),
    )?;
    let r = run::start(tool, &cfg, &dir.join("replicate.log"))?;
    let t0 = Instant::now();
    if ctx
        .wait_object(&bucket, Some("0000"), t0, Duration::from_secs(60))
        .is_none()
    {
        let tail = r.log_tail(20);
        r.kill9();
        bail!(
            "{}: no first L0 object within 60 s; log:\n{tail}",
            tool.name
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = r.cpu_secs();
    let w0 = Instant::now();
    let mut lags = Vec::new();
    for _ in 0..ctx.opts.lag_commits {
        c.execute("INSERT INTO t(v) VALUES (randomblob(100))", [])?;
        let t = Instant::now();
        match ctx.wait_object(&bucket, Some("0000"), t, Duration::from_secs(10)) {
            Some(rec) => lags.push(rec.end.duration_since(t).as_secs_f64()),
            None => lags.push(10.0),
        }
        let spent = t.elapsed();
        if spent < Duration::from_millis(1500) {
            std::thread::sleep(Duration::from_millis(1500) - spent);
        }
    }
    let cpu_pct = 100.0 * (r.cpu_secs() - cpu0) / w0.elapsed().as_secs_f64();
    r.kill9();
    let s = "idle lag";
    res.push(
        s,
        "lag p50",
        "s",
        Better::Lower,
        tool.name,
        run::percentile(&lags, 50.0),
    );
    res.push(
        s,
        "lag max",
        "s",
        Better::Lower,
        tool.name,
        run::percentile(&lags, 100.0),
    );
    res.push(
        s,
        "CPU while committing every 1.5 s",
        "% core",
        Better::Lower,
        tool.name,
        cpu_pct,
    );
    Ok(())
}

/// Requests by method and request bytes over `recs`.
fn count(recs: &[Record]) -> (BTreeMap<String, u64>, u64) {
    let mut by = BTreeMap::new();
    let mut bytes = 0;
    for r in recs {
        *by.entry(r.method.clone()).or_insert(0) += 1;
        bytes += r.req_bytes;
    }
    (by, bytes)
}

/// Sustained load, kill -9 3 s after the last commit, restore, rows lost.
pub fn load(ctx: &Ctx, tool: &Tool, res: &mut Results) -> Result<()> {
    let s = "sustained load";
    let dur = Duration::from_secs(ctx.opts.load_secs);
    // The writer alone, right before, on a fresh database.
    let dir = ctx.dir(&format!("load-{}", tool.name))?;
    let alone_db = dir.join("alone.db");
    let n_alone = run::run_mix(&run::open_app(&alone_db)?, dur)?;
    let alone = n_alone as f64 / dur.as_secs_f64();
    res.push(
        s,
        "writer tx/s alone",
        "tx/s",
        Better::Higher,
        tool.name,
        alone,
    );
    std::fs::remove_file(&alone_db).ok();
    std::fs::remove_file(dir.join("alone.db-wal")).ok();

    let bucket = ctx.bucket("load")?;
    let db = dir.join("app.db");
    let c = run::open_app(&db)?;
    c.execute("INSERT INTO t(v) VALUES (randomblob(500))", [])?;
    let cfg = cfg_file(
        &dir,
        "r.yml",
        &run::s3_config(&db, &ctx.proxy.endpoint(), &bucket, "db"),
    )?;
    let direct = cfg_file(
        &dir,
        "direct.yml",
        &run::s3_config(&db, &ctx.moto, &bucket, "db"),
    )?;
    let r = run::start(tool, &cfg, &dir.join("replicate.log"))?;
    if ctx
        .wait_object(&bucket, None, r.started, Duration::from_secs(60))
        .is_none()
    {
        let tail = r.log_tail(20);
        r.kill9();
        bail!(
            "{}: nothing replicated within 60 s; log:\n{tail}",
            tool.name
        );
    }
    let n = run::run_mix(&c, dur)?;
    let last_commit = Instant::now();
    let rate = n as f64 / dur.as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = r.cpu_secs();
    let rss = r.peak_rss_mib();
    r.kill9();
    let source_rows = run::rows(&db)?;
    drop(c);
    let (by, bytes) = count(&ctx.records(&bucket));
    let out = dir.join("restored.db");
    run::restore_cfg(tool, &direct, &db, &out)?;
    let restored = run::rows(&out)?;
    let _ = last_commit;
    res.push(
        s,
        "writer tx/s replicated",
        "tx/s",
        Better::Higher,
        tool.name,
        rate,
    );
    res.push(
        s,
        "writer rate kept",
        "%",
        Better::Higher,
        tool.name,
        100.0 * rate / alone,
    );
    res.push(
        s,
        "rows lost 3 s after the last commit",
        "rows",
        Better::Lower,
        tool.name,
        (source_rows - restored) as f64,
    );
    res.push(
        s,
        "rows lost share",
        "%",
        Better::Lower,
        tool.name,
        100.0 * (source_rows - restored) as f64 / source_rows.max(1) as f64,
    );
    res.push(s, "replicator CPU", "s", Better::Lower, tool.name, cpu);
    res.push(s, "peak RSS", "MiB", Better::Lower, tool.name, rss);
    res.push(
        s,
        "bytes uploaded (killed run)",
        "MB",
        Better::Lower,
        tool.name,
        bytes as f64 / 1e6,
    );
    for m in ["PUT", "POST", "GET", "HEAD", "DELETE"] {
        res.push(
            s,
            &format!("{m} requests (killed run)"),
            "req",
            Better::Lower,
            tool.name,
            *by.get(m).unwrap_or(&0) as f64,
        );
    }
    res.push(
        s,
        "database size (killed run)",
        "MB",
        Better::Info,
        tool.name,
        run::db_bytes(&db) as f64 / 1e6,
    );
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// The same load, then until the replica equals the source: bytes and requests owed in full.
pub fn load_catchup(ctx: &Ctx, tool: &Tool, res: &mut Results) -> Result<()> {
    let s = "sustained load, until caught up";
    let dur = Duration::from_secs(ctx.opts.load_secs);
    let dir = ctx.dir(&format!("catchup-{}", tool.name))?;
    let bucket = ctx.bucket("catchup")?;
    let db = dir.join("app.db");
    let c = run::open_app(&db)?;
    c.execute("INSERT INTO t(v) VALUES (randomblob(500))", [])?;
    let cfg = cfg_file(
        &dir,
        "r.yml",
        &run::s3_config(&db, &ctx.proxy.endpoint(), &bucket, "db"),
    )?;
    let direct = cfg_file(
        &dir,
        "direct.yml",
        &run::s3_config(&db, &ctx.moto, &bucket, "db"),
    )?;
    let r = run::start(tool, &cfg, &dir.join("replicate.log"))?;
    if ctx
        .wait_object(&bucket, None, r.started, Duration::from_secs(60))
        .is_none()
    {
        let tail = r.log_tail(20);
        r.kill9();
        bail!(
            "{}: nothing replicated within 60 s; log:\n{tail}",
            tool.name
        );
    }
    run::run_mix(&c, dur)?;
    let last_commit = Instant::now();
    let source_rows = run::rows(&db)?;
    let out = dir.join("restored.db");
    let mut caught: Option<Instant> = None;
    let deadline = last_commit + Duration::from_secs(ctx.opts.catchup_timeout_secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        // Quiet for 1 s at L0 before trying a restore.
        let recs = ctx.records(&bucket);
        let last_l0 = recs
            .iter()
            .filter(|r| r.completes_object() && r.path.contains("/0000/"))
            .map(|r| r.end)
            .max();
        if last_l0.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
            continue;
        }
        let probe = Instant::now();
        if run::restore_cfg(tool, &direct, &db, &out).is_ok()
            && run::rows(&out).unwrap_or(-1) == source_rows
        {
            caught = Some(probe);
            break;
        }
    }
    let cpu = r.cpu_secs();
    r.kill9();
    drop(c);
    let Some(at) = caught else {
        bail!(
            "{}: the replica did not reach {source_rows} rows within {} s",
            tool.name,
            ctx.opts.catchup_timeout_secs
        );
    };
    let recs: Vec<Record> = ctx
        .records(&bucket)
        .into_iter()
        .filter(|r| r.end <= at)
        .collect();
    let (by, bytes) = count(&recs);
    let db_mb = run::db_bytes(&db) as f64 / 1e6;
    res.push(
        s,
        "time to catch up after the last commit",
        "s",
        Better::Lower,
        tool.name,
        at.duration_since(last_commit).as_secs_f64(),
    );
    res.push(
        s,
        "bytes uploaded until caught up",
        "MB",
        Better::Lower,
        tool.name,
        bytes as f64 / 1e6,
    );
    res.push(s, "database size", "MB", Better::Info, tool.name, db_mb);
    res.push(
        s,
        "bytes uploaded per MB of database",
        "x",
        Better::Lower,
        tool.name,
        bytes as f64 / 1e6 / db_mb,
    );
    res.push(
        s,
        "requests until caught up",
        "req",
        Better::Lower,
        tool.name,
        recs.len() as f64,
    );
    for m in ["PUT", "POST", "GET", "DELETE"] {
        res.push(
            s,
            &format!("{m} requests until caught up"),
            "req",
            Better::Lower,
            tool.name,
            *by.get(m).unwrap_or(&0) as f64,
        );
    }
    res.push(
        s,
        "replicator CPU until caught up",
        "s",
        Better::Lower,
        tool.name,
        cpu,
    );
    // What walstream uploaded must restore with the real Litestream.
    if tool.name == "walstream" {
        let ok = match run::restore_cfg(&ctx.litestream, &direct, &db, &out) {
            Ok(_) => run::rows(&out).unwrap_or(-1) == source_rows,
            Err(e) => {
                eprintln!("bench: {e:#}");
                false
            }
        };
        res.push(
            s,
            "Litestream 0.5.17 restores walstream's replica (1 = all rows)",
            "bool",
            Better::Higher,
            tool.name,
            if ok { 1.0 } else { 0.0 },
        );
    }
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

/// A database replicated and compacted by `tool`, ready for restores.
pub struct RestoreSetup {
    pub tool: Tool,
    pub dir: PathBuf,
    pub db: PathBuf,
    pub bucket: String,
    pub direct: PathBuf,
    pub file_replica: PathBuf,
    pub rows: i64,
    pub objects: Vec<(String, u64)>,
}

/// Fills a database while `tool` replicates it, waits for its default L1 compaction to cover the
/// last L0 file, and mirrors the replica into a file-replica directory.
pub fn restore_setup(ctx: &Ctx, tool: &Tool, res: &mut Results) -> Result<RestoreSetup> {
    let s = "restore";
    let dir = ctx.dir(&format!("restore-{}", tool.name))?;
    let bucket = ctx.bucket("restore")?;
    let db = dir.join("app.db");
    drop(run::open_app(&db)?);
    let cfg = cfg_file(
        &dir,
        "r.yml",
        &run::s3_config(&db, &ctx.proxy.endpoint(), &bucket, "db"),
    )?;
    let direct = cfg_file(
        &dir,
        "direct.yml",
        &run::s3_config(&db, &ctx.moto, &bucket, "db"),
    )?;
    let r = run::start(tool, &cfg, &dir.join("replicate.log"))?;
    run::fill(&db, ctx.opts.restore_mb * 1_000_000, 1000)?;
    let rows = run::rows(&db)?;
    // Wait for L0 to settle, then for an L1 file reaching the newest L0 TXID.
    let deadline = Instant::now() + Duration::from_secs(240);
    let objects = loop {
        std::thread::sleep(Duration::from_secs(1));
        let keys = s3::list(&ctx.moto, &bucket, "db/")?;
        let max_of = |lvl: &str| {
            keys.iter()
                .filter(|(k, _)| k.contains(&format!("/{lvl}/")))
                .filter_map(|(k, _)| {
                    k.rsplit('/')
                        .next()?
                        .strip_suffix(".ltx")?
                        .split('-')
                        .nth(1)
                        .map(|h| u64::from_str_radix(h, 16).unwrap_or(0))
                })
                .max()
                .unwrap_or(0)
        };
        let l0 = max_of("0000");
        let l1 = max_of("0001");
        let quiet = ctx
            .records(&bucket)
            .iter()
            .filter(|r| r.path.contains("/0000/") && r.completes_object())
            .map(|r| r.end)
            .max()
            .is_some_and(|t| t.elapsed() > Duration::from_secs(3));
        if quiet && l0 > 0 && l1 >= l0 {
            break keys;
        }
        if Instant::now() > deadline {
            eprintln!("bench: {}: no L1 compaction covering L0 {l0} (L1 at {l1}) within 240 s; restoring what is there", tool.name);
            break keys;
        }
    };
    r.kill9();
    let objects: Vec<(String, u64)> = objects
        .into_iter()
        .filter(|(k, _)| k.ends_with(".ltx"))
        .collect();
    // File counts and sizes per level.
    let mut per_level: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (k, size) in &objects {
        let lvl = k.split('/').nth(1).unwrap_or("?").to_string();
        let e = per_level.entry(lvl).or_default();
        e.0 += 1;
        e.1 += size;
    }
    for (lvl, (n, bytes)) in &per_level {
        res.note(
            s,
            tool.name,
            &format!("level {lvl}: {n} files, {:.1} MB", *bytes as f64 / 1e6),
        );
    }
    res.push(
        s,
        "database size",
        "MB",
        Better::Info,
        tool.name,
        run::db_bytes(&db) as f64 / 1e6,
    );
    res.push(
        s,
        "files on the replica",
        "files",
        Better::Info,
        tool.name,
        objects.len() as f64,
    );
    let file_replica = dir.join("file-replica");
    s3::mirror_to_file_replica(&ctx.moto, &bucket, "db", &file_replica)?;
    Ok(RestoreSetup {
        tool: tool.clone(),
        dir,
        db,
        bucket,
        direct,
        file_replica,
        rows,
        objects,
    })
}

/// One restore from moto (timed, checked) and one raw parallel GET pass over the same objects.
pub fn restore_round(ctx: &Ctx, st: &RestoreSetup, res: &mut Results) -> Result<()> {
    let s = "restore";
    let out = st.dir.join("restored.db");
    let secs = run::restore_cfg(&st.tool, &st.direct, &st.db, &out)?;
    let got = run::rows(&out)?;
    if got != st.rows {
        bail!("{}: restored {got} rows of {}", st.tool.name, st.rows);
    }
    let mb = run::db_bytes(&out) as f64 / 1e6;
    res.push(
        s,
        "restore from moto",
        "MB/s",
        Better::Higher,
        st.tool.name,
        mb / secs,
    );
    // The level restore reads: the highest non-snapshot level holding files (L1 after compaction).
    let lvl = ["0001", "0000"]
        .into_iter()
        .find(|l| {
            st.objects
                .iter()
                .any(|(k, _)| k.contains(&format!("/{l}/")))
        })
        .unwrap_or("0000");
    let objs: Vec<(String, u64)> = st
        .objects
        .iter()
        .filter(|(k, _)| k.contains(&format!("/{lvl}/")))
        .cloned()
        .collect();
    let (bytes, gsecs) = s3::parallel_get(&ctx.moto, &st.bucket, &objs, 8, 8 << 20)?;
    let raw = bytes as f64 / 1e6 / gsecs;
    res.push(
        s,
        "moto raw parallel GET (8 x 8 MiB ranges)",
        "MB/s",
        Better::Info,
        st.tool.name,
        raw,
    );
    res.push(
        s,
        "restore share of raw GET rate",
        "%",
        Better::Higher,
        st.tool.name,
        100.0 * (mb / secs) / raw,
    );
    Ok(())
}

/// Restore from the file replica, beside `cp -r` + `sync` of its files.
pub fn restore_file(st: &RestoreSetup, res: &mut Results) -> Result<()> {
    let s = "restore";
    let copy = st.dir.join("cp-copy");
    let _ = std::fs::remove_dir_all(&copy);
    let t = Instant::now();
    let ok = std::process::Command::new("cp")
        .arg("-r")
        .arg(&st.file_replica)
        .arg(&copy)
        .status()?
        .success()
        && std::process::Command::new("sync").status()?.success();
    let cp_secs = t.elapsed().as_secs_f64();
    if !ok {
        bail!("cp -r {} failed", st.file_replica.display());
    }
    let _ = std::fs::remove_dir_all(&copy);
    let out = st.dir.join("restored-file.db");
    let url = format!("file://{}", st.file_replica.display());
    let secs = run::restore(&st.tool, &[&url], &out)?;
    let got = run::rows(&out)?;
    if got != st.rows {
        bail!(
            "{}: restored {got} rows of {} from the file replica",
            st.tool.name,
            st.rows
        );
    }
    let mb = run::db_bytes(&out) as f64 / 1e6;
    res.push(
        s,
        "restore from a file replica",
        "MB/s",
        Better::Higher,
        st.tool.name,
        mb / secs,
    );
    res.push(
        s,
        "file restore time / (cp + sync) time",
        "x",
        Better::Lower,
        st.tool.name,
        secs / cp_secs,
    );
    Ok(())
}

/// The app's longest commit latency: small commits every 5 ms until `stop`.
fn commit_loop(db: &Path, stop: &AtomicBool) -> Result<(f64, u64)> {
    let c = run::open_app(db)?;
    let mut worst = 0f64;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        c.execute("INSERT INTO t(v) VALUES (randomblob(200))", [])?;
        worst = worst.max(t.elapsed().as_secs_f64());
        n += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok((worst, n))
}

/// The large database, made once: `<work>/large/app.db`.
pub fn large_setup(ctx: &Ctx) -> Result<PathBuf> {
    let dir = ctx.opts.work.join("large");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("app.db");
    let t = Instant::now();
    run::fill(&db, ctx.opts.large_mb * 1_000_000, 5000)?;
    eprintln!(
        "bench: made a {} MB database in {:.0} s",
        run::db_bytes(&db) / 1_000_000,
        t.elapsed().as_secs_f64()
    );
    Ok(db)
}

/// Leaves only the database in its directory (a fresh start for the next tool).
fn large_reset(db: &Path) -> Result<()> {
    let c = run::open_app(db)?;
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    drop(c);
    let dir = db.parent().context("no parent")?;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p != db {
            if p.is_dir() {
                std::fs::remove_dir_all(&p)?;
            } else {
                std::fs::remove_file(&p)?;
            }
        }
    }
    Ok(())
}

/// The app's longest commit without any replicator, over the baseline window.
pub fn large_baseline(ctx: &Ctx, db: &Path, res: &mut Results) -> Result<()> {
    large_reset(db)?;
    let stop = AtomicBool::new(false);
    let (worst, n) = std::thread::scope(|sc| {
        let h = sc.spawn(|| commit_loop(db, &stop));
        std::thread::sleep(Duration::from_secs(ctx.opts.large_baseline_secs));
        stop.store(true, Ordering::Relaxed);
        h.join().map_err(|_| anyhow::anyhow!("writer panicked"))?
    })?;
    res.push(
        "large database",
        "longest commit, no replicator",
        "s",
        Better::Info,
        "none",
        worst,
    );
    res.push(
        "large database",
        "commits, no replicator",
        "n",
        Better::Info,
        "none",
        n as f64,
    );
    Ok(())
}

/// Cold start on the large database: time to the first complete snapshot, peak RSS, and the
/// app's longest commit meanwhile.
pub fn large(ctx: &Ctx, tool: &Tool, db: &Path, res: &mut Results) -> Result<()> {
    let s = "large database";
    large_reset(db)?;
    let bucket = ctx.bucket("large")?;
    let cfgdir = ctx.dir(&format!("large-cfg-{}", tool.name))?;
    let cfg = cfg_file(
        &cfgdir,
        "r.yml",
        &run::s3_config(db, &ctx.proxy.endpoint(), &bucket, "db"),
    )?;
    let stop = AtomicBool::new(false);
    let out = std::thread::scope(|sc| -> Result<(Option<f64>, f64, f64)> {
        let h = sc.spawn(|| commit_loop(db, &stop));
        std::thread::sleep(Duration::from_millis(300));
        let r = run::start(tool, &cfg, &cfgdir.join("replicate.log"))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut snap = None;
        let mut rss = 0f64;
        while Instant::now() < deadline {
            rss = rss.max(r.peak_rss_mib());
            let done = ctx.records(&bucket).into_iter().find(|rec| {
                rec.completes_object()
                    && rec
                        .path
                        .rsplit('/')
                        .next()
                        .is_some_and(|n| n.starts_with("0000000000000001-"))
            });
            if let Some(rec) = done {
                snap = Some(rec.end.duration_since(r.started).as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        rss = rss.max(r.peak_rss_mib());
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        let (worst, _) = h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        if snap.is_none() {
            eprintln!(
                "bench: {}: no complete snapshot within 600 s; log:\n{}",
                tool.name,
                r.log_tail(20)
            );
        }
        r.kill9();
        Ok((snap, rss, worst))
    })?;
    let (snap, rss, worst) = out;
    res.push(
        s,
        "time to first complete snapshot",
        "s",
        Better::Lower,
        tool.name,
        snap.unwrap_or(f64::NAN),
    );
    res.push(
        s,
        "peak RSS while snapshotting",
        "MiB",
        Better::Lower,
        tool.name,
        rss,
    );
    res.push(
        s,
        "longest commit while the tool snapshots",
        "s",
        Better::Lower,
        tool.name,
        worst,
    );
    std::fs::remove_dir_all(&cfgdir).ok();
    Ok(())
}

/// The idle fleet, through scripts/bench-idle.sh (its own moto; both tools in one run).
pub fn fleet(ctx: &Ctx, repo: &Path, res: &mut Results) -> Result<()> {
    let out = std::process::Command::new("bash")
        .arg(repo.join("scripts/bench-idle.sh"))
        .arg(ctx.opts.fleet_window_secs.to_string())
        .arg(ctx.opts.fleet.to_string())
        .current_dir(repo)
        .output()
        .context("running scripts/bench-idle.sh")?;
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let log = std::env::temp_dir().join("walstream-bench-idle.log");
    std::fs::write(&log, &text).ok();
    let mut seen = 0;
    // With --nocapture a test's name can precede its summary on the same line.
    for line in text
        .lines()
        .filter_map(|l| l.find("idle-summary:").map(|i| &l[i..]))
    {
        let mut v = BTreeMap::new();
        for kv in line.split_whitespace().skip(1) {
            if let Some((k, val)) = kv.split_once('=') {
                v.insert(
                    k.to_string(),
                    val.trim_end_matches('%')
                        .trim_end_matches("MiB")
                        .to_string(),
                );
            }
        }
        let f = |k: &str| {
            v.get(k)
                .and_then(|x| x.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let tool = match v.get("replicator").map(String::as_str) {
            Some("walstream") => "walstream",
            Some("litestream") => "litestream",
            _ => continue,
        };
        let dbs = f("dbs");
        let window = v
            .get("window")
            .and_then(|w| w.trim_end_matches('s').parse::<f64>().ok())
            .unwrap_or(ctx.opts.fleet_window_secs as f64);
        let sc = if dbs <= 1.0 {
            "idle, 1 database".to_string()
        } else {
            format!("idle fleet, {dbs} databases")
        };
        res.push(&sc, "CPU", "% core", Better::Lower, tool, f("cpu"));
        res.push(&sc, "RSS", "MiB", Better::Lower, tool, f("rss"));
        res.push(
            &sc,
            "requests per minute",
            "req/min",
            Better::Lower,
            tool,
            f("requests") * 60.0 / window,
        );
        seen += 1;
    }
    if seen == 0 {
        bail!(
            "scripts/bench-idle.sh printed no idle-summary line (exit {}); see {}",
            out.status,
            log.display()
        );
    }
    if !out.status.success() {
        res.note(
            "idle fleet",
            "walstream",
            &format!(
                "scripts/bench-idle.sh exited {} (a walstream idle limit was breached)",
                out.status
            ),
        );
    }
    Ok(())
}
