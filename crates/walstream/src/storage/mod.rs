//! Where replicas live. One small trait, [`ReplicaStore`], speaks Litestream's domain (levels and
//! TXID ranges), and each backend maps it onto its keys.
//!
//! Layouts ([`LtxLayout`]): the file, gs, abs and sftp backends use
//! `<path>/ltx/<level>/<min>-<max>.ltx`; S3 uses `<path>/<level as %04x>/<min>-<max>.ltx`.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use ltx::TxId;

use crate::paths::{redact_url, split_url};

pub mod azure;
#[cfg(test)]
pub(crate) mod bad_http;
#[cfg(any(test, feature = "testing"))]
pub mod contract;
pub mod encrypted;
#[cfg(any(test, feature = "testing"))]
pub mod fault;
pub mod file;
pub mod gcs;
pub mod retry;
pub mod s3;
pub mod sftp;
pub(crate) mod upload_temp;

/// The snapshot level.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// One LTX file on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxFileInfo {
    /// Compaction level, 0..=9.
    pub level: u8,
    /// First TXID covered.
    pub min_txid: TxId,
    /// Last TXID covered.
    pub max_txid: TxId,
    /// Size in bytes.
    pub size: u64,
    /// When the file's data was synced (its LTX timestamp), as the store records it.
    pub created_at: SystemTime,
}

impl LtxFileInfo {
    /// `<min>-<max>.ltx`.
    pub fn file_name(&self) -> String {
        ltx::file_name(self.min_txid, self.max_txid)
    }
}

/// An object under a replica's root, outside the LTX levels: for reading other layouts (the
/// `generations/` of a Litestream 0.3 replica). See [`ReplicaStore::list_objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the replica's root, `/`-separated (`generations/<id>/snapshots/...`).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// When the object was last written, as the store says (file mtime, S3 LastModified).
    pub modified: SystemTime,
}

/// A stream of a file's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Errors from a store. Each carries the key (never a secret).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist.
    #[error("{backend}: {key}: not found")]
    NotFound {
        /// Backend name, e.g. "file".
        backend: &'static str,
        /// Object key or path.
        key: String,
    },
    /// Worth retrying: timeouts, 5xx, resets.
    #[error("{backend}: {key}: {message}")]
    Transient {
        /// Backend name.
        backend: &'static str,
        /// Object key or path.
        key: String,
        /// What happened.
        message: String,
    },
    /// Not worth retrying: permissions, missing bucket, bad request.
    #[error("{backend}: {key}: {message}")]
    Permanent {
        /// Backend name.
        backend: &'static str,
        /// Object key or path.
        key: String,
        /// What happened.
        message: String,
    },
    /// A conditional write found the object changed (or present, or missing): someone else
    /// wrote it. Not retryable as such: read it again and decide.
    #[error("{backend}: {key}: {message}")]
    Conflict {
        /// Backend name.
        backend: &'static str,
        /// Object key or path.
        key: String,
        /// What happened.
        message: String,
    },
    /// Local I/O.
    #[error("{backend}: {path}: {source}")]
    Io {
        /// Backend name.
        backend: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Transient { .. } => true,
            StorageError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::WouldBlock
                )
                // Out of descriptors (EMFILE, ENFILE): others close theirs soon. (Seen with
                // 10,000 databases starting at once: one upload's temp file stopped the server.)
                || matches!(source.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
            }
            _ => false,
        }
    }
    /// Whether the object was missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
    /// Whether a conditional write lost (see [`ReplicaStore::write_lease`]).
    pub fn is_conflict(&self) -> bool {
        matches!(self, StorageError::Conflict { .. })
    }
}

