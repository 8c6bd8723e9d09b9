//! Run-time control of a running `replicate`: the databases it knows (started or stopped), the
//! control socket (Litestream 0.5's HTTP-over-Unix-socket API), and the watch of `dir:` entries.
//!
//! Endpoints and bodies are Litestream 0.5.17's (checked against the real binary):
//! - `POST /start`, `/stop`: `{"path","timeout"}` → `{"status","path","txid"}`;
//! - `POST /sync`: `{"path","wait","timeout"}` → `{"status","path","txid","replicated_txid"}`,
//!   status `no_change`, `synced_local` or (with `wait`) `synced`;
//! - `POST /register`: `{"path","replica_url"}` → `{"status","path"}`;
//! - `POST /unregister`: `{"path","timeout"}` → `{"status","path","txid"}`;
//! - `GET /txid?path=` → `{"txid"}`; `GET /list` → `{"databases":[{"path","status"}]}`;
//!   `GET /info` → `{"version","pid","uptime_seconds","started_at","database_count"}`;
//! - errors: `{"error","details"?}` with 400, 404 or 500.
//!
//! walstream adds `GET /status` (per database: local and replica TXID, lag, backlog, last
//! error), which `walstream status` asks for.
pub mod dirwatch;
pub mod http;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::meta::MetaDir;
use crate::server::{DbSpec, Server, ServerError};
use crate::TxId;

use self::http::{Request, Response};

/// The default socket path, as Litestream's.
pub const DEFAULT_SOCKET: &str = "/var/run/litestream.sock";
/// The default socket permissions.
pub const DEFAULT_PERMISSIONS: u32 = 0o600;

/// How to build a database's [`DbSpec`] from a replica URL (`register`).
pub type SpecFromUrl = Box<dyn Fn(&Path, &str) -> anyhow::Result<DbSpec> + Send + Sync>;

struct Entry {
    spec: DbSpec,
    running: bool,
}

/// The databases of a running `replicate`, over its [`Server`].
pub struct Control {
    server: Arc<Server>,
    entries: tokio::sync::Mutex<BTreeMap<PathBuf, Entry>>,
    spec_from_url: SpecFromUrl,
    started_at: SystemTime,
    started: std::time::Instant,
}

/// `{"error": ..., "details": ...}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// The message.
    pub error: String,
    /// More, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// Body of `/start`, `/stop`, `/unregister`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PathRequest {
    /// Database path.
    #[serde(default)]
    pub path: String,
    /// Seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
}

/// Body of `/sync`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Database path.
    #[serde(default)]
    pub path: String,
    /// Wait for the replica.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
    /// Seconds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timeout: u64,
}

/// Body of `/register`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Database path.
    #[serde(default)]
    pub path: String,
    /// Replica URL.
    #[serde(default)]
    pub replica_url: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Answer of `/start`, `/stop`, `/unregister` (and `/register`, without `txid`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusResponse {
    /// `started`, `already_running`, `stopped`, `already_stopped`, `registered`, ...
    pub status: String,
    /// Database path.
    pub path: String,
    /// Local TXID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txid: Option<u64>,
}

/// Answer of `/sync`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SyncResponse {
    /// `no_change`, `synced_local` or `synced`.
    pub status: String,
    /// Database path.
    pub path: String,
    /// Local TXID after the sync.
    pub txid: u64,
    /// The replica's TXID.
    #[serde(default)]
    pub replicated_txid: u64,
}

/// One database of `/list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListEntry {
    /// Database path.
    pub path: String,
    /// `replicating` or `stopped` (Litestream's), or `failed` (walstream: it failed
    /// permanently; `status` shows why).
    pub status: String,
    /// RFC 3339: when the replica was last known to hold every local change. Litestream's is
    /// its last sync pass, which it runs every second even when nothing changed. A walstream
    /// database sleeps while idle, so: the time of the answer while the replica is caught up
    /// and the database healthy, else when the replica's TXID last advanced; absent before
    /// the first upload and for a stopped database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_at: Option<String>,
}

/// Answer of `/list`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ListResponse {
    /// The databases.
    pub databases: Vec<ListEntry>,
}

