//! `walstream restore`.
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use ltx::TxId;
use tracing::info;

use crate::restore::follow::FollowOptions;
use crate::restore::{self, IntegrityCheck, RestoreOptions, Target};
use crate::storage;

use super::{fmt_time, tabwrite, Source};

/// `restore [-o OUT] [-txid TXID | -timestamp TIME] [-generation ID] [-if-db-not-exists]
/// [-if-replica-exists] [-force] [-dry-run] [-json] [-integrity-check MODE] DB_PATH|REPLICA_URL`
///
/// A replica with only Litestream 0.3's `generations/` layout (or any replica with
/// `-generation`) is restored as a 0.3 backup, decrypted with the config's `age` identities.
#[derive(Debug, Clone, clap::Args)]
pub struct RestoreArgs {
    /// Output path of the restored database (required with a replica URL).
    #[arg(short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Config file.
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// Restore up to this hex TXID (inclusive); it must end an LTX file.
    #[arg(long = "txid", value_name = "TXID")]
    pub txid: Option<String>,
    /// Restore to this point in time (RFC 3339).
    #[arg(long = "timestamp", value_name = "TIMESTAMP")]
    pub timestamp: Option<String>,
    /// Litestream 0.3 backups: restore from this generation (default: the one with the latest
    /// data). A replica holding both a 0.5 `ltx/` layout and 0.3 `generations/` is restored from
    /// the 0.5 layout unless this is given; the 0.3 one is used when it is the only one.
    #[arg(long = "generation", value_name = "ID")]
    pub generation: Option<String>,
    /// Exit 0 without restoring if the output database already exists.
    #[arg(long = "if-db-not-exists")]
    pub if_db_not_exists: bool,
    /// Exit 0 without restoring if the replica has no backups.
    #[arg(long = "if-replica-exists")]
    pub if_replica_exists: bool,
    /// Print the restore plan and exit without writing a database.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Overwrite an existing output database and its -wal and -shm files.
    #[arg(long = "force")]
    pub force: bool,
    /// Print a JSON summary on success.
    #[arg(long = "json")]
    pub json: bool,
    /// Follow mode: after restoring, keep applying new changes to the (read-only) copy.
    #[arg(short = 'f', long = "follow")]
    pub follow: bool,
    /// Polling interval for follow mode (default 1s).
    #[arg(long = "follow-interval", value_name = "DURATION")]
    pub follow_interval: Option<String>,
    /// Files downloaded in parallel.
    #[arg(long = "parallelism", value_name = "NUM", default_value_t = 8)]
    pub parallelism: usize,
    /// Integrity check after restoring: none, quick or full.
    #[arg(long = "integrity-check", value_name = "MODE", default_value = "none")]
    pub integrity_check: IntegrityCheck,
    /// Log level: debug, info, warn, error.
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
    /// DB_PATH or REPLICA_URL (or a replica directory).
    pub path: String,
}

/// The `-json` summary, with Litestream's keys in Litestream's order.
#[derive(serde::Serialize)]
struct Summary<'a> {
    db_path: &'a str,
    replica: &'a str,
    txid: String,
    duration_ms: u128,
    integrity_check: &'a str,
}

