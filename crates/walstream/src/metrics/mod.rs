//! Prometheus metrics (`addr:` in the config): Litestream 0.5.17's `litestream_*` families with
//! the same names and labels, plus walstream's replica lag, replica TXID and local backlog.
//!
//! - [`registry`] is one process-wide registry of counters, gauges and histograms. The
//!   database side ([`crate::db`]) records syncs and checkpoints into it; [`store::Instrumented`]
//!   (a decorator around any [`crate::storage::DynStore`]) records replica operations.
//! - Each running database registers a [`DbView`] source ([`track_db`]); at each scrape its
//!   gauges (sizes, TXIDs, lag, backlog) are read from it and from the meta directory, so
//!   nothing is computed between scrapes.
//! - [`serve`] answers `GET /metrics` in the Prometheus text format (hyper, HTTP/1).
//! - [`heartbeat`] pings `heartbeat-url` while every database is healthy.
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

pub mod heartbeat;
pub mod store;

/// Kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Every family walstream exports: name, kind, help (Litestream's help text for its names).
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "litestream_db_size",
        Kind::Gauge,
        "The current size of the real DB",
    ),
    (
        "litestream_wal_size",
        Kind::Gauge,
        "The current size of the real WAL",
    ),
    (
        "litestream_total_wal_bytes",
        Kind::Counter,
        "Total number of bytes written to shadow WAL",
    ),
    ("litestream_txid", Kind::Gauge, "The current transaction ID"),
    (
        "litestream_sync_count",
        Kind::Counter,
        "Number of sync operations performed",
    ),
    (
        "litestream_sync_error_count",
        Kind::Counter,
        "Number of sync errors that have occurred",
    ),
    (
        "litestream_sync_seconds",
        Kind::Counter,
        "Time spent syncing shadow WAL, in seconds",
    ),
    (
        "litestream_checkpoint_count",
        Kind::Counter,
        "Number of checkpoint operations performed",
    ),
    (
        "litestream_checkpoint_error_count",
        Kind::Counter,
        "Number of checkpoint errors that have occurred",
    ),
    (
        "litestream_checkpoint_seconds",
        Kind::Counter,
        "Time spent checkpointing WAL, in seconds",
    ),
    (
        "litestream_replica_operation_total",
        Kind::Counter,
        "The number of replica operations performed",
    ),
    (
        "litestream_replica_operation_errors_total",
        Kind::Counter,
        "The number of replica operation errors",
    ),
    (
        "litestream_replica_operation_bytes",
        Kind::Counter,
        "The number of bytes used by replica operations",
    ),
    (
        "litestream_replica_operation_duration_seconds",
        Kind::Histogram,
        "The duration of replica operations",
    ),
    (
        "litestream_l0_retention_files_total",
        Kind::Gauge,
        "Number of L0 files by status during retention enforcement",
    ),
    (
        "litestream_compaction_verify_error_count",
        Kind::Counter,
        "Number of post-compaction verification failures",
    ),
    (
        "litestream_disk_full",
        Kind::Gauge,
        "Whether replication is paused because the local disk is full",
    ),
    (
        "walstream_replica_lag_seconds",
        Kind::Gauge,
        "Age of the oldest local change not yet on the replica (0 when caught up)",
    ),
    (
        "walstream_replica_txid",
        Kind::Gauge,
        "Newest TXID on the replica",
    ),
    (
        "walstream_local_backlog_files",
        Kind::Gauge,
        "Local LTX files not yet on the replica",
    ),
    (
        "walstream_local_backlog_bytes",
        Kind::Gauge,
        "Bytes of local LTX files not yet on the replica",
    ),
];

/// Histogram buckets (Prometheus' defaults), in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
enum Value {
    Scalar(f64),
    Hist {
        counts: [u64; BUCKETS.len()],
        sum: f64,
        count: u64,
    },
}

/// The process-wide registry. Cheap to update (one mutex, a map lookup).
#[derive(Default)]
pub struct Registry {
    series: Mutex<BTreeMap<&'static str, BTreeMap<Labels, Value>>>,
    dbs: Mutex<HashMap<PathBuf, Arc<Tracked>>>,
}

/// The registry every part of walstream records into.
pub fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(Registry::default)
}