/// Answer of `/info`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InfoResponse {
    /// Version of the daemon.
    pub version: String,
    /// Its process id.
    pub pid: u32,
    /// Seconds since the socket opened.
    pub uptime_seconds: u64,
    /// RFC 3339.
    pub started_at: String,
    /// Databases known.
    pub database_count: usize,
}

/// One database of `walstream status` (and of `GET /status`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DbReport {
    /// Database path.
    pub database: String,
    /// `replicating`, `stopped`, `error`, `not replicating` (no daemon), `no database`.
    pub status: String,
    /// Newest local TXID (hex, as Litestream prints TXIDs).
    pub local_txid: Option<String>,
    /// Newest TXID on the replica.
    pub replica_txid: Option<String>,
    /// Age of the oldest local change not yet on the replica, in seconds; 0 when caught up.
    pub lag_seconds: Option<f64>,
    /// Local L0 files not yet on the replica.
    pub backlog_files: u64,
    /// Their size.
    pub backlog_bytes: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// Answer of `/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusReport {
    /// The databases.
    pub databases: Vec<DbReport>,
}

/// Local files not yet on the replica.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    /// Files.
    pub files: u64,
    /// Bytes.
    pub bytes: u64,
    /// Timestamp of the oldest one (from its header).
    pub oldest: Option<SystemTime>,
    /// The newest local TXID.
    pub local_txid: Option<TxId>,
}

/// The local L0 files of `meta` above `remote`: the backlog, and the newest local TXID.
pub fn backlog(meta: &MetaDir, remote: Option<TxId>) -> Backlog {
    let mut b = Backlog::default();
    let Ok(files) = meta.list(0) else {
        return b;
    };
    for f in files {
        b.local_txid = b.local_txid.max(Some(f.max_txid));
        if Some(f.max_txid) <= remote {
            continue;
        }
        b.files += 1;
        b.bytes += std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
        if let Ok(h) = MetaDir::read_header(&f.path) {
            let t = SystemTime::UNIX_EPOCH + Duration::from_millis(h.timestamp.max(0) as u64);
            b.oldest = Some(b.oldest.map_or(t, |o: SystemTime| o.min(t)));
        }
    }
    b
}

/// Hex TXID as Litestream prints it.
pub fn hex_txid(t: TxId) -> String {
    format!("{:016x}", t.0)
}

impl Backlog {
    /// Lag in seconds: 0 without a backlog.
    pub fn lag_seconds(&self) -> f64 {
        match self.oldest {
            Some(t) if self.files > 0 => SystemTime::now()
                .duration_since(t)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            _ => 0.0,
        }
    }
}

fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(
        status,
        &ErrorBody {
            error: message.into(),
            details: None,
        },
    )
}

fn parse_body<T: for<'de> Deserialize<'de>>(req: &Request) -> Result<T, Response> {
    serde_json::from_slice(&req.body).map_err(|e| {
        Response::json(
            400,
            &ErrorBody {
                error: "invalid request body".into(),
                details: Some(serde_json::Value::String(e.to_string())),
            },
        )
    })
}

fn txid_num(t: Option<TxId>) -> u64 {
    t.map(|t| t.0).unwrap_or(0)
}

impl Control {
    /// Control over `server`; `spec_from_url` builds the [`DbSpec`] of a `register`ed database.
    pub fn new(server: Arc<Server>, spec_from_url: SpecFromUrl) -> Arc<Control> {
        Arc::new(Control {
            server,
            entries: tokio::sync::Mutex::new(BTreeMap::new()),
            spec_from_url,
            started_at: SystemTime::now(),
            started: std::time::Instant::now(),
        })
    }

    /// The server.
    pub fn server(&self) -> &Arc<Server> {
        &self.server
    }

    fn norm(path: &str) -> Result<PathBuf, String> {
        crate::paths::expand_path(path)
    }

    /// The running database's local TXID, else the newest in its meta directory.
    fn local_txid(&self, path: &Path, meta_path: Option<&Path>) -> Option<TxId> {
        self.server
            .status()
            .into_iter()
            .find(|s| s.path == path)
            .and_then(|s| s.local_txid)
            .or_else(|| backlog(&MetaDir::for_db(path, meta_path), None).local_txid)
    }