/// Whether an HTTP client failure (object_store's [`HttpErrorKind`] and the root cause's text)
/// is worth retrying. Every network or protocol failure is: a refused or reset connection, a
/// timeout, a body cut short, an unexpected EOF, a response that does not parse ("invalid HTTP
/// version parsed" from bytes left on a kept-alive connection). Only a TLS or certificate failure
/// is not: that is the configuration (a wrong CA or an `https` endpoint that speaks plain HTTP).
///
/// [`HttpErrorKind`]: object_store::client::HttpErrorKind
pub(crate) fn http_failure_is_transient(
    kind: object_store::client::HttpErrorKind,
    root_cause: &str,
) -> bool {
    use object_store::client::HttpErrorKind as K;
    let lower = root_cause.to_ascii_lowercase();
    let tls = lower.contains("certificate") || lower.contains("tls") || lower.contains("ssl");
    !(tls && matches!(kind, K::Unknown | K::Connect))
}

/// Where the two-writer lease lives, relative to the replica's path: beside the level
/// directories, so Litestream (which lists only those) never sees it.
pub const LEASE_KEY: &str = ".walstream/lease";

/// An opaque version of the lease object (an ETag, a content hash), for conditional replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseVersion(pub String);

/// The lease object as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseObject {
    /// Its bytes.
    pub data: Bytes,
    /// Its version, for [`ReplicaStore::write_lease`].
    pub version: LeaseVersion,
}

/// A replica's storage.
///
/// # Contract
/// - `write_ltx_file` is atomic: a reader sees the whole file under its final name or nothing.
///   After an error the file may or may not exist; writing it again is safe.
/// - `ltx_files` lists one level sorted by MinTXID (then MaxTXID); a missing level is empty.
/// - `open_ltx_file` starts at `offset` so that a broken download resumes; a missing file is
///   [`StorageError::NotFound`].
/// - `delete_ltx_files` ignores files already gone.
/// - No method logs or returns a secret.
/// - Lease (only where [`ReplicaStore::supports_lease`]): `write_lease(data, None)` creates the
///   object at [`LEASE_KEY`] only if none exists; `write_lease(data, Some(v))` replaces it only if
///   its current version is `v`. Either fails with [`StorageError::Conflict`] otherwise, and a
///   write that returns `Ok` is seen by every later `read_lease`. Stores without conditional
///   writes keep the defaults (no support; the calls fail permanently).
#[async_trait]
pub trait ReplicaStore: Send + Sync + std::fmt::Debug {
    /// Backend name as in config `type:` ("file", "s3", ...).
    fn kind(&self) -> &'static str;
    /// A human-readable location without secrets, e.g. `file:///var/backup`.
    fn describe(&self) -> String;
    /// Files of one level, sorted by MinTXID.
    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError>;
    /// Streams a file's bytes from `offset`.
    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError>;
    /// Stores the local file `src` as the given LTX file, recording `created_at` as its timestamp.
    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError>;
    /// Deletes files; missing ones are not an error.
    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError>;
    /// Whether the store has the conditional writes the lease needs.
    fn supports_lease(&self) -> bool {
        false
    }
    /// The lease object, or `None` when there is none.
    async fn read_lease(&self) -> Result<Option<LeaseObject>, StorageError> {
        Err(no_lease_support(self.kind(), &self.describe()))
    }
    /// Writes the lease object if it is absent (`expected` = `None`) or still at version
    /// `expected`; returns the new version. See the contract.
    async fn write_lease(
        &self,
        data: Bytes,
        expected: Option<&LeaseVersion>,
    ) -> Result<LeaseVersion, StorageError> {
        let _ = (data, expected);
        Err(no_lease_support(self.kind(), &self.describe()))
    }
    /// Removes the upload temp files that a killed upload left in the level directories (only
    /// the store's own temp-name pattern, never an LTX file, never an upload this process has
    /// in flight); returns how many went. Stores whose uploads are atomic without temp files
    /// keep the default, which does nothing. Called at start, after the lease is taken.
    async fn remove_stale_uploads(&self) -> Result<usize, StorageError> {
        Ok(0)
    }
    /// Every object whose key (relative to the replica's root) starts with `prefix`, in any
    /// order, at any depth. Read-only access to layouts other than the LTX levels; stores that
    /// cannot do it keep the default, which fails permanently.
    async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        Err(no_object_access(self.kind(), &self.describe(), prefix))
    }
    /// Streams the object `key` (as [`ReplicaStore::list_objects`] names it) from `offset`; a
    /// missing object is [`StorageError::NotFound`].
    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        let _ = offset;
        Err(no_object_access(self.kind(), &self.describe(), key))
    }
    /// How this store names LTX files under its root (see [`LtxLayout`]).
    fn ltx_layout(&self) -> LtxLayout {
        LtxLayout::LtxDir
    }
    /// The databases held under this store's root, as the stores of a `dir:` entry's databases
    /// lay them out (`<root>/<rel>/...`): each database's path relative to the root
    /// (`/`-separated, sorted, no empty, `.` or `..` segment) that has at least one LTX file.
    /// Without `recursive` only databases directly under the root (one segment); with it, at any
    /// depth. LTX files of the root itself (a `path:` replica there) are no database of it.
    /// The default lists every object ([`ReplicaStore::list_objects`]) and keeps the part of
    /// each LTX file's key before its layout's level part.
    async fn list_databases(&self, recursive: bool) -> Result<Vec<String>, StorageError> {
        let objects = self.list_objects("").await?;
        Ok(databases_in(
            self.ltx_layout(),
            objects.iter().map(|o| o.key.as_str()),
            recursive,
        ))
    }
    /// The age keys when the store encrypts its LTX files ([`encrypted::EncryptedStore`]); every
    /// wrapper forwards it. Listed sizes of such a store are stored (encrypted) sizes, and code
    /// that keeps LTX bytes in temp files (compaction) keeps them encrypted.
    fn encryption(&self) -> Option<Arc<encrypted::Encryption>> {
        None
    }
}