fn labels(l: &[(&'static str, &str)]) -> Labels {
    let mut v: Labels = l.iter().map(|(k, v)| (*k, v.to_string())).collect();
    v.sort();
    v
}

impl Registry {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<&'static str, BTreeMap<Labels, Value>>) -> T,
    ) -> T {
        let mut g = self.series.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    /// Adds `v` to a counter.
    pub fn add(&self, name: &'static str, l: &[(&'static str, &str)], v: f64) {
        self.with(|m| {
            let e = m
                .entry(name)
                .or_default()
                .entry(labels(l))
                .or_insert(Value::Scalar(0.0));
            if let Value::Scalar(x) = e {
                *x += v;
            }
        });
    }

    /// Sets a gauge.
    pub fn set(&self, name: &'static str, l: &[(&'static str, &str)], v: f64) {
        self.with(|m| {
            m.entry(name)
                .or_default()
                .insert(labels(l), Value::Scalar(v));
        });
    }

    /// Records one observation into a histogram.
    pub fn observe(&self, name: &'static str, l: &[(&'static str, &str)], secs: f64) {
        self.with(|m| {
            let e = m
                .entry(name)
                .or_default()
                .entry(labels(l))
                .or_insert(Value::Hist {
                    counts: [0; BUCKETS.len()],
                    sum: 0.0,
                    count: 0,
                });
            if let Value::Hist { counts, sum, count } = e {
                for (i, b) in BUCKETS.iter().enumerate() {
                    if secs <= *b {
                        counts[i] += 1;
                    }
                }
                *sum += secs;
                *count += 1;
            }
        });
    }

    /// Forgets every series of a database (`db` label), when it stops being replicated.
    fn forget_db(&self, db: &str) {
        self.with(|m| {
            for series in m.values_mut() {
                series.retain(|l, _| !l.iter().any(|(k, v)| *k == "db" && v == db));
            }
        });
    }

    /// The Prometheus text exposition of everything, database gauges read now.
    pub fn render(&self) -> String {
        for t in self.tracked() {
            t.collect(self);
        }
        let m = self.with(|m| m.clone());
        let mut out = String::new();
        for (name, kind, help) in FAMILIES {
            let Some(series) = m.get(name).filter(|s| !s.is_empty()) else {
                continue;
            };
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", kind.as_str());
            for (l, v) in series {
                match v {
                    Value::Scalar(x) => {
                        let _ = writeln!(out, "{name}{} {}", fmt_labels(l, None), fmt_f64(*x));
                    }
                    Value::Hist { counts, sum, count } => {
                        for (i, b) in BUCKETS.iter().enumerate() {
                            let le = fmt_f64(*b);
                            let _ = writeln!(
                                out,
                                "{name}_bucket{} {}",
                                fmt_labels(l, Some(&le)),
                                counts[i]
                            );
                        }
                        let _ =
                            writeln!(out, "{name}_bucket{} {count}", fmt_labels(l, Some("+Inf")));
                        let _ =
                            writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), fmt_f64(*sum));
                        let _ = writeln!(out, "{name}_count{} {count}", fmt_labels(l, None));
                    }
                }
            }
        }
        out
    }

    fn tracked(&self) -> Vec<Arc<Tracked>> {
        self.dbs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The state of every running database (for the heartbeat).
    pub fn views(&self) -> Vec<DbView> {
        self.tracked()
            .iter()
            .map(|t| DbView {
                path: t.path.clone(),
                ..(t.view)()
            })
            .collect()
    }
}

