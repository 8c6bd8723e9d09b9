//! `walstream demo`: the main job, visible. Replicates `./demo.db` (created if missing) to the
//! directory `./backup`, writes a row a second and prints how long each took to reach the
//! replica, and every few seconds restores the replica to a temporary file and compares its
//! checksum with the source's. Ctrl-C stops it cleanly (a final sync, exit 0).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::ReplicaConfig;
use crate::restore::{self, RestoreOptions, Target};
use crate::server::{DbSpec, DbStatus, Server, ServerOptions};

/// `demo [-log-level LEVEL]`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Log level for walstream's own log lines (default warn, so that the demo's lines stand out).
    #[arg(long = "log-level")]
    pub log_level: Option<String>,
}

/// The demo database and replica, relative to the working directory.
pub const DB: &str = "demo.db";
/// The replica directory.
pub const BACKUP: &str = "backup";
/// How often the replica is restored and compared.
const CHECK_EVERY: Duration = Duration::from_secs(3);
/// How long a row may take to reach the replica before the demo says so.
const LAG_LIMIT: Duration = Duration::from_secs(15);

/// Runs the demo until SIGINT or SIGTERM. Fails at the end if a comparison did not match.
pub async fn run(_args: DemoArgs) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt()).context("listen for SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("listen for SIGTERM")?;
    let db = std::path::absolute(DB).with_context(|| format!("resolve {DB}"))?;
    let created = create_if_missing(&db)?;
    let replica = ReplicaConfig {
        path: Some(BACKUP.into()),
        ..Default::default()
    };
    let store = crate::config::open_replica(&replica)
        .with_context(|| format!("open the replica ./{BACKUP}"))?;
    println!(
        "walstream demo: replicating ./{DB}{} to ./{BACKUP}/ (a file replica); a row a second; Ctrl-C to stop",
        if created { " (created)" } else { "" }
    );
    let server = Server::new(ServerOptions::default());
    server.add(DbSpec {
        path: db.clone(),
        store: store.clone(),
        lease: replica.lease_options(),
        opts: Default::default(),
    })?;
    let conn = rusqlite::Connection::open(&db).with_context(|| format!("open {}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5))
        .with_context(|| format!("open {}", db.display()))?;

    let mut mismatches = 0u32;
    let mut checks = 0u32;
    let outcome: anyhow::Result<()> = async {
        // Start once the replica holds what the database holds.
        tokio::select! {
            r = wait_caught_up(&server, None, LAG_LIMIT) => {
                if r.is_none() {
                    println!("the replica has not caught up with ./{DB} after {LAG_LIMIT:?}; writing anyway");
                }
            }
            _ = sigint.recv() => return Ok(()),
            _ = sigterm.recv() => return Ok(()),
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_check = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = sigint.recv() => return Ok(()),
                _ = sigterm.recv() => return Ok(()),
            }
            let before = status(&server).and_then(|s| s.remote_txid).map(|t| t.0);
            let row = insert_row(&conn, &db)?;
            let committed = Instant::now();
            tokio::select! {
                r = wait_caught_up(&server, before, LAG_LIMIT) => match r {
                    Some(txid) => println!(
                        "row {row}: on the replica {:.0} ms after COMMIT (TXID {txid})",
                        committed.elapsed().as_secs_f64() * 1000.0
                    ),
                    None => println!(
                        "row {row}: not on the replica after {LAG_LIMIT:?} (last error: {})",
                        status(&server).and_then(|s| s.last_error).unwrap_or_else(|| "none".into())
                    ),
                },
                _ = sigint.recv() => return Ok(()),
                _ = sigterm.recv() => return Ok(()),
            }
            if last_check.elapsed() >= CHECK_EVERY {
                last_check = Instant::now();
                checks += 1;
                if !check(&store, &db, &server).await? {
                    mismatches += 1;
                }
            }
        }
    }
    .await;
    drop(conn);
    println!("stopping: final sync to ./{BACKUP}");
    server.shutdown().await;
    outcome?;
    println!(
        "stopped; {checks} restore checks, {mismatches} mismatches. Restore it yourself: walstream restore -o restored.db {BACKUP}"
    );
    if mismatches > 0 {
        anyhow::bail!("{mismatches} of {checks} restores of ./{BACKUP} did not match ./{DB}");
    }
    Ok(())
}

/// Creates the demo database with a small table if it does not exist. Returns whether it did.
fn create_if_missing(db: &Path) -> anyhow::Result<bool> {
    let existed = db.exists();
    let c = rusqlite::Connection::open(db).with_context(|| format!("create {}", db.display()))?;
    c.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body TEXT NOT NULL, at TEXT DEFAULT CURRENT_TIMESTAMP);",
    )
    .with_context(|| format!("set up the demo database {}", db.display()))?;
    Ok(!existed)
}

