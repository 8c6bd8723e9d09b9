//! The YAML config file, in Litestream 0.5's format.
//!
//! [`Config::load`] reads a file, expands `$VAR`/`${VAR}` from the environment (unless told not
//! to), parses every key Litestream 0.5.17 reads, checks the values as Litestream does, and merges
//! the top-level replica keys into each database's replica. It starts nothing and prints nothing:
//! what deserves a word comes back as [`Warning`]s, each with its line and column:
//! - a key Litestream does not know (a typo, or a 0.3-era key such as a replica's `retention`),
//!   which Litestream silently ignores;
//! - a key walstream reads but does not act on yet (metrics, the control socket, compaction
//!   levels, ...).
//!
//! A value of the wrong type or shape is a [`ConfigError`] naming the file, line and column.
//!
//! ```no_run
//! # fn main() -> Result<(), walstream::config::ConfigError> {
//! let loaded = walstream::config::Config::load("/etc/litestream.yml".as_ref(), true)?;
//! for w in &loaded.warnings {
//!     eprintln!("warning: {w}");
//! }
//! for db in loaded.config.databases()? {
//!     println!("{} -> {}", db.path.display(), db.replica.replica_type());
//! }
//! # Ok(()) }
//! ```
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::db::DbOptions;

mod backends;
mod dir;
pub mod env;
pub mod locate;
mod replica;
mod validate;
pub mod values;

pub use self::backends::open_replica;
pub use self::locate::{KeyPath, Pos};
pub use self::replica::{AgeConfig, ReplicaConfig, DEFAULT_SYNC_INTERVAL, SECRET_KEYS};
pub use self::values::{fmt_duration, parse_duration, parse_size};
use self::values::{opt_bool, opt_duration};

/// Errors loading a config. Each names the file; parse and validation errors name the line and
/// column too. None of them carries a secret's value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file does not exist.
    #[error("config file not found: {}", path.display())]
    NotFound {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML is malformed, or a value has the wrong type.
    #[error("config {}: {message}", at(path, *pos))]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where, when known.
        pos: Option<Pos>,
        /// What.
        message: String,
    },
    /// A value breaks one of Litestream's rules (a missing replica, `url` and `bucket` together,
    /// a zero interval, ...).
    #[error("config {}: {message}", at(path, *pos))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where, when known.
        pos: Option<Pos>,
        /// What, starting with the key's path.
        message: String,
    },
}

impl ConfigError {
    /// The line and column the error points at, if any.
    pub fn pos(&self) -> Option<Pos> {
        match self {
            ConfigError::Parse { pos, .. } | ConfigError::Invalid { pos, .. } => *pos,
            _ => None,
        }
    }
}

/// `file:line:column`, or just the file.
fn at(path: &Path, pos: Option<Pos>) -> String {
    match pos {
        Some(p) => format!("{}:{}:{}", path.display(), p.line, p.column),
        None => path.display().to_string(),
    }
}

/// What a [`Warning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// A key Litestream 0.5 does not read either; it is ignored.
    UnknownKey,
    /// A key walstream reads but does not act on yet.
    Unsupported,
    /// A key that has no effect in Litestream 0.5 either, or does not apply to this replica type.
    NoEffect,
}

/// Something in the config worth a word: the key, where it is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The config file.
    pub file: PathBuf,
    /// The key's position.
    pub pos: Option<Pos>,
    /// The key, e.g. `dbs[0].replica.retention`.
    pub key: KeyPath,
    /// What kind of warning.
    pub kind: WarningKind,
    /// The explanation.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config {}: {}: {}",
            at(&self.file, self.pos),
            self.key,
            self.message
        )
    }
}

/// A loaded config and what was noticed on the way.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config, with top-level replica defaults merged into each replica.
    pub config: Config,
    /// Warnings, in file order.
    pub warnings: Vec<Warning>,
}