fn fmt_f64(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

fn fmt_labels(l: &Labels, le: Option<&str>) -> String {
    if l.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What a running database reports about itself.
#[derive(Debug, Clone, Default)]
pub struct DbView {
    /// The database (set by the registry).
    pub path: PathBuf,
    /// Newest local TXID (0: none).
    pub local: u64,
    /// Newest TXID on the replica (0: none).
    pub remote: u64,
    /// Whether the replica has been reached since start.
    pub connected: bool,
    /// Whether the last upload attempt (or connection attempt) failed.
    pub failing: bool,
}

struct Tracked {
    path: PathBuf,
    db: String,
    replica: String,
    l0_dir: PathBuf,
    view: Box<dyn Fn() -> DbView + Send + Sync>,
}

/// Unregisters a database's gauges when dropped.
pub struct TrackGuard {
    path: PathBuf,
    tracked: Arc<Tracked>,
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        let r = registry();
        let mut dbs = r.dbs.lock().unwrap_or_else(|e| e.into_inner());
        if dbs
            .get(&self.path)
            .is_some_and(|t| Arc::ptr_eq(t, &self.tracked))
        {
            dbs.remove(&self.path);
            drop(dbs);
            r.forget_db(&self.tracked.db);
        }
    }
}

/// Registers a running database: its path, its replica (as described, no secrets), its meta
/// directory's `ltx/0` and a function that reads its state. Its gauges are read at each scrape
/// until the guard is dropped.
pub fn track_db(
    path: &Path,
    replica: String,
    l0_dir: PathBuf,
    view: impl Fn() -> DbView + Send + Sync + 'static,
) -> TrackGuard {
    let tracked = Arc::new(Tracked {
        path: path.to_path_buf(),
        db: path.display().to_string(),
        replica,
        l0_dir,
        view: Box::new(view),
    });
    registry()
        .dbs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(path.to_path_buf(), tracked.clone());
    TrackGuard {
        path: path.to_path_buf(),
        tracked,
    }
}

/// The local LTX files after `remote` in an `ltx/0` directory: (files, bytes, oldest mtime).
pub fn backlog(l0_dir: &Path, remote: u64) -> (u64, u64, Option<SystemTime>) {
    let Ok(rd) = std::fs::read_dir(l0_dir) else {
        return (0, 0, None);
    };
    let (mut files, mut bytes, mut oldest) = (0u64, 0u64, None::<SystemTime>);
    for ent in rd.flatten() {
        let name = ent.file_name();
        let Some((_, max)) = ltx::parse_file_name(&name.to_string_lossy()) else {
            continue;
        };
        if max.0 <= remote {
            continue;
        }
        let Ok(md) = ent.metadata() else { continue };
        files += 1;
        bytes += md.len();
        if let Ok(t) = md.modified() {
            oldest = Some(oldest.map_or(t, |o: SystemTime| o.min(t)));
        }
    }
    (files, bytes, oldest)
}

impl Tracked {
    fn collect(&self, r: &Registry) {
        let v = (self.view)();
        let db = self.db.as_str();
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0) as f64;
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        r.set("litestream_db_size", &[("db", db)], size(&self.path));
        r.set("litestream_wal_size", &[("db", db)], size(Path::new(&wal)));
        r.set("litestream_txid", &[("db", db)], v.local as f64);
        // walstream does not verify compactions (verify-compaction is not supported): none fail.
        r.add(
            "litestream_compaction_verify_error_count",
            &[("db", db)],
            0.0,
        );
        r.add("litestream_sync_count", &[("db", db)], 0.0);
        r.add("litestream_sync_error_count", &[("db", db)], 0.0);
        r.add("litestream_sync_seconds", &[("db", db)], 0.0);
        r.add("litestream_total_wal_bytes", &[("db", db)], 0.0);
        r.with(|m| {
            m.entry("litestream_disk_full")
                .or_default()
                .entry(labels(&[("db", db)]))
                .or_insert(Value::Scalar(0.0));
        });
        let l = [("db", db), ("replica", self.replica.as_str())];
        r.set("walstream_replica_txid", &l, v.remote as f64);
        let (files, bytes, oldest) = if v.local > v.remote {
            backlog(&self.l0_dir, v.remote)
        } else {
            (0, 0, None)
        };
        let lag = oldest
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or(Duration::ZERO);
        r.set("walstream_replica_lag_seconds", &l, lag.as_secs_f64());
        r.set("walstream_local_backlog_files", &l, files as f64);
        r.set("walstream_local_backlog_bytes", &l, bytes as f64);
    }
}

/// Database-side hooks ([`crate::db`]): syncs and checkpoints.
pub mod db {
    use std::path::Path;
    use std::time::Instant;

    use super::registry;

    /// Times one sync.
    pub struct SyncTimer(Instant);

    impl SyncTimer {
        /// Starts timing.
        pub fn start() -> SyncTimer {
            SyncTimer(Instant::now())
        }

        /// Records the sync: its time, whether it failed, and the WAL bytes it copied.
        pub fn finish<T, E: std::fmt::Display>(
            self,
            path: &Path,
            wal_bytes: u64,
            r: &Result<T, E>,
        ) {
            let db = path.display().to_string();
            let l = [("db", db.as_str())];
            let reg = registry();
            reg.add("litestream_sync_count", &l, 1.0);
            reg.add(
                "litestream_sync_seconds",
                &l,
                self.0.elapsed().as_secs_f64(),
            );
            match r {
                Ok(_) => {
                    reg.add("litestream_total_wal_bytes", &l, wal_bytes as f64);
                    reg.set("litestream_disk_full", &l, 0.0);
                }
                Err(e) => {
                    reg.add("litestream_sync_error_count", &l, 1.0);
                    let msg = e.to_string();
                    if msg.contains("os error 28") || msg.contains("No space left") {
                        reg.set("litestream_disk_full", &l, 1.0);
                    }
                }
            }
        }
    }