/// Where a backend puts a replica's LTX files, relative to the replica's root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LtxLayout {
    /// `ltx/<level>/<min>-<max>.ltx`, the level in decimal (file, gs, abs, sftp).
    LtxDir,
    /// `<level as %04x>/<min>-<max>.ltx` (s3).
    HexLevel,
}

impl LtxLayout {
    /// For the key of an LTX file (relative to a root), the part before its level part: the
    /// database's relative path, `""` for the root's own files. `None` for any other key.
    pub fn database_of(self, key: &str) -> Option<&str> {
        let (rest, name) = key.rsplit_once('/')?;
        ltx::parse_file_name(name)?;
        let (rest, level) = rest.rsplit_once('/').unwrap_or(("", rest));
        let rest = match self {
            LtxLayout::LtxDir => {
                let ok = level.len() == 1 && level.parse::<u8>().is_ok_and(|l| l <= SNAPSHOT_LEVEL);
                if !ok {
                    return None;
                }
                match rest.rsplit_once('/') {
                    Some((db, "ltx")) => db,
                    None if rest == "ltx" => "",
                    _ => return None,
                }
            }
            LtxLayout::HexLevel => {
                let ok = level.len() == 4
                    && u8::from_str_radix(level, 16).is_ok_and(|l| l <= SNAPSHOT_LEVEL);
                if !ok {
                    return None;
                }
                rest
            }
        };
        Some(rest)
    }
}