    /// Starts replicating `spec` and remembers it. `false` if it was known already.
    pub async fn add(&self, spec: DbSpec) -> Result<bool, ServerError> {
        let path = std::path::absolute(&spec.path).unwrap_or_else(|_| spec.path.clone());
        let mut entries = self.entries.lock().await;
        if entries.contains_key(&path) {
            return Ok(false);
        }
        self.server.add(spec.clone())?;
        entries.insert(
            path,
            Entry {
                spec,
                running: true,
            },
        );
        Ok(true)
    }

    /// Whether `path` is known (started or stopped).
    pub async fn contains(&self, path: &Path) -> bool {
        self.entries.lock().await.contains_key(path)
    }

    /// Stops replicating `path` and forgets it (the replica is kept). `None` if unknown, else
    /// its last local TXID.
    pub async fn unregister(&self, path: &Path) -> Option<Option<TxId>> {
        let mut entries = self.entries.lock().await;
        let entry = entries.remove(path)?;
        let txid = self.local_txid(path, entry.spec.opts.meta_path.as_deref());
        if entry.running {
            if let Err(e) = self.server.remove(path).await {
                debug!(db = %path.display(), "unregister: {e}");
            }
        }
        info!(db = %path.display(), "unregistered; the replica is kept");
        Some(txid)
    }

    /// Routes one request.
    pub async fn handle(&self, req: Request) -> Response {
        let post = req.method == "POST";
        let get = req.method == "GET" || req.method == "HEAD";
        match req.path.as_str() {
            "/start" | "/stop" | "/sync" | "/register" | "/unregister" if !post => {
                Response::text(405, "Method Not Allowed")
            }
            "/txid" | "/list" | "/info" | "/status" if !get => {
                Response::text(405, "Method Not Allowed")
            }
            "/start" => self.start(&req).await,
            "/stop" => self.stop(&req).await,
            "/sync" => self.sync(&req).await,
            "/register" => self.register(&req).await,
            "/unregister" => self.unregister_req(&req).await,
            "/txid" => self.txid(&req).await,
            "/list" => self.list().await,
            "/info" => self.info().await,
            "/status" => Response::json(200, &self.report().await),
            _ => Response::text(404, "404 page not found"),
        }
    }