    /// Records one checkpoint (`mode`: PASSIVE, TRUNCATE ...).
    pub fn checkpoint(path: &Path, mode: &str, started: Instant, ok: bool) {
        let db = path.display().to_string();
        let l = [("db", db.as_str()), ("mode", mode)];
        let reg = registry();
        reg.add("litestream_checkpoint_count", &l, 1.0);
        reg.add(
            "litestream_checkpoint_error_count",
            &l,
            if ok { 0.0 } else { 1.0 },
        );
        reg.add(
            "litestream_checkpoint_seconds",
            &l,
            started.elapsed().as_secs_f64(),
        );
    }

    /// Records what L0 retention found (`db` is the file name, as Litestream labels it).
    pub fn l0_retention(db: &str, eligible: u64, not_compacted: u64, too_recent: u64) {
        let reg = registry();
        for (status, n) in [
            ("eligible", eligible),
            ("not_compacted", not_compacted),
            ("too_recent", too_recent),
        ] {
            reg.set(
                "litestream_l0_retention_files_total",
                &[("db", db), ("status", status)],
                n as f64,
            );
        }
    }
}

/// Why the metrics server could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics: cannot listen on {addr} (config key addr): {source}")]
pub struct ServeError {
    addr: String,
    source: std::io::Error,
}

/// Binds `addr` (Litestream's form: `:9090` means every interface) and serves `/metrics` until
/// `cancel`. Binding happens before this returns, so a port in use is reported at start.
pub async fn serve(
    addr: &str,
    cancel: tokio_util::sync::CancellationToken,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let bind = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_string()
    };
    let err = |source| ServeError {
        addr: addr.to_string(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(&bind).await.map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = cancel.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!("metrics: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(handle);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
                if let Err(e) = conn.await {
                    tracing::debug!("metrics: connection: {e}");
                }
            });
        }
    });
    Ok((local, task))
}

async fn handle(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    let (status, ctype, body) = if req.uri().path() == "/metrics" {
        if req.method() == http::Method::GET || req.method() == http::Method::HEAD {
            (
                http::StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                registry().render(),
            )
        } else {
            (
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                "method not allowed\n".to_string(),
            )
        }
    } else {
        (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            "404 page not found\n".to_string(),
        )
    };
    let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(ctype) {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn render_counter_gauge_histogram_in_text_format() {
        let r = Registry::default();
        r.add("litestream_sync_count", &[("db", "/a.db")], 2.0);
        r.set("litestream_txid", &[("db", "/a\"b.db")], 7.0);
        r.observe(
            "litestream_replica_operation_duration_seconds",
            &[("replica_type", "s3"), ("operation", "PUT")],
            0.2,
        );
        let t = r.render();
        assert!(
            t.contains(
                "# TYPE litestream_sync_count counter\nlitestream_sync_count{db=\"/a.db\"} 2\n"
            ),
            "{t}"
        );
        assert!(t.contains("litestream_txid{db=\"/a\\\"b.db\"} 7\n"), "{t}");
        assert!(t.contains("litestream_replica_operation_duration_seconds_bucket{operation=\"PUT\",replica_type=\"s3\",le=\"0.1\"} 0\n"), "{t}");
        assert!(t.contains("litestream_replica_operation_duration_seconds_bucket{operation=\"PUT\",replica_type=\"s3\",le=\"0.25\"} 1\n"), "{t}");
        assert!(t.contains("litestream_replica_operation_duration_seconds_count{operation=\"PUT\",replica_type=\"s3\"} 1\n"), "{t}");
        assert!(
            !t.contains("litestream_wal_size"),
            "unused families are not exported: {t}"
        );
    }

    #[test]
    fn backlog_counts_files_after_remote_only() {
        let d = tempfile::tempdir().unwrap();
        for (name, len) in [
            ("0000000000000001-0000000000000001.ltx", 10),
            ("0000000000000002-0000000000000003.ltx", 20),
            ("0000000000000004-0000000000000004.ltx", 30),
            ("junk.tmp", 99),
        ] {
            std::fs::write(d.path().join(name), vec![0u8; len]).unwrap();
        }
        let (files, bytes, oldest) = backlog(d.path(), 1);
        assert_eq!((files, bytes), (2, 50));
        assert!(oldest.is_some());
        assert_eq!(backlog(d.path(), 4).0, 0);
        assert_eq!(backlog(&d.path().join("missing"), 0), (0, 0, None));
    }
}