/// The whole file. Keys are Litestream's; `Option` fields are `None` when absent, and accessors
/// give Litestream's defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// The file it came from (empty for text parsed directly).
    #[serde(skip)]
    pub file: PathBuf,
    /// Top-level replica keys: defaults for every replica (already merged into `dbs`).
    #[serde(skip)]
    pub defaults: ReplicaConfig,
    /// `addr`: where Prometheus metrics are served (`/metrics`).
    pub addr: Option<String>,
    /// `socket`: the control socket.
    pub socket: Option<SocketConfig>,
    /// `levels`: compaction levels L1...
    #[serde(default, deserialize_with = "null_default")]
    pub levels: Option<Vec<LevelConfig>>,
    /// `snapshot`: interval and retention of L9 snapshots.
    pub snapshot: Option<SnapshotConfig>,
    /// `validation` (not supported yet).
    pub validation: Option<ValidationConfig>,
    /// `l0-retention`: how long compacted L0 files are kept.
    #[serde(default, deserialize_with = "opt_duration")]
    pub l0_retention: Option<Duration>,
    /// `l0-retention-check-interval`: how often retention runs.
    #[serde(default, deserialize_with = "opt_duration")]
    pub l0_retention_check_interval: Option<Duration>,
    /// `verify-compaction` (not supported yet).
    #[serde(default, deserialize_with = "opt_bool")]
    pub verify_compaction: Option<bool>,
    /// `retention`: `enabled: false` turns deletions off.
    pub retention: Option<RetentionConfig>,
    /// `heartbeat-url`: pinged while every database replicates.
    pub heartbeat_url: Option<String>,
    /// `heartbeat-interval` (default 5 m, at least 1 m).
    #[serde(default, deserialize_with = "opt_duration")]
    pub heartbeat_interval: Option<Duration>,
    /// `exec`: the command `replicate` runs when `-exec` is not given.
    pub exec: Option<String>,
    /// `logging`.
    pub logging: Option<LoggingConfig>,
    /// `mcp-addr` (not supported).
    pub mcp_addr: Option<String>,
    /// `shutdown-sync-timeout`: how long the final sync at shutdown keeps retrying (default 30 s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub shutdown_sync_timeout: Option<Duration>,
    /// `shutdown-sync-interval` (not supported yet).
    #[serde(default, deserialize_with = "opt_duration")]
    pub shutdown_sync_interval: Option<Duration>,
    /// `dbs`.
    #[serde(default, deserialize_with = "null_default")]
    pub dbs: Vec<DbConfig>,
    // --- h-metrics: the local backlog cap ---
    /// `max-local-backlog` (walstream): bytes of changes kept in meta directories while a
    /// replica is unreachable (default 1 GiB; 0: no cap). See [`Config::max_local_backlog`].
    #[serde(default, deserialize_with = "values::opt_size")]
    pub max_local_backlog: Option<serde_norway::Value>,
}

/// `socket:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct SocketConfig {
    /// `enabled`.
    #[serde(default, deserialize_with = "opt_bool")]
    pub enabled: Option<bool>,
    /// `path`.
    pub path: Option<String>,
    /// `permissions` (octal: `0600`, `0o600`, or a string of either).
    #[serde(default, deserialize_with = "opt_mode")]
    pub permissions: Option<u32>,
}

/// serde: a file mode written `0600` (read as a string by this YAML parser), `"0o600"`, or a
/// number.
fn opt_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        N(u32),
        S(String),
    }
    match Option::<Mode>::deserialize(d)? {
        None => Ok(None),
        Some(Mode::N(n)) => Ok(Some(n)),
        Some(Mode::S(s)) => {
            let t = s.trim();
            let digits = t
                .strip_prefix("0o")
                .or_else(|| t.strip_prefix("0O"))
                .unwrap_or(t);
            u32::from_str_radix(digits, 8)
                .ok()
                .filter(|m| *m <= 0o7777)
                .map(Some)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "invalid file mode {s:?} (want octal, e.g. 0600)"
                    ))
                })
        }
    }
}

/// One `levels[]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LevelConfig {
    /// `interval`.
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
}

/// `snapshot:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct SnapshotConfig {
    /// `interval` (default 24 h).
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
    /// `retention` (default 24 h).
    #[serde(default, deserialize_with = "opt_duration")]
    pub retention: Option<Duration>,
}

/// `validation:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ValidationConfig {
    /// `interval`.
    #[serde(default, deserialize_with = "opt_duration")]
    pub interval: Option<Duration>,
}

/// `retention:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RetentionConfig {
    /// `enabled` (default true).
    #[serde(default, deserialize_with = "opt_bool")]
    pub enabled: Option<bool>,
}

/// `logging:`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct LoggingConfig {
    /// `level`: debug, info, warn, error.
    pub level: Option<String>,
    /// `type`: text or json.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `stderr`: `true` logs to stderr; absent or `false`, `replicate` logs to stdout (as Litestream).
    #[serde(default, deserialize_with = "opt_bool")]
    pub stderr: Option<bool>,
}