/// The databases that the LTX files among `keys` belong to (see
/// [`ReplicaStore::list_databases`]): sorted, each once.
pub fn databases_in<'a>(
    layout: LtxLayout,
    keys: impl IntoIterator<Item = &'a str>,
    recursive: bool,
) -> Vec<String> {
    let mut out: Vec<String> = keys
        .into_iter()
        .filter_map(|k| layout.database_of(k))
        .filter(|db| {
            let mut segments = db.split('/');
            segments
                .clone()
                .all(|s| !s.is_empty() && s != "." && s != "..")
                && (recursive || segments.nth(1).is_none())
        })
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

fn no_object_access(backend: &'static str, replica: &str, key: &str) -> StorageError {
    StorageError::Permanent {
        backend,
        key: format!("{replica}/{key}"),
        message: "this store cannot read objects outside the LTX levels".to_string(),
    }
}

fn no_lease_support(backend: &'static str, replica: &str) -> StorageError {
    StorageError::Permanent {
        backend,
        key: format!("{replica}/{LEASE_KEY}"),
        message: "this store has no conditional writes, so no lease".to_string(),
    }
}

/// A shared store handle.
pub type DynStore = Arc<dyn ReplicaStore>;

/// Every level of a replica, snapshot level included.
pub const ALL_LEVELS: std::ops::RangeInclusive<u8> = 0..=SNAPSHOT_LEVEL;

/// A failure to list one level (see [`list_levels`]).
#[derive(Debug, thiserror::Error)]
#[error("list level {level}: {source}")]
pub struct ListLevelError {
    /// The level that failed.
    pub level: u8,
    /// The store's error.
    #[source]
    pub source: StorageError,
}

/// The files of `levels` (in that order, each level sorted as [`ReplicaStore::ltx_files`] returns
/// it), listed one level after the other; each listing retried under `retry` when given. The one
/// loop over levels of a store: use [`ALL_LEVELS`] for the whole replica.
pub async fn list_levels(
    store: &dyn ReplicaStore,
    levels: impl IntoIterator<Item = u8>,
    retry: Option<&retry::RetryPolicy>,
) -> Result<Vec<LtxFileInfo>, ListLevelError> {
    let mut all = Vec::new();
    for level in levels {
        let listed = match retry {
            Some(policy) => {
                let key = format!("level {level}");
                policy
                    .run(store.kind(), &key, |_| store.ltx_files(level))
                    .await
            }
            None => store.ltx_files(level).await,
        };
        all.extend(listed.map_err(|source| ListLevelError { level, source })?);
    }
    Ok(all)
}

/// A backend as the URL table knows it: the URL schemes it answers to, and how to open it from a
/// URL alone. A replica config's keys are mapped to the backend's options by the config layer
/// (`config::backends`), which has the matching table by `type`.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    /// Backend name, as [`ReplicaStore::kind`].
    pub name: &'static str,
    /// URL schemes (lower case).
    pub schemes: &'static [&'static str],
    /// Opens the store a URL of one of those schemes names.
    pub open_url: fn(&str) -> Result<DynStore, StorageError>,
}

/// Every backend walstream can open, by URL scheme. Adding a backend: its module here, one line
/// in this table and one in `config::backends`, and its test-server script.
pub const BACKENDS: &[Backend] = &[
    Backend {
        name: "file",
        schemes: &["file"],
        open_url: open_file_url,
    },
    Backend {
        name: "s3",
        schemes: &["s3"],
        open_url: s3::open_url,
    },
    Backend {
        name: "gs",
        schemes: &["gs"],
        open_url: gcs::open_url,
    },
    Backend {
        name: "abs",
        schemes: &["abs"],
        open_url: azure::open_url,
    },
    Backend {
        name: "sftp",
        schemes: &["sftp"],
        open_url: sftp::open_url,
    },
];

/// URL schemes Litestream knows and walstream does not open yet, with their backend names.
const NOT_YET: &[(&str, &str)] = &[
    ("webdav", "webdav"),
    ("webdavs", "webdav"),
    ("nats", "nats"),
    ("oss", "oss"),
];