    async fn start(&self, req: &Request) -> Response {
        let body: PathRequest = match parse_body(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let path = match Self::norm(&body.path) {
            Ok(p) => p,
            Err(_) if body.path.is_empty() => return error(400, "path required"),
            Err(e) => return error(400, format!("invalid path: {e}")),
        };
        let mut entries = self.entries.lock().await;
        let Some(entry) = entries.get_mut(&path) else {
            return error(500, format!("database not found: {}", path.display()));
        };
        let status = if entry.running {
            "already_running"
        } else {
            if let Err(e) = self.server.add(entry.spec.clone()) {
                return error(500, e.to_string());
            }
            entry.running = true;
            info!(db = %path.display(), "replication started through the control socket");
            "started"
        };
        let meta_path = entry.spec.opts.meta_path.clone();
        drop(entries);
        Response::json(
            200,
            &StatusResponse {
                status: status.into(),
                path: path.display().to_string(),
                txid: Some(txid_num(self.local_txid(&path, meta_path.as_deref()))),
            },
        )
    }

    async fn stop(&self, req: &Request) -> Response {
        let body: PathRequest = match parse_body(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let path = match Self::norm(&body.path) {
            Ok(p) => p,
            Err(_) if body.path.is_empty() => return error(400, "path required"),
            Err(e) => return error(400, format!("invalid path: {e}")),
        };
        let mut entries = self.entries.lock().await;
        let Some(entry) = entries.get_mut(&path) else {
            return error(500, format!("database not found: {}", path.display()));
        };
        let txid = self.local_txid(&path, entry.spec.opts.meta_path.as_deref());
        let status = if entry.running {
            entry.running = false;
            if let Err(e) = self.server.remove(&path).await {
                debug!(db = %path.display(), "stop: {e}");
            }
            info!(db = %path.display(), "replication stopped through the control socket");
            "stopped"
        } else {
            "already_stopped"
        };
        Response::json(
            200,
            &StatusResponse {
                status: status.into(),
                path: path.display().to_string(),
                txid: Some(txid_num(txid)),
            },
        )
    }

    async fn sync(&self, req: &Request) -> Response {
        let body: SyncRequest = match parse_body(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let path = match Self::norm(&body.path) {
            Ok(p) => p,
            Err(_) if body.path.is_empty() => return error(400, "path required"),
            Err(e) => return error(400, format!("invalid path: {e}")),
        };
        let timeout = Duration::from_secs(if body.timeout == 0 { 30 } else { body.timeout });
        match self.server.sync(&path, body.wait, timeout).await {
            Ok(o) => {
                let status = if o.txid == o.before && o.replicated >= o.txid {
                    "no_change"
                } else if o.replicated >= o.txid {
                    "synced"
                } else {
                    "synced_local"
                };
                Response::json(
                    200,
                    &SyncResponse {
                        status: status.into(),
                        path: path.display().to_string(),
                        txid: txid_num(o.txid),
                        replicated_txid: txid_num(o.replicated),
                    },
                )
            }
            Err(ServerError::Unknown(_)) => {
                error(404, format!("database not found: {}", path.display()))
            }
            Err(e) => error(500, format!("sync failed: {e}")),
        }
    }

    async fn register(&self, req: &Request) -> Response {
        let body: RegisterRequest = match parse_body(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        if body.path.is_empty() {
            return error(400, "path required");
        }
        if body.replica_url.is_empty() {
            return error(400, "replica_url required");
        }
        let path = match Self::norm(&body.path) {
            Ok(p) => p,
            Err(e) => return error(400, format!("invalid path: {e}")),
        };
        let ok = |status: &str| {
            Response::json(
                200,
                &StatusResponse {
                    status: status.into(),
                    path: path.display().to_string(),
                    txid: None,
                },
            )
        };
        if self.contains(&path).await {
            return ok("already_registered");
        }
        let spec = match (self.spec_from_url)(&path, &body.replica_url) {
            Ok(s) => s,
            Err(e) => {
                return error(
                    400,
                    format!(
                        "invalid replica url: {}",
                        crate::error_chain::anyhow_line(&e)
                    ),
                )
            }
        };
        match self.add(spec).await {
            Ok(true) => {
                info!(db = %path.display(), "registered through the control socket");
                ok("registered")
            }
            Ok(false) => ok("already_registered"),
            Err(e) => error(500, format!("failed to register database: {e}")),
        }
    }

    async fn unregister_req(&self, req: &Request) -> Response {
        let body: PathRequest = match parse_body(req) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let path = match Self::norm(&body.path) {
            Ok(p) => p,
            Err(_) if body.path.is_empty() => return error(400, "path required"),
            Err(e) => return error(400, format!("invalid path: {e}")),
        };
        let (status, txid) = match self.unregister(&path).await {
            Some(t) => ("unregistered", t),
            None => ("already_unregistered", None),
        };
        Response::json(
            200,
            &StatusResponse {
                status: status.into(),
                path: path.display().to_string(),
                txid: Some(txid_num(txid)),
            },
        )
    }

    async fn txid(&self, req: &Request) -> Response {
        let Some(p) = req.query("path").filter(|p| !p.is_empty()) else {
            return error(400, "path required");
        };
        let path = match Self::norm(&p) {
            Ok(p) => p,
            Err(e) => return error(400, format!("invalid path: {e}")),
        };
        let meta_path = match self.entries.lock().await.get(&path) {
            Some(e) => e.spec.opts.meta_path.clone(),
            None => return error(404, "database not found"),
        };
        Response::json(
            200,
            &serde_json::json!({ "txid": txid_num(self.local_txid(&path, meta_path.as_deref())) }),
        )
    }

    async fn list(&self) -> Response {
        let status = self.server.status();
        let failed = self.server.failed();
        let now = SystemTime::now();
        let entries = self.entries.lock().await;
        let databases = entries
            .iter()
            .map(|(p, e)| {
                let st = status.iter().find(|s| &s.path == p).filter(|_| e.running);
                let caught_up = st.is_some_and(|s| {
                    s.connected && s.last_error.is_none() && s.remote_txid >= s.local_txid
                });
                let at = if caught_up {
                    Some(now)
                } else {
                    st.and_then(|s| s.last_upload_at)
                };
                ListEntry {
                    path: p.display().to_string(),
                    status: if !e.running {
                        "stopped"
                    } else if failed.contains(p) {
                        "failed"
                    } else {
                        "replicating"
                    }
                    .into(),
                    last_sync_at: at.map(|t| humantime::format_rfc3339_nanos(t).to_string()),
                }
            })
            .collect();
        Response::json(200, &ListResponse { databases })
    }

    async fn info(&self) -> Response {
        let count = self.entries.lock().await.len();
        Response::json(
            200,
            &InfoResponse {
                version: env!("CARGO_PKG_VERSION").to_string(),
                pid: std::process::id(),
                uptime_seconds: self.started.elapsed().as_secs(),
                started_at: humantime::format_rfc3339_nanos(self.started_at).to_string(),
                database_count: count,
            },
        )
    }

    /// Every database's report.
    pub async fn report(&self) -> StatusReport {
        let status = self.server.status();
        let entries = self.entries.lock().await;
        let databases = entries
            .iter()
            .map(|(p, e)| {
                let st = status.iter().find(|s| &s.path == p);
                let remote = st.and_then(|s| s.remote_txid);
                let meta = MetaDir::for_db(p, e.spec.opts.meta_path.as_deref());
                let b = backlog(&meta, remote);
                let last_error = st.and_then(|s| s.last_error.clone());
                DbReport {
                    database: p.display().to_string(),
                    status: if !e.running {
                        "stopped".into()
                    } else if last_error.is_some() {
                        "error".into()
                    } else {
                        "replicating".into()
                    },
                    local_txid: st.and_then(|s| s.local_txid).or(b.local_txid).map(hex_txid),
                    replica_txid: remote.map(hex_txid),
                    lag_seconds: Some(b.lag_seconds()),
                    backlog_files: b.files,
                    backlog_bytes: b.bytes,
                    last_error,
                }
            })
            .collect();
        StatusReport { databases }
    }
}

/// A socket path that cannot be used, or another listener on it.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The path exists and is not a socket.
    #[error("control socket {0}: the path exists and is not a socket")]
    NotSocket(PathBuf),
    /// Listening or setting permissions failed.
    #[error("control socket {path}: {what}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// What failed.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// Reads Litestream's `permissions: 0600`: YAML parsers that read it as decimal 600 give a
/// number whose digits are the octal mode.
pub fn socket_mode(configured: Option<u32>) -> u32 {
    match configured {
        None => DEFAULT_PERMISSIONS,
        Some(p) if p > 0o777 => {
            let digits = p.to_string();
            if digits.chars().all(|c| ('0'..='7').contains(&c)) {
                u32::from_str_radix(&digits, 8).unwrap_or(DEFAULT_PERMISSIONS) & 0o777
            } else {
                p & 0o777
            }
        }
        Some(p) => p,
    }
}

/// Listens on `path` (a stale socket there is replaced) with `mode`, and serves `control` until
/// `cancel`. Errors come back before anything is served.
pub async fn serve(
    control: Arc<Control>,
    path: &Path,
    mode: u32,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, SocketError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let io = |what| {
        let path = path.to_path_buf();
        move |source| SocketError::Io { path, what, source }
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(io("remove the old socket"))?
        }
        Ok(_) => return Err(SocketError::NotSocket(path.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("check the path")(e)),
    }
    let listener = UnixListener::bind(path).map_err(io("listen"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("set permissions"))?;
    info!(path = %path.display(), "control socket listening");
    let path = path.to_path_buf();
    Ok(tokio::spawn(async move {
        loop {
            let conn = tokio::select! {
                _ = cancel.cancelled() => break,
                c = listener.accept() => c,
            };
            let mut stream = match conn {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(path = %path.display(), "control socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let control = control.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let req = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = tokio::time::timeout(Duration::from_secs(30), http::read_request(&mut stream)) => r,
                };
                let resp = match req {
                    Ok(Ok(req)) => {
                        debug!(method = %req.method, path = %req.path, "control request");
                        tokio::select! {
                            _ = cancel.cancelled() => error(503, "shutting down"),
                            r = control.handle(req) => r,
                        }
                    }
                    Ok(Err(http::ReadError::Io(_))) => return,
                    Ok(Err(e)) => Response::text(400, &format!("400 Bad Request: {e}")),
                    Err(_) => return,
                };
                let _ = http::write_response(&mut stream, &resp).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    }))
}