fn insert_row(conn: &rusqlite::Connection, db: &Path) -> anyhow::Result<i64> {
    conn.execute(
        "INSERT INTO notes(body) VALUES ('written by walstream demo')",
        [],
    )
    .with_context(|| format!("write a row to {}", db.display()))?;
    Ok(conn.last_insert_rowid())
}

fn status(server: &Server) -> Option<DbStatus> {
    server.status().into_iter().next()
}

/// Waits until the replica's TXID has moved past `before` and equals the local one. Returns
/// that TXID, or `None` after `limit`.
async fn wait_caught_up(server: &Server, before: Option<u64>, limit: Duration) -> Option<String> {
    let start = Instant::now();
    loop {
        if let Some(s) = status(server) {
            let local = s.local_txid.map(|t| t.0);
            let remote = s.remote_txid.map(|t| t.0);
            if remote.is_some() && remote > before && remote >= local {
                return s.remote_txid.map(|t| t.to_string());
            }
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Restores the replica to a temporary file and compares its checksum with the source's.
/// Returns whether they match (a comparison skipped because the source moved on counts as a
/// match and says so).
async fn check(
    store: &crate::storage::DynStore,
    db: &Path,
    server: &Server,
) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("walstream-demo-")
        .tempdir()
        .context("create a temporary directory for the restore check")?;
    let out: PathBuf = dir.path().join("restored.db");
    let summary = match restore::run(store, &RestoreOptions::new(&out, Target::Latest)).await {
        Ok(s) => s,
        Err(e) => {
            println!(
                "check: restoring ./{BACKUP} failed: {}",
                crate::error_chain::line(&e)
            );
            return Ok(false);
        }
    };
    let local = status(server).and_then(|s| s.local_txid);
    if local != Some(summary.txid) {
        println!(
            "check: restored TXID {} but ./{DB} is at {} (another writer?); comparison skipped",
            summary.txid,
            local.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
        );
        return Ok(true);
    }
    let (src, rows) = checksum(db)?;
    let (restored, _) = checksum(&out)?;
    let ok = src == restored;
    println!(
        "check: restored ./{BACKUP} at TXID {} to a temp file: checksum {restored:016x}, source {src:016x} ({rows} rows): {}",
        summary.txid,
        if ok { "match" } else { "MISMATCH" }
    );
    Ok(ok)
}

/// A checksum of a database's contents: FNV-1a over every table's schema and rows (in the
/// order SQLite scans them, which is the same in page-identical files), and the row count.
pub fn checksum(db: &Path) -> anyhow::Result<(u64, u64)> {
    use rusqlite::types::ValueRef;
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("open {}", db.display()))?;
    let mut h = Fnv::default();
    let mut rows = 0u64;
    let ctx = || format!("checksum {}", db.display());
    let tables: Vec<(String, String)> = c
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                ))
            })?
            .collect()
        })
        .with_context(ctx)?;
    for (name, sql) in tables {
        h.write(sql.as_bytes());
        let mut stmt = c
            .prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))
            .with_context(ctx)?;
        let n = stmt.column_count();
        let mut q = stmt.query([]).with_context(ctx)?;
        while let Some(r) = q.next().with_context(ctx)? {
            rows += 1;
            for i in 0..n {
                match r.get_ref(i).with_context(ctx)? {
                    ValueRef::Null => h.write(&[0]),
                    ValueRef::Integer(v) => {
                        h.write(&[1]);
                        h.write(&v.to_le_bytes());
                    }
                    ValueRef::Real(v) => {
                        h.write(&[2]);
                        h.write(&v.to_le_bytes());
                    }
                    ValueRef::Text(t) => {
                        h.write(&[3]);
                        h.write(&(t.len() as u64).to_le_bytes());
                        h.write(t);
                    }
                    ValueRef::Blob(b) => {
                        h.write(&[4]);
                        h.write(&(b.len() as u64).to_le_bytes());
                        h.write(b);
                    }
                }
            }
        }
    }
    Ok((h.0, rows))
}

/// 64-bit FNV-1a.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}