/// Parses a replica URL or plain path into a store. A plain path (or `file://`) is a file replica.
/// Unknown schemes are an error naming the scheme.
///
/// Anything not starting with `<word>://` is a path. As in Litestream, a leading `~` is the home
/// directory and the path is made absolute (lexically, against the current directory), so the
/// store does not move if the process changes directory. A `file://` URL maps to a path the way Litestream 0.5 does it (Go's `url.Parse`,
/// then `path.Clean` of the URL without scheme and query): `file:///var/backup` is
/// `/var/backup`, and a host becomes the first path component, so `file://./backup` is
/// `/backup` and `file://localhost/x` is `/localhost/x`. Percent escapes are not decoded.
pub fn open_url(url: &str) -> Result<DynStore, StorageError> {
    let Some((scheme, _)) = split_url(url) else {
        if url.is_empty() {
            return Err(StorageError::Permanent {
                backend: "file",
                key: String::new(),
                message: "replica path required".to_string(),
            });
        }
        return Ok(Arc::new(file::FileStore::new(absolute_path(url)?)));
    };
    let scheme = scheme.to_ascii_lowercase();
    if let Some(b) = BACKENDS
        .iter()
        .find(|b| b.schemes.contains(&scheme.as_str()))
    {
        return (b.open_url)(url);
    }
    match NOT_YET.iter().find(|(s, _)| *s == scheme) {
        Some((_, backend)) => Err(StorageError::Permanent {
            backend,
            key: redact_url(url),
            message: format!("replica URL scheme {scheme:?} is not supported yet"),
        }),
        None => Err(StorageError::Permanent {
            backend: "url",
            key: redact_url(url),
            message: format!("unsupported replica URL scheme {scheme:?}"),
        }),
    }
}

/// Opens a `file://` URL (see [`open_url`]).
fn open_file_url(url: &str) -> Result<DynStore, StorageError> {
    let rest = split_url(url).map_or(url, |(_, rest)| rest);
    let path = file_url_path(rest);
    if path.is_empty() {
        return Err(StorageError::Permanent {
            backend: "file",
            key: redact_url(url),
            message: "file replica path required".to_string(),
        });
    }
    Ok(Arc::new(file::FileStore::new(path)))
}

/// `~` expanded from `$HOME`, then made absolute and cleaned lexically (`.` and `..` folded), as
/// Go's `filepath.Abs` does.
fn absolute_path(p: &str) -> Result<PathBuf, StorageError> {
    let fail = |message: String| StorageError::Permanent {
        backend: "file",
        key: p.to_string(),
        message,
    };
    let expanded = match p.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .ok_or_else(|| fail("cannot expand ~: HOME is not set".to_string()))?;
            PathBuf::from(home).join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(p),
    };
    crate::paths::absolute_lexical(&expanded).map_err(|e| StorageError::Io {
        backend: "file",
        path: expanded,
        source: e,
    })
}