/// One `dbs[]` entry: a database (`path`), or a directory of them (`dir` + `pattern`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct DbConfig {
    /// Database path, as written (see [`DbConfig::db_path`]).
    pub path: Option<String>,
    /// Directory of databases.
    pub dir: Option<String>,
    /// File name pattern in `dir` (Go `filepath.Match`: `*`, `?`, `[a-z]`).
    pub pattern: Option<String>,
    /// Look in subdirectories of `dir` too.
    #[serde(default, deserialize_with = "opt_bool")]
    pub recursive: Option<bool>,
    /// Pick up databases created in `dir` later, and drop deleted ones.
    #[serde(default, deserialize_with = "opt_bool")]
    pub watch: Option<bool>,
    /// Meta directory.
    pub meta_path: Option<String>,
    /// `monitor-interval` (default 1 s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub monitor_interval: Option<Duration>,
    /// `checkpoint-interval` (default 1 m).
    #[serde(default, deserialize_with = "opt_duration")]
    pub checkpoint_interval: Option<Duration>,
    /// `busy-timeout` (default 1 s).
    #[serde(default, deserialize_with = "opt_duration")]
    pub busy_timeout: Option<Duration>,
    /// `min-checkpoint-page-count` (default 1000).
    pub min_checkpoint_page_count: Option<u64>,
    /// `truncate-page-n` (default 121359).
    pub truncate_page_n: Option<u64>,
    /// `max-sync-wal-bytes` (default 64 MiB).
    pub max_sync_wal_bytes: Option<u64>,
    /// `restore-if-db-not-exists`: `replicate` restores the database first if it is missing
    /// (for a `dir` entry: each database its replica holds that is missing locally).
    #[serde(default, deserialize_with = "opt_bool")]
    pub restore_if_db_not_exists: Option<bool>,
    /// The replica.
    pub replica: Option<ReplicaConfig>,
    /// Deprecated list form; one element only.
    pub replicas: Option<Vec<ReplicaConfig>>,
}

/// A database to replicate or restore, resolved from a `dbs[]` entry: its absolute path, its
/// replica (top-level defaults merged in) and its options.
#[derive(Debug, Clone)]
pub struct ResolvedDb {
    /// Index of the `dbs[]` entry it came from.
    pub index: usize,
    /// Absolute database path.
    pub path: PathBuf,
    /// The replica.
    pub replica: ReplicaConfig,
    /// Loop options.
    pub options: DbOptions,
    /// `restore-if-db-not-exists`.
    pub restore_if_db_not_exists: bool,
}

