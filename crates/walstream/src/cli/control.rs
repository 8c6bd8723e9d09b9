//! The control-socket commands, as Litestream 0.5.17's: `start`, `stop`, `sync [-wait]`,
//! `register -replica URL`, `unregister [-dry-run]`, `list`, `info`. Each talks HTTP to a running
//! `replicate` (walstream's or Litestream's) over `-socket` (default
//! `/var/run/litestream.sock`), and prints what Litestream prints, or JSON with `-json`.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use crate::control::{
    http, ErrorBody, InfoResponse, ListResponse, PathRequest, RegisterRequest, StatusResponse,
    SyncRequest, SyncResponse, DEFAULT_SOCKET,
};

/// Flags every control command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct SocketArgs {
    /// Path to the control socket.
    #[arg(long = "socket", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Output raw JSON instead of human-readable text.
    #[arg(long = "json")]
    pub json: bool,
    /// Maximum time to wait in seconds.
    #[arg(long = "timeout")]
    pub timeout: Option<i64>,
}

impl SocketArgs {
    fn timeout(&self, default: u64) -> anyhow::Result<u64> {
        match self.timeout {
            None => Ok(default),
            Some(t) if t <= 0 => bail!("timeout must be greater than 0"),
            Some(t) => Ok(t as u64),
        }
    }
}

/// `start`/`stop`/`unregister`: one database.
#[derive(Debug, Clone, clap::Args)]
pub struct DbArgs {
    /// Socket flags.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// With `unregister`: show what would be sent and send nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// DB_PATH.
    pub path: Option<String>,
}

/// `sync [-wait] DB_PATH`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncArgs {
    /// Socket flags.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Block until the replica holds the database's TXID.
    #[arg(long = "wait")]
    pub wait: bool,
    /// DB_PATH.
    pub path: Option<String>,
}

/// `register -replica URL DB_PATH`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegisterArgs {
    /// Socket flags.
    #[command(flatten)]
    pub socket: SocketArgs,
    /// Replica URL (s3://bucket/prefix, file:///backup/path, ...).
    #[arg(long = "replica")]
    pub replica: Option<String>,
    /// DB_PATH.
    pub path: Option<String>,
}

/// `list`, `info`.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Socket flags.
    #[command(flatten)]
    pub socket: SocketArgs,
}

fn db_path(p: &Option<String>) -> anyhow::Result<&str> {
    match p.as_deref() {
        Some(p) if !p.is_empty() => Ok(p),
        _ => bail!("database path required"),
    }
}

async fn call(
    socket: &Path,
    method: &str,
    target: &str,
    body: Option<Vec<u8>>,
    timeout: u64,
    what: &str,
) -> anyhow::Result<Vec<u8>> {
    let (status, body) = http::request(
        socket,
        method,
        target,
        body.as_deref(),
        Duration::from_secs(timeout),
    )
    .await?;
    if status != 200 {
        let text = String::from_utf8_lossy(&body).trim().to_string();
        match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) if !e.error.is_empty() => bail!("{what} failed: {}", e.error),
            _ => bail!("{what} failed: {text}"),
        }
    }
    Ok(body)
}

fn parse<T: for<'de> serde::Deserialize<'de>>(body: &[u8]) -> anyhow::Result<T> {
    serde_json::from_slice(body).context("failed to parse response")
}

fn print_json(v: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[derive(Serialize)]
struct StateResult<'a> {
    status: &'a str,
    db_path: &'a str,
    state: &'a str,
    txid: u64,
    socket: String,
}

/// `start` or `stop`.
pub async fn start_stop(args: DbArgs, start: bool) -> anyhow::Result<()> {
    let path = db_path(&args.path)?;
    let timeout = args.socket.timeout(30)?;
    let (endpoint, what, state) = if start {
        ("/start", "start", "running")
    } else {
        ("/stop", "stop", "stopped")
    };
    let req = serde_json::to_vec(&PathRequest {
        path: path.to_string(),
        timeout,
    })?;
    let body = call(
        &args.socket.socket,
        "POST",
        endpoint,
        Some(req),
        timeout,
        what,
    )
    .await?;
    let r: StatusResponse = parse(&body)?;
    let out = StateResult {
        status: &r.status,
        db_path: &r.path,
        state,
        txid: r.txid.unwrap_or(0),
        socket: args.socket.socket.display().to_string(),
    };
    if args.socket.json {
        return print_json(&out);
    }
    println!("status: {}", out.status);
    println!("db_path: {}", out.db_path);
    println!("state: {}", out.state);
    println!("txid: {}", out.txid);
    println!("socket: {}", out.socket);
    Ok(())
}

#[derive(Serialize)]
struct SyncResult<'a> {
    db_path: &'a str,
    txid: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    replica_txid: Option<u64>,
    duration_ms: u128,
}