/// The path of a `file://` URL (`rest` follows `://`), as Litestream derives it.
fn file_url_path(rest: &str) -> String {
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() && path.is_empty() {
        return String::new();
    }
    // Go prints `//host/path` once the scheme is cleared, and path.Clean folds the slashes.
    crate::paths::clean_path(&format!("/{authority}{path}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn root_of(url: &str) -> String {
        open_url(url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .describe()
    }

    #[test]
    fn open_url_paths_and_file_urls_are_file_stores() {
        assert_eq!(root_of("/var/backup"), "file:///var/backup");
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            root_of("backup/db"),
            format!("file://{}", cwd.join("backup/db").display())
        );
        assert_eq!(
            root_of("./backup"),
            format!("file://{}", cwd.join("backup").display())
        );
        assert_eq!(root_of("/a/./b/../c"), "file:///a/c");
        assert_eq!(root_of("/.."), "file:///");
        if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            let home = PathBuf::from(home);
            assert_eq!(
                root_of("~/bk"),
                format!("file://{}", home.join("bk").display())
            );
        }
        assert_eq!(
            root_of("~user/bk"),
            format!("file://{}", cwd.join("~user/bk").display())
        );
        assert_eq!(root_of("file:///var/backup"), "file:///var/backup");
        assert_eq!(root_of("FILE:///var/backup/"), "file:///var/backup");
        assert_eq!(root_of("file:///a/../b/./c//d"), "file:///b/c/d");
        assert_eq!(root_of("file:///var/backup?x=1#frag"), "file:///var/backup");
        // Litestream's reading of a host: it becomes the first path component.
        assert_eq!(root_of("file://./backup"), "file:///backup");
        assert_eq!(root_of("file://localhost/tmp/x"), "file:///localhost/tmp/x");
        assert_eq!(root_of("file://backup"), "file:///backup");
        assert_eq!(open_url("/x").unwrap().kind(), "file");
    }

    #[test]
    fn ltx_layouts_name_the_database_of_an_ltx_key() {
        let f = "0000000000000001-0000000000000002.ltx";
        let d = LtxLayout::LtxDir;
        assert_eq!(d.database_of(&format!("a.db/ltx/0/{f}")), Some("a.db"));
        assert_eq!(
            d.database_of(&format!("t/ltx/b.db/ltx/9/{f}")),
            Some("t/ltx/b.db")
        );
        assert_eq!(d.database_of(&format!("ltx/3/{f}")), Some(""));
        assert_eq!(d.database_of(&format!("a.db/ltx/10/{f}")), None);
        assert_eq!(d.database_of(&format!("a.db/0000/{f}")), None);
        assert_eq!(d.database_of("a.db/ltx/0/.x.tmp"), None);
        assert_eq!(d.database_of("a.db/.walstream/lease"), None);
        let h = LtxLayout::HexLevel;
        assert_eq!(h.database_of(&format!("t/b.db/0009/{f}")), Some("t/b.db"));
        assert_eq!(h.database_of(&format!("0000/{f}")), Some(""));
        assert_eq!(h.database_of(&format!("a.db/000a/{f}")), None);
        assert_eq!(h.database_of(&format!("a.db/ltx/0/{f}")), None);
        let keys = [
            format!("b.db/ltx/0/{f}"),
            format!("a.db/ltx/0/{f}"),
            format!("a.db/ltx/1/{f}"),
            format!("t/c.db/ltx/0/{f}"),
            format!("ltx/0/{f}"),
            format!("../x.db/ltx/0/{f}"),
            format!("/y.db/ltx/0/{f}"),
            format!("t/./z.db/ltx/0/{f}"),
        ];
        let keys = || keys.iter().map(String::as_str);
        assert_eq!(databases_in(d, keys(), false), ["a.db", "b.db"]);
        assert_eq!(databases_in(d, keys(), true), ["a.db", "b.db", "t/c.db"]);
    }

    #[test]
    fn open_url_empty_path_is_error() {
        for url in ["", "file://", "file://?a=b"] {
            let err = open_url(url)
                .err()
                .unwrap_or_else(|| panic!("{url:?} accepted"));
            assert!(err.to_string().contains("path required"), "{url:?}: {err}");
        }
    }

    #[test]
    fn open_url_cloud_schemes_not_supported_yet() {
        for (url, scheme) in [
            ("webdavs://host/path", "webdavs"),
            ("nats://host/bucket", "nats"),
        ] {
            let err = open_url(url)
                .err()
                .unwrap_or_else(|| panic!("{url} accepted"));
            let msg = err.to_string();
            assert!(
                matches!(err, StorageError::Permanent { .. }) && !err.is_retryable(),
                "{url}: {msg}"
            );
            assert!(
                msg.contains("not supported yet") && msg.contains(scheme),
                "{url}: {msg}"
            );
            assert!(
                !msg.contains("hunter2") && !msg.contains("user:"),
                "{url}: secret in {msg}"
            );
        }
    }

    #[test]
    fn open_url_unknown_scheme_names_it() {
        let err = open_url("ftp://user:pw@host/x?token=abc").err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("\"ftp\"") && msg.contains("unsupported"),
            "{msg}"
        );
        assert!(!msg.contains("pw") && !msg.contains("token"), "{msg}");
    }
}