/// Default `snapshot.interval` and `snapshot.retention`.
pub const DEFAULT_SNAPSHOT_INTERVAL: Duration = Duration::from_secs(24 * 3600);
/// Default `l0-retention`.
pub const DEFAULT_L0_RETENTION: Duration = Duration::from_secs(300);
/// Default compaction levels L1, L2, L3.
pub const DEFAULT_LEVEL_INTERVALS: [Duration; 3] = [
    Duration::from_secs(30),
    Duration::from_secs(300),
    Duration::from_secs(3600),
];
/// Default `heartbeat-interval`.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(300);
/// Default `max-local-backlog`: 1 GiB (as `server::DEFAULT_MAX_LOCAL_BACKLOG`).
pub const DEFAULT_MAX_LOCAL_BACKLOG: u64 = 1 << 30;
/// Default `shutdown-sync-timeout`.
pub const DEFAULT_SHUTDOWN_SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `shutdown-sync-interval`.
pub const DEFAULT_SHUTDOWN_SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// serde: a `null` value reads as the default (as Go's YAML library leaves a nil slice).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Config {
    /// Reads `path`, expands `$VAR`/`${VAR}` when `expand_env`, and parses it.
    pub fn load(path: &Path, expand_env: bool) -> Result<LoadedConfig, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let text = if expand_env { env::expand(&text) } else { text };
        Self::parse(&text, path)
    }

    /// Parses config text (already expanded); `file` is for messages.
    pub fn parse(text: &str, file: &Path) -> Result<LoadedConfig, ConfigError> {
        validate::parse(text, file)
    }

    /// Compaction intervals for L1.. (Litestream's defaults when `levels` is absent).
    pub fn level_intervals(&self) -> Vec<Duration> {
        match &self.levels {
            Some(levels) => levels
                .iter()
                .map(|l| l.interval.unwrap_or_default())
                .collect(),
            None => DEFAULT_LEVEL_INTERVALS.to_vec(),
        }
    }

    /// `snapshot.interval`, default 24 h.
    pub fn snapshot_interval(&self) -> Duration {
        self.snapshot
            .as_ref()
            .and_then(|s| s.interval)
            .unwrap_or(DEFAULT_SNAPSHOT_INTERVAL)
    }

    /// `snapshot.retention`, default 24 h.
    pub fn snapshot_retention(&self) -> Duration {
        self.snapshot
            .as_ref()
            .and_then(|s| s.retention)
            .unwrap_or(DEFAULT_SNAPSHOT_INTERVAL)
    }

    /// `l0-retention`, default 5 m.
    pub fn l0_retention(&self) -> Duration {
        self.l0_retention.unwrap_or(DEFAULT_L0_RETENTION)
    }

    /// The history options (levels, snapshots, retention) for every database's replica.
    pub fn history(&self) -> crate::history::HistoryOptions {
        crate::history::HistoryOptions {
            levels: self.level_intervals(),
            snapshot_interval: self.snapshot_interval(),
            retention: crate::retention::RetentionPolicy {
                snapshot_retention: self.snapshot_retention(),
                l0_retention: self.l0_retention(),
                enabled: self.retention_enabled(),
            },
            retention_check_interval: self
                .l0_retention_check_interval
                .unwrap_or(std::time::Duration::from_secs(15)),
        }
    }

    /// `retention.enabled`, default true.
    pub fn retention_enabled(&self) -> bool {
        self.retention
            .as_ref()
            .and_then(|r| r.enabled)
            .unwrap_or(true)
    }

    /// `max-local-backlog` in bytes (default 1 GiB).
    pub fn max_local_backlog(&self) -> u64 {
        self.max_local_backlog
            .as_ref()
            .and_then(values::size_of)
            .unwrap_or(DEFAULT_MAX_LOCAL_BACKLOG)
    }

    /// `logging.level`, if set.
    pub fn log_level(&self) -> Option<&str> {
        self.logging
            .as_ref()
            .and_then(|l| l.level.as_deref())
            .filter(|l| !l.trim().is_empty())
    }

    /// Every database to replicate: `path` entries as they are, `dir` entries scanned for
    /// SQLite files now. Errors name the entry (a directory that cannot be read, or holds no
    /// database and is not watched).
    pub fn databases(&self) -> Result<Vec<ResolvedDb>, ConfigError> {
        let mut out = Vec::new();
        for (i, db) in self.dbs.iter().enumerate() {
            if db.path.is_some() {
                out.push(self.resolve(i, db)?);
                continue;
            }
            for found in dir::scan_entry(db).map_err(|message| self.invalid(i, message))? {
                out.push(self.resolve(i, &found)?);
            }
        }
        Ok(out)
    }

    /// The database at `db_path` (compared after making it absolute): a `path` entry, or a
    /// file that a `dir` entry's pattern covers (it need not exist, so that it can be restored).
    pub fn find_db(&self, db_path: &Path) -> Result<Option<ResolvedDb>, ConfigError> {
        let want = expand_path(&db_path.to_string_lossy())
            .map_err(|e| self.invalid_msg(format!("{}: {e}", db_path.display())))?;
        for (i, db) in self.dbs.iter().enumerate() {
            if db.path.is_some() {
                if db.db_path().ok().as_deref() == Some(want.as_path()) {
                    return self.resolve(i, db).map(Some);
                }
            } else if let Some(found) = dir::entry_for(db, &want) {
                return self.resolve(i, &found).map(Some);
            }
        }
        Ok(None)
    }

    /// The database at `rel` (a path relative to the directory, `/`-separated, as
    /// [`crate::storage::ReplicaStore::list_databases`] lists a replica) of the `dir` entry
    /// `dbs[index]`, resolved as [`Config::find_db`] does (its replica path derived from the
    /// entry's): `None` when the entry is no `dir` entry, or its pattern (and `recursive`) does
    /// not cover `rel`. The file need not exist.
    pub fn dir_database(&self, index: usize, rel: &str) -> Result<Option<ResolvedDb>, ConfigError> {
        let Some(db) = self.dbs.get(index).filter(|d| d.path.is_none()) else {
            return Ok(None);
        };
        let Some(dir) = db.dir.as_deref() else {
            return Ok(None);
        };
        let dir = expand_path(dir).map_err(|m| self.invalid(index, format!("dir: {m}")))?;
        let mut want = dir;
        for segment in rel.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Ok(None);
            }
            want.push(segment);
        }
        match dir::entry_for(db, &want) {
            Some(found) => self.resolve(index, &found).map(Some),
            None => Ok(None),
        }
    }

    fn resolve(&self, index: usize, db: &DbConfig) -> Result<ResolvedDb, ConfigError> {
        let path = db
            .db_path()
            .map_err(|m| self.invalid(index, format!("path: {m}")))?;
        let replica = db
            .the_replica()
            .cloned()
            .ok_or_else(|| self.invalid(index, "must specify replica for database".into()))?;
        Ok(ResolvedDb {
            index,
            path,
            replica,
            options: db
                .db_options()
                .map_err(|m| self.invalid(index, format!("meta-path: {m}")))?,
            restore_if_db_not_exists: db.restore_if_db_not_exists.unwrap_or(false),
        })
    }

    fn invalid(&self, index: usize, message: String) -> ConfigError {
        self.invalid_msg(format!("dbs[{index}]: {message}"))
    }

    fn invalid_msg(&self, message: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.file.clone(),
            pos: None,
            message,
        }
    }
}