/// Runs `restore`.
pub async fn run(args: RestoreArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.follow {
        if args.txid.is_some() {
            anyhow::bail!("cannot use follow mode with -txid");
        }
        if args.timestamp.is_some() {
            anyhow::bail!("cannot use follow mode with -timestamp");
        }
        if args.dry_run {
            anyhow::bail!("cannot use -dry-run with -f");
        }
    }
    let follow_interval = match &args.follow_interval {
        Some(d) => crate::config::values::parse_duration(d).filter(|d| !d.is_zero()).ok_or_else(|| {
            anyhow::anyhow!("invalid value {d:?} for flag -follow-interval: expected a duration such as 1s or 500ms")
        })?,
        None => restore::follow::DEFAULT_INTERVAL,
    };
    let target = match (&args.txid, &args.timestamp) {
        (Some(_), Some(_)) => anyhow::bail!("cannot specify both -txid and -timestamp"),
        (Some(t), None) => Target::TxId(t.parse::<TxId>().map_err(|_| {
            anyhow::anyhow!("invalid value {t:?} for flag -txid: expected hex TXID")
        })?),
        (None, Some(ts)) => Target::Timestamp(parse_rfc3339(ts).ok_or_else(|| {
            anyhow::anyhow!("invalid value {ts:?} for flag -timestamp: expected RFC 3339")
        })?),
        (None, None) => Target::Latest,
    };

    let source = Source::parse(&args.path);
    // A replica URL (or directory) needs -o; a database path finds its replica in the config
    // file and restores to itself unless -o says otherwise, as in Litestream.
    let (replica, output) = match &source {
        Source::Replica(_) => {
            let url = source.replica_url(args.config.as_deref())?;
            let Some(output) = args.output.clone() else {
                anyhow::bail!("-o is required when restoring from a replica URL: walstream restore -o /path/to/db {url}");
            };
            (ReplicaFrom::Url(url.to_string()), output)
        }
        Source::Database(db) => {
            let found = db_from_config(db, args.config.as_deref(), args.no_expand_env)?;
            let output = args.output.clone().unwrap_or_else(|| found.path.clone());
            (ReplicaFrom::Config(Box::new(found)), output)
        }
    };
    let output_str = output.to_string_lossy().into_owned();

    if args.follow {
        let store = open_store(&replica)?;
        let opts = FollowOptions {
            output: output.clone(),
            interval: follow_interval,
            parallelism: args.parallelism.max(1),
            force: args.force,
            integrity_check: args.integrity_check,
        };
        restore::follow::follow(&store, &opts, shutdown_signal())
            .await
            .with_context(|| format!("follow {} into {}", store.describe(), output.display()))?;
        return Ok(());
    }

    if args.if_db_not_exists && output.exists() {
        info!(path = %output.display(), "database already exists, skipping");
        return Ok(());
    }
    if !args.dry_run {
        restore::check_output(&output, args.force)?;
    }

    let store = open_store(&replica)?;
    if args.generation.is_some() {
        return restore_v03(&args, &replica, &store, &target, &output, started).await;
    }
    let files = restore::list(store.as_ref()).await?;
    if files.is_empty() && has_v03_layout(&store).await {
        return restore_v03(&args, &replica, &store, &target, &output, started).await;
    }
    let chain = match restore::plan(&files, &target, &store.describe()) {
        Ok(chain) => chain,
        Err(e) if e.is_no_backups() && args.if_replica_exists => {
            info!(replica = %store.describe(), "no matching backups found");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };

    if args.dry_run {
        print!(
            "{}",
            dry_run_plan(&args.path, &output_str, store.kind(), &chain)
        );
        return Ok(());
    }

    let opts = RestoreOptions {
        output: output.clone(),
        target,
        overwrite: args.force,
        parallelism: args.parallelism.max(1),
        integrity_check: args.integrity_check,
    };
    let summary = tokio::select! {
        r = restore::apply_with_fallback(&store, &files, chain.clone(), &opts) => {
            let txid = chain.last().map(|f| f.max_txid).unwrap_or_default();
            r.with_context(|| format!("restore to TXID {txid}"))?
        }
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; nothing was written to {}", output.display()),
    };

    if args.json {
        let s = Summary {
            db_path: &output_str,
            replica: store.kind(),
            txid: summary.txid.to_string(),
            duration_ms: started.elapsed().as_millis(),
            integrity_check: args.integrity_check.as_str(),
        };
        println!("{}", serde_json::to_string_pretty(&s)?);
    }
    Ok(())
}

/// Whether the replica holds a Litestream 0.3 `generations/` layout (a store that cannot list
/// it holds none as far as restore can tell).
async fn has_v03_layout(store: &storage::DynStore) -> bool {
    match store.list_objects(restore::v03::GENERATIONS_PREFIX).await {
        Ok(objects) => !restore::v03::classify(&objects).is_empty(),
        Err(e) => {
            tracing::debug!(replica = %store.describe(), error = %e, "no Litestream 0.3 layout readable");
            false
        }
    }
}

/// Restores a Litestream 0.3 backup (`generations/`).
async fn restore_v03(
    args: &RestoreArgs,
    replica: &ReplicaFrom,
    store: &storage::DynStore,
    target: &Target,
    output: &std::path::Path,
    started: Instant,
) -> anyhow::Result<()> {
    use restore::v03;
    let timestamp = match target {
        Target::Latest => None,
        Target::Timestamp(t) => Some(*t),
        Target::TxId(_) => anyhow::bail!(
            "-txid does not apply to Litestream 0.3 backups (generations/): use -timestamp or -generation"
        ),
    };
    if let Some(g) = &args.generation {
        if !v03::is_generation_id(g) {
            anyhow::bail!("invalid value {g:?} for flag -generation: expected 16 hex digits");
        }
    }
    let identities = match replica {
        ReplicaFrom::Config(db) => match &db.replica.age {
            Some(age) => {
                crate::age_keys::parse(age)
                    .with_context(|| {
                        format!("the age keys of the replica of {}", db.path.display())
                    })?
                    .identities
            }
            None => Vec::new(),
        },
        ReplicaFrom::Url(_) => Vec::new(),
    };
    let generations = v03::list(store).await?;
    let plan = match v03::plan(
        &generations,
        args.generation.as_deref(),
        timestamp,
        &store.describe(),
    ) {
        Ok(p) => p,
        Err(e) if e.is_no_backups() && args.if_replica_exists => {
            info!(replica = %store.describe(), "no matching backups found");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let output_str = output.to_string_lossy().into_owned();
    if args.dry_run {
        print!(
            "{}",
            v03::describe_plan(&args.path, &output_str, store.kind(), &plan)
        );
        return Ok(());
    }
    let opts = RestoreOptions {
        output: output.to_path_buf(),
        target: target.clone(),
        overwrite: args.force,
        parallelism: args.parallelism.max(1),
        integrity_check: args.integrity_check,
    };
    let summary = tokio::select! {
        r = v03::apply(store, &plan, &opts, std::sync::Arc::new(identities)) => {
            r.with_context(|| format!("restore Litestream 0.3 generation {}", plan.generation))?
        }
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; nothing was written to {}", output.display()),
    };
    tracing::debug!(generation = %summary.generation, snapshot_index = %format!("{:08x}", summary.snapshot_index), wal_index = ?summary.wal_index.map(|i| format!("{i:08x}")), pages = summary.pages, "restored a Litestream 0.3 backup");
    if args.json {
        let s = SummaryV03 {
            db_path: &output_str,
            replica: store.kind(),
            generation: &summary.generation,
            index: format!(
                "{:08x}",
                summary.wal_index.unwrap_or(summary.snapshot_index)
            ),
            duration_ms: started.elapsed().as_millis(),
            integrity_check: args.integrity_check.as_str(),
        };
        println!("{}", serde_json::to_string_pretty(&s)?);
    }
    Ok(())
}

/// The `-json` summary of a 0.3 restore: the generation and last WAL index instead of a TXID.
#[derive(serde::Serialize)]
struct SummaryV03<'a> {
    db_path: &'a str,
    replica: &'a str,
    generation: &'a str,
    index: String,
    duration_ms: u128,
    integrity_check: &'a str,
}

fn open_store(replica: &ReplicaFrom) -> anyhow::Result<storage::DynStore> {
    Ok(match replica {
        ReplicaFrom::Url(url) => storage::open_url(url)
            .with_context(|| format!("open replica {}", crate::paths::redact_url(url)))?,
        ReplicaFrom::Config(db) => db
            .replica
            .open_store()
            .with_context(|| format!("open the replica of {}", db.path.display()))?,
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    info!("signal received, stopping");
}

/// Where the replica comes from: a URL or directory argument, or a database's config entry.
enum ReplicaFrom {
    Url(String),
    Config(Box<crate::config::ResolvedDb>),
}

/// The database `db` as the config file lists it (`-config`, `$LITESTREAM_CONFIG`,
/// `/etc/litestream.yml`, `/etc/walstream.yml`), with its replica.
pub(crate) fn db_from_config(
    db: &std::path::Path,
    config: Option<&std::path::Path>,
    no_expand_env: bool,
) -> anyhow::Result<crate::config::ResolvedDb> {
    let Some(path) = super::replicate::find_config(config) else {
        anyhow::bail!(
            "{}: not a replica URL or replica directory (no ltx/ inside), and no config file to \
             look the database up in (-config, $LITESTREAM_CONFIG, /etc/litestream.yml, \
             /etc/walstream.yml)",
            db.display()
        );
    };
    let cfg = super::replicate::load_config(&path, no_expand_env)?;
    match cfg.find_db(db)? {
        Some(found) => Ok(found),
        None => anyhow::bail!(
            "database not found in config: {} (config {})",
            crate::config::expand_path(&db.to_string_lossy())
                .unwrap_or_else(|_| db.to_path_buf())
                .display(),
            path.display()
        ),
    }
}

/// The `-dry-run` output, in Litestream's layout.
fn dry_run_plan(source: &str, target: &str, kind: &str, chain: &[storage::LtxFileInfo]) -> String {
    let (min, max) = match (chain.first(), chain.last()) {
        (Some(a), Some(b)) => (a.min_txid, b.max_txid),
        _ => (TxId(0), TxId(0)),
    };
    let mut rows = vec![
        ["level", "file", "min_txid", "max_txid", "size", "timestamp"]
            .map(String::from)
            .to_vec(),
    ];
    for f in chain {
        rows.push(vec![
            f.level.to_string(),
            f.file_name(),
            f.min_txid.to_string(),
            f.max_txid.to_string(),
            f.size.to_string(),
            fmt_time(f.created_at),
        ]);
    }
    format!(
        "Restore plan:\n  source: {source}\n  target: {target}\n  replica: {kind}\n  txid range: {min} - {max}\n\nFiles to fetch:\n{}",
        tabwrite(&rows)
    )
}

/// Parses an RFC 3339 time as Go's `time.RFC3339` layout accepts it:
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = s.get(start..i)?;
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        nanos = digits.parse::<u32>().ok()? * 10u32.pow(9 - digits.len() as u32);
    }
    let offset_secs = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6
            && (tz.starts_with('+') || tz.starts_with('-'))
            && tz.as_bytes().get(3) == Some(&b':') =>
        {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            if h > 23 || m > 59 {
                return None;
            }
            let off = h * 3600 + m * 60;
            if tz.starts_with('-') {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::new(secs as u64, nanos))
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn secs(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    #[test]
    fn parse_rfc3339_utc_and_offsets() {
        assert_eq!(secs(parse_rfc3339("1970-01-01T00:00:00Z").unwrap()), 0);
        assert_eq!(
            secs(parse_rfc3339("2020-01-01T00:00:00Z").unwrap()),
            1_577_836_800
        );
        assert_eq!(
            secs(parse_rfc3339("2020-01-01T01:00:00+01:00").unwrap()),
            1_577_836_800
        );
        assert_eq!(
            secs(parse_rfc3339("2019-12-31T23:00:00-01:00").unwrap()),
            1_577_836_800
        );
        assert_eq!(
            secs(parse_rfc3339("2024-02-29T12:00:00Z").unwrap()),
            1_709_208_000
        );
        let t = parse_rfc3339("2020-01-01T00:00:00.5Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().subsec_millis(), 500);
    }

    #[test]
    fn parse_rfc3339_rejects_malformed() {
        for s in [
            "",
            "2020-01-01",
            "2020-01-01 00:00:00Z",
            "2020-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2020-01-01T00:00:00",
            "2020-01-01T00:00:00+0100",
            "2020-01-01T00:00:00.Z",
            "2020-01-01T24:00:00Z",
        ] {
            assert!(parse_rfc3339(s).is_none(), "{s}");
        }
    }

    #[test]
    fn dry_run_plan_matches_litestream_layout() {
        let f = storage::LtxFileInfo {
            level: 9,
            min_txid: TxId(1),
            max_txid: TxId(9),
            size: 267656,
            created_at: UNIX_EPOCH + Duration::from_secs(1_577_836_800),
        };
        let out = dry_run_plan("file:///r", "o2.db", "file", &[f]);
        assert_eq!(
            out,
            "Restore plan:\n  source: file:///r\n  target: o2.db\n  replica: file\n  txid range: 0000000000000001 - 0000000000000009\n\n\
             Files to fetch:\n\
             level  file                                   min_txid          max_txid          size    timestamp\n\
             9      0000000000000001-0000000000000009.ltx  0000000000000001  0000000000000009  267656  2020-01-01T00:00:00Z\n"
        );
    }
}