/// `sync [-wait]`.
pub async fn sync(args: SyncArgs) -> anyhow::Result<()> {
    let path = db_path(&args.path)?;
    let timeout = args.socket.timeout(30)?;
    let req = serde_json::to_vec(&SyncRequest {
        path: path.to_string(),
        wait: args.wait,
        timeout,
    })?;
    let t0 = Instant::now();
    let body = call(
        &args.socket.socket,
        "POST",
        "/sync",
        Some(req),
        // The server bounds its own wait by `timeout`; leave room for its answer.
        timeout + 5,
        "sync",
    )
    .await?;
    let r: SyncResponse = parse(&body)?;
    let out = SyncResult {
        db_path: &r.path,
        txid: r.txid,
        replica_txid: args.wait.then_some(r.replicated_txid),
        duration_ms: t0.elapsed().as_millis(),
    };
    if args.socket.json {
        return print_json(&out);
    }
    println!("db_path: {}", out.db_path);
    println!("txid: {}", out.txid);
    if let Some(t) = out.replica_txid {
        println!("replica_txid: {t}");
    }
    println!("duration_ms: {}", out.duration_ms);
    Ok(())
}

#[derive(Serialize)]
struct RegisterResult<'a> {
    status: &'a str,
    db_path: &'a str,
    replica: &'a str,
    socket: String,
}

/// `register -replica URL`.
pub async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let path = db_path(&args.path)?;
    let Some(replica) = args.replica.as_deref().filter(|r| !r.is_empty()) else {
        bail!(
            "-replica is required. Try: walstream register -replica s3://bucket/prefix /path/to/db"
        );
    };
    let timeout = args.socket.timeout(30)?;
    let req = serde_json::to_vec(&RegisterRequest {
        path: path.to_string(),
        replica_url: replica.to_string(),
    })?;
    let body = call(
        &args.socket.socket,
        "POST",
        "/register",
        Some(req),
        timeout,
        "register",
    )
    .await?;
    let r: StatusResponse = parse(&body)?;
    let out = RegisterResult {
        status: &r.status,
        db_path: &r.path,
        replica,
        socket: args.socket.socket.display().to_string(),
    };
    if args.socket.json {
        return print_json(&out);
    }
    let shown = match out.status {
        "already_registered" | "already_exists" => "already registered",
        s => s,
    };
    println!("status: {shown}");
    println!("db_path: {}", out.db_path);
    println!("replica: {}", out.replica);
    println!("socket: {}", out.socket);
    Ok(())
}

#[derive(Serialize)]
struct UnregisterResult<'a> {
    status: &'a str,
    db_path: &'a str,
    final_txid: u64,
    socket: String,
}

/// `unregister [-dry-run]`.
pub async fn unregister(args: DbArgs) -> anyhow::Result<()> {
    let path = db_path(&args.path)?;
    let timeout = args.socket.timeout(30)?;
    if args.dry_run {
        println!("Dry run: unregister request preview");
        println!("  database: {path}");
        println!("  socket: {}", args.socket.socket.display());
        println!("  replicas: daemon-managed replica for this database");
        println!(
            "  final sync: the daemon syncs the database and replica before the command completes"
        );
        println!("  timeout: {timeout}s");
        println!("No unregister request was sent.");
        return Ok(());
    }
    let req = serde_json::to_vec(&PathRequest {
        path: path.to_string(),
        timeout,
    })?;
    let body = call(
        &args.socket.socket,
        "POST",
        "/unregister",
        Some(req),
        timeout,
        "unregister",
    )
    .await?;
    let r: StatusResponse = parse(&body)?;
    let out = UnregisterResult {
        status: &r.status,
        db_path: &r.path,
        final_txid: r.txid.unwrap_or(0),
        socket: args.socket.socket.display().to_string(),
    };
    if args.socket.json {
        return print_json(&out);
    }
    println!("status: {}", out.status);
    println!("db_path: {}", out.db_path);
    println!("final_txid: {}", out.final_txid);
    println!("socket: {}", out.socket);
    Ok(())
}

/// RFC 3339 at second precision (Litestream's CLI shows times so).
fn short_time(t: &str) -> String {
    humantime::parse_rfc3339_weak(t)
        .map(crate::cli::fmt_time)
        .unwrap_or_else(|_| t.to_string())
}

/// `list`.
pub async fn list(args: DaemonArgs) -> anyhow::Result<()> {
    let timeout = args.socket.timeout(10)?;
    let body = call(&args.socket.socket, "GET", "/list", None, timeout, "list").await?;
    let r: ListResponse = parse(&body)?;
    if args.socket.json {
        return print_json(&r);
    }
    for d in &r.databases {
        let last = d
            .last_sync_at
            .as_deref()
            .map(short_time)
            .unwrap_or_else(|| "never".into());
        println!("{} [{}] (last sync: {last})", d.path, d.status);
    }
    Ok(())
}

/// `info`.
pub async fn info(args: DaemonArgs) -> anyhow::Result<()> {
    let timeout = args.socket.timeout(10)?;
    let body = call(&args.socket.socket, "GET", "/info", None, timeout, "info").await?;
    let r: InfoResponse = parse(&body)?;
    if args.socket.json {
        return print_json(&r);
    }
    println!("Daemon version {}", r.version);
    println!("  PID:        {}", r.pid);
    println!(
        "  Uptime:     {}",
        humantime::format_duration(Duration::from_secs(r.uptime_seconds))
    );
    println!("  Started at: {}", short_time(&r.started_at));
    println!("  Databases:  {}", r.database_count);
    Ok(())
}