impl DbConfig {
    /// The one replica, from `replica` or a one-element `replicas` (checked at load).
    pub fn the_replica(&self) -> Option<&ReplicaConfig> {
        self.replica
            .as_ref()
            .or_else(|| self.replicas.as_ref().and_then(|r| r.first()))
    }

    /// The database path made absolute as Litestream does: a `sqlite://` or `sqlite3://`
    /// prefix dropped, `~` expanded, relative paths joined to the current directory.
    pub fn db_path(&self) -> Result<PathBuf, String> {
        expand_path(self.path.as_deref().unwrap_or(""))
    }

    /// What `databases` shows for this entry: the database path, or `<dir>/<pattern>`.
    pub fn display_path(&self) -> String {
        match (&self.path, &self.dir) {
            (Some(_), _) => self
                .db_path()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| self.path.clone().unwrap_or_default()),
            (None, Some(dir)) => {
                let dir = expand_path(dir).unwrap_or_else(|_| PathBuf::from(dir));
                let pattern = self.pattern.as_deref().unwrap_or("");
                if self.recursive == Some(true) {
                    format!("{}/**/{pattern}", dir.display())
                } else {
                    format!("{}/{pattern}", dir.display())
                }
            }
            (None, None) => String::new(),
        }
    }

    /// The replication loop's options: Litestream's defaults, overridden by the keys given.
    pub fn db_options(&self) -> Result<DbOptions, String> {
        let mut o = DbOptions {
            meta_path: match &self.meta_path {
                Some(m) => Some(expand_path(m)?),
                None => None,
            },
            ..DbOptions::default()
        };
        if let Some(v) = self.monitor_interval {
            o.monitor_interval = v;
        }
        if let Some(v) = self.checkpoint_interval {
            o.checkpoint_interval = v;
        }
        if let Some(v) = self.busy_timeout {
            o.busy_timeout = v;
        }
        if let Some(v) = self.min_checkpoint_page_count {
            o.min_checkpoint_page_count = v;
        }
        if let Some(v) = self.truncate_page_n {
            o.truncate_page_n = v;
        }
        if let Some(v) = self.max_sync_wal_bytes {
            o.max_sync_wal_bytes = v;
        }
        Ok(o)
    }
}

// --- dir watching and the control socket (`replicate`) ---

/// Whether `name` matches a `dir` entry's `pattern` (Go's `filepath.Match`; a malformed pattern
/// matches nothing).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    dir::glob_match(pattern, name).unwrap_or(false)
}

impl Config {
    /// `socket:` when `enabled: true`: its path (default `/var/run/litestream.sock`) and mode.
    pub fn control_socket(&self) -> Option<(PathBuf, u32)> {
        let s = self.socket.as_ref().filter(|s| s.enabled == Some(true))?;
        let path = s
            .path
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(crate::control::DEFAULT_SOCKET);
        Some((
            PathBuf::from(path),
            crate::control::socket_mode(s.permissions),
        ))
    }

    /// The `dir` entries with `watch: true`: directory (absolute), pattern, recursion.
    pub fn watched_dirs(&self) -> Vec<crate::control::dirwatch::WatchedDir> {
        self.dbs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.path.is_none() && d.watch == Some(true))
            .filter_map(|(index, d)| {
                Some(crate::control::dirwatch::WatchedDir {
                    index,
                    dir: expand_path(d.dir.as_deref()?).ok()?,
                    pattern: d.pattern.clone().unwrap_or_default(),
                    recursive: d.recursive == Some(true),
                    matches: pattern_matches,
                })
            })
            .collect()
    }
}

pub use crate::paths::expand_path;

#[cfg(test)]
mod tests;
