//! SFTP replicas: `sftp://user[:password]@host[:port]/path`, or `type: sftp` with `host`
//! (`host[:port]`), `user`, `password`, `key-path`, `host-key` and `path`.
//!
//! Layout, as Litestream 0.5: `<path>/ltx/<level>/<min>-<max>.ltx`, with the file's mtime set to
//! the LTX timestamp. A URL's path is relative to the login directory (Litestream cleans the
//! leading `/` away); a config `path` is taken as written, so `/srv/backup` is absolute.
//!
//! Writes are atomic: the bytes go to a hidden temp file beside the target (`.<name>.<n>.tmp`,
//! which neither tool lists), which is fsynced (`fsync@openssh.com`), given its mtime, and
//! renamed into place. SFTP version 3 renames refuse to replace a file, so overwriting an
//! existing name (a retried upload) removes the old file just before the rename.
//!
//! The host key is checked when `host-key` is set (`TYPE BASE64`, as in `authorized_keys`, or a
//! file holding it); without it, as in Litestream, any key is accepted with a warning. Key files
//! are read by libssh2 (OpenSSH and PEM formats, no passphrase). As walstream extensions, a URL
//! may carry `?key-path=…&host-key=…`, since `restore` takes a URL.
//!
//! The two-writer lease has no conditional write to stand on in SFTP v3: it is a
//! compare-and-swap under an `O_EXCL` lock file, with stale-lock recovery by age; see [`lease`]
//! for the scheme and its limits. Upload temp files a kill left behind are removed by
//! [`ReplicaStore::remove_stale_uploads`].
//!
//! One SSH session per store, used from tokio's blocking threads; a call that finds the
//! session broken reconnects once before it gives up.
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use ltx::TxId;
use ssh2::{ErrorCode, FileStat, OpenFlags, OpenType, RenameFlags, Sftp};

use super::azure::clean_prefix;
use super::{ByteStream, DynStore, LtxFileInfo, ReplicaStore, StorageError};

mod conn;
mod lease;

use conn::{Conn, ConnectError, HostKey};

const BACKEND: &str = "sftp";
const DEFAULT_PORT: u16 = 22;
/// Bytes per SFTP read or write call (libssh2 pipelines them in 32 KiB packets).
const IO_CHUNK: usize = 256 * 1024;
const FILE_MODE: i32 = 0o644;
const DIR_MODE: i32 = 0o755;

/// Makes lease nonces unique within the process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Where and how to log in, resolved from a replica config.
#[derive(Clone)]
pub(crate) struct Settings {
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    key_path: Option<String>,
    host_key: Option<HostKey>,
    /// The replica's root on the server: "" (the login directory), relative, or absolute.
    root: String,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_path", &self.key_path)
            .field("host_key", &self.host_key.as_ref().map(|k| &k.kind))
            .field("root", &self.root)
            .finish()
    }
}

fn config_error(key: String, message: impl Into<String>) -> StorageError {
    StorageError::Permanent {
        backend: BACKEND,
        key,
        message: message.into(),
    }
}

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// `host`, `host:port` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let s = s.trim();
    let bad_port = |p: &str| format!("invalid port {p:?} in host {s:?}");
    if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("invalid host {s:?}"))?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad_port(p))?,
            None => DEFAULT_PORT,
        };
        return Ok((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((h, _)) if h.contains(':') => Ok((s.to_string(), DEFAULT_PORT)),
        Some((h, p)) => Ok((h.to_string(), p.parse().map_err(|_| bad_port(p))?)),
        None => Ok((s.to_string(), DEFAULT_PORT)),
    }
}

impl Settings {
    pub(crate) fn from_config(cfg: &SftpOptions) -> Result<Settings, StorageError> {
        let mut host = non_empty(&cfg.host);
        let mut user = non_empty(&cfg.user);
        let mut password = non_empty(&cfg.password);
        let mut key_path = non_empty(&cfg.key_path);
        let mut host_key = non_empty(&cfg.host_key);
        let mut root = non_empty(&cfg.path).map(|p| crate::paths::clean_path(&p));
        if let Some(raw) = cfg.url.as_deref().filter(|u| !u.trim().is_empty()) {
            let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
                config_error(
                    crate::paths::redact_url(raw),
                    format!("invalid replica URL: {e}"),
                )
            })?;
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            };
            if let Some(h) = url.host_str().filter(|h| !h.is_empty()) {
                host = Some(match url.port() {
                    Some(p) => format!("{h}:{p}"),
                    None => h.to_string(),
                });
            }
            if user.is_none() && !url.username().is_empty() {
                user = Some(decode(url.username()));
            }
            if password.is_none() {
                password = url.password().map(decode).filter(|p| !p.is_empty());
            }
            // Litestream: path.Clean, then the leading `/` trimmed: relative to the login dir.
            let path = clean_prefix(&decode(url.path()));
            if !path.is_empty() {
                root = Some(path);
            }
            for (k, v) in url.query_pairs() {
                match k.as_ref() {
                    "key-path" if key_path.is_none() && !v.is_empty() => {
                        key_path = Some(v.into_owned())
                    }
                    "host-key" if host_key.is_none() && !v.is_empty() => {
                        host_key = Some(v.into_owned())
                    }
                    _ => {}
                }
            }
        }
        let host =
            host.ok_or_else(|| config_error(String::new(), "host required for sftp replica"))?;
        let (host, port) = split_host_port(&host).map_err(|m| config_error(String::new(), m))?;
        let user =
            user.ok_or_else(|| config_error(host.clone(), "user required for sftp replica"))?;
        let host_key = match host_key {
            Some(k) => Some(
                HostKey::parse(&k).map_err(|m| config_error(format!("{user}@{host}:{port}"), m))?,
            ),
            None => None,
        };
        Ok(Settings {
            host,
            port,
            user,
            password,
            key_path,
            host_key,
            root: root.unwrap_or_default(),
        })
    }

    /// `<root>/<rel>`, or `rel` itself for the login directory.
    fn join(&self, rel: &str) -> String {
        match self.root.as_str() {
            "" => rel.to_string(),
            "/" => format!("/{rel}"),
            r => format!("{}/{rel}", r.trim_end_matches('/')),
        }
    }
}

/// The sftp replica's own settings as configured: an
/// `sftp://user[:password]@host[:port]/path?key-path=&host-key=` URL and/or the keys (the URL's
/// host and path win; the keys' user, password, key path and host key win). `Debug` shows no
/// secret.
#[derive(Clone, Default, PartialEq)]
pub struct SftpOptions {
    /// `sftp://user@host[:port]/path`.
    pub url: Option<String>,
    /// `host[:port]`.
    pub host: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Password. Secret.
    pub password: Option<String>,
    /// Private key file.
    pub key_path: Option<String>,
    /// Expected host key (authorized_keys format).
    pub host_key: Option<String>,
    /// Directory on the server (relative to the login directory unless it starts with `/`).
    pub path: Option<String>,
}

impl std::fmt::Debug for SftpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpOptions")
            .field("url", &self.url.as_deref().map(crate::paths::redact_url))
            .field("host", &self.host)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("key_path", &self.key_path)
            .field("host_key", &self.host_key)
            .field("path", &self.path)
            .finish()
    }
}

/// Opens a bare `sftp://` URL.
pub fn open_url(url: &str) -> Result<DynStore, StorageError> {
    open(&SftpOptions {
        url: Some(url.to_string()),
        ..Default::default()
    })
}

/// Builds the store from its options (a `url` and/or explicit keys). Nothing is contacted
/// until the first call.
pub fn open(cfg: &SftpOptions) -> Result<DynStore, StorageError> {
    Ok(Arc::new(SftpStore::new(cfg)?))
}

/// A directory on an SFTP server as a replica.
pub struct SftpStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SftpStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpStore")
            .field("location", &self.describe())
            .finish()
    }
}

struct Inner {
    settings: Settings,
    conn: Mutex<Option<Arc<Conn>>>,
    /// Directories known to exist, so that writes don't stat them again.
    dirs: Mutex<HashSet<String>>,
}

/// A failed step of an operation.
enum OpError {
    /// On the server: the step (`"open"`, `"rename"`, …) and the remote path.
    Remote(ssh2::Error, &'static str, String),
    /// On the server, seen through `std::io` (reads, writes and seeks of an open file): the
    /// session may be gone.
    RemoteIo(std::io::Error, &'static str, String),
    /// On the local side (reading the source file).
    Local(std::io::Error, PathBuf),
}

type OpResult<T> = Result<T, OpError>;

fn remote<T>(r: Result<T, ssh2::Error>, step: &'static str, path: &str) -> OpResult<T> {
    r.map_err(|e| OpError::Remote(e, step, path.to_string()))
}

fn is_missing(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::SFTP(conn::FX_NO_SUCH_FILE) | ErrorCode::SFTP(conn::FX_NO_SUCH_PATH)
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks leaves nothing inconsistent: take the data anyway.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn location(&self, remote_path: &str) -> String {
        let s = &self.settings;
        format!("{}@{}:{}:{remote_path}", s.user, s.host, s.port)
    }

    fn connection(&self) -> Result<Arc<Conn>, StorageError> {
        let mut guard = lock(&self.conn);
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let key = self.location(&self.settings.root);
        let c = Arc::new(Conn::open(&self.settings).map_err(|e| match e {
            ConnectError::Unreachable(message) => StorageError::Transient {
                backend: BACKEND,
                key: key.clone(),
                message,
            },
            ConnectError::Refused(message) => StorageError::Permanent {
                backend: BACKEND,
                key: key.clone(),
                message,
            },
        })?);
        *guard = Some(c.clone());
        Ok(c)
    }

    /// Forgets a broken session (if it is still the current one).
    fn reset(&self, broken: &Arc<Conn>) {
        let mut guard = lock(&self.conn);
        if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, broken)) {
            *guard = None;
        }
        lock(&self.dirs).clear();
    }

    fn map(&self, e: OpError) -> StorageError {
        match e {
            OpError::Local(source, path) => StorageError::Io {
                backend: BACKEND,
                path,
                source,
            },
            OpError::RemoteIo(e, step, path) => StorageError::Transient {
                backend: BACKEND,
                key: self.location(&path),
                message: format!("{step}: {e}"),
            },
            OpError::Remote(e, step, path) => {
                let key = self.location(&path);
                let message = format!("{step}: {}", e.message());
                match e.code() {
                    _ if is_missing(&e) && step == "open" => StorageError::NotFound {
                        backend: BACKEND,
                        key,
                    },
                    ErrorCode::SFTP(conn::FX_PERMISSION_DENIED) => StorageError::Permanent {
                        backend: BACKEND,
                        key,
                        message: format!("{step}: permission denied"),
                    },
                    ErrorCode::SFTP(code) if !conn::session_broken(&e) => StorageError::Permanent {
                        backend: BACKEND,
                        key,
                        message: format!("{message} (SFTP status {code})"),
                    },
                    _ => StorageError::Transient {
                        backend: BACKEND,
                        key,
                        message,
                    },
                }
            }
        }
    }

    /// Runs `op` on the session, reconnecting once if the session turns out broken.
    fn run<T>(&self, op: impl Fn(&Self, &Sftp) -> OpResult<T>) -> Result<T, StorageError> {
        let mut retried = false;
        loop {
            let c = self.connection()?;
            match op(self, &c.sftp) {
                Ok(v) => return Ok(v),
                Err(e @ OpError::RemoteIo(..)) => {
                    self.reset(&c);
                    if retried {
                        return Err(self.map(e));
                    }
                    retried = true;
                }
                Err(OpError::Remote(e, step, path)) if conn::session_broken(&e) => {
                    self.reset(&c);
                    if retried {
                        return Err(self.map(OpError::Remote(e, step, path)));
                    }
                    tracing::debug!(error = %e, "sftp session broken; reconnecting");
                    retried = true;
                }
                Err(e) => return Err(self.map(e)),
            }
        }
    }

    /// `mkdir -p`, remembering what exists.
    fn ensure_dir(&self, sftp: &Sftp, dir: &str) -> OpResult<()> {
        if lock(&self.dirs).contains(dir) {
            return Ok(());
        }
        let mut cur = String::new();
        if dir.starts_with('/') {
            cur.push('/');
        }
        for part in dir.split('/').filter(|p| !p.is_empty()) {
            if !cur.is_empty() && !cur.ends_with('/') {
                cur.push('/');
            }
            cur.push_str(part);
            if lock(&self.dirs).contains(&cur) {
                continue;
            }
            let p = Path::new(&cur);
            match sftp.stat(p) {
                Ok(st) if st.is_dir() => {}
                Ok(_) => {
                    return Err(OpError::Remote(
                        ssh2::Error::new(ErrorCode::SFTP(4), "not a directory"),
                        "mkdir",
                        cur,
                    ))
                }
                Err(_) => {
                    if let Err(e) = sftp.mkdir(p, DIR_MODE) {
                        // Made by someone else meanwhile?
                        if !sftp.stat(p).is_ok_and(|st| st.is_dir()) {
                            return Err(OpError::Remote(e, "mkdir", cur));
                        }
                    }
                }
            }
            lock(&self.dirs).insert(cur.clone());
        }
        Ok(())
    }

    fn level_dir(&self, level: u8) -> String {
        self.settings.join(&format!("ltx/{level}"))
    }

    fn file_path(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}/{}", self.level_dir(level), ltx::file_name(min, max))
    }

    fn list(&self, sftp: &Sftp, level: u8) -> OpResult<Vec<LtxFileInfo>> {
        let dir = self.level_dir(level);
        let entries = match sftp.readdir(Path::new(&dir)) {
            Ok(e) => e,
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(OpError::Remote(e, "readdir", dir)),
        };
        let mut out = Vec::new();
        for (path, st) in entries {
            let Some((min_txid, max_txid)) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(ltx::parse_file_name)
            else {
                continue;
            };
            if !st.is_file() {
                continue;
            }
            out.push(LtxFileInfo {
                level,
                min_txid,
                max_txid,
                size: st.size.unwrap_or(0),
                created_at: UNIX_EPOCH + Duration::from_secs(st.mtime.unwrap_or(0)),
            });
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
    }

    /// Every regular file under the root whose key (path relative to the root) starts with
    /// `prefix`; only the directory the prefix names is walked, symlinks are not followed.
    fn list_objects(&self, sftp: &Sftp, prefix: &str) -> OpResult<Vec<super::ObjectInfo>> {
        let base = prefix.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let mut out = Vec::new();
        let mut dirs = vec![base.to_string()];
        while let Some(key) = dirs.pop() {
            let dir = match (key.as_str(), self.settings.root.as_str()) {
                ("", "") => ".".to_string(),
                ("", _) => self.settings.join("").trim_end_matches('/').to_string(),
                (k, _) => self.settings.join(k),
            };
            let dir = if dir.is_empty() { "/".to_string() } else { dir };
            let entries = match sftp.readdir(Path::new(&dir)) {
                Ok(e) => e,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(OpError::Remote(e, "readdir", dir)),
            };
            for (path, st) in entries {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                let child = if key.is_empty() {
                    name.to_string()
                } else {
                    format!("{key}/{name}")
                };
                if st.is_dir() {
                    if child.starts_with(prefix) || prefix.starts_with(&format!("{child}/")) {
                        dirs.push(child);
                    }
                } else if st.is_file() && child.starts_with(prefix) {
                    out.push(super::ObjectInfo {
                        key: child,
                        size: st.size.unwrap_or(0),
                        modified: UNIX_EPOCH + Duration::from_secs(st.mtime.unwrap_or(0)),
                    });
                }
            }
        }
        Ok(out)
    }

    fn write(&self, sftp: &Sftp, dst: &str, src: &Path, created_at: SystemTime) -> OpResult<u64> {
        let (dir, name) = dst.rsplit_once('/').unwrap_or(("", dst));
        if !dir.is_empty() {
            self.ensure_dir(sftp, dir)?;
        }
        let tmp_name = super::upload_temp::temp_name(name);
        let tmp = if dir.is_empty() {
            tmp_name
        } else {
            format!("{dir}/{tmp_name}")
        };
        let _in_flight = super::upload_temp::InFlight::new(self.in_flight_key(&tmp));
        let result = self
            .write_tmp(sftp, &tmp, src, created_at)
            .and_then(|size| {
                self.replace(sftp, &tmp, dst)?;
                Ok(size)
            });
        if result.is_err() {
            let _ = sftp.unlink(Path::new(&tmp));
        }
        result
    }

    fn write_tmp(
        &self,
        sftp: &Sftp,
        tmp: &str,
        src: &Path,
        created_at: SystemTime,
    ) -> OpResult<u64> {
        let mut input =
            std::fs::File::open(src).map_err(|e| OpError::Local(e, src.to_path_buf()))?;
        let mut f = remote(
            sftp.open_mode(
                Path::new(tmp),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                FILE_MODE,
                OpenType::File,
            ),
            "create",
            tmp,
        )?;
        let mut buf = vec![0u8; IO_CHUNK];
        let mut size = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(OpError::Local(e, src.to_path_buf())),
            };
            f.write_all(&buf[..n])
                .map_err(|e| OpError::RemoteIo(e, "write", tmp.to_string()))?;
            size += n as u64;
        }
        // fsync@openssh.com: servers without it still have the data after close.
        let _ = f.fsync();
        let secs = created_at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let times = FileStat {
            size: None,
            uid: None,
            gid: None,
            perm: None,
            atime: Some(secs),
            mtime: Some(secs),
        };
        remote(f.setstat(times), "set mtime", tmp)?;
        remote(f.close(), "close", tmp)?;
        Ok(size)
    }

    /// Renames `tmp` over `dst`. SFTP v3 (OpenSSH's) refuses to replace an existing file, so on
    /// that refusal the old file goes first.
    fn replace(&self, sftp: &Sftp, tmp: &str, dst: &str) -> OpResult<()> {
        let flags = Some(RenameFlags::OVERWRITE | RenameFlags::ATOMIC | RenameFlags::NATIVE);
        match sftp.rename(Path::new(tmp), Path::new(dst), flags) {
            Ok(()) => Ok(()),
            Err(e) if conn::session_broken(&e) => Err(OpError::Remote(e, "rename", dst.into())),
            Err(e) => {
                if sftp.stat(Path::new(dst)).is_err() {
                    return Err(OpError::Remote(e, "rename", dst.into()));
                }
                match sftp.unlink(Path::new(dst)) {
                    Ok(()) => {}
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(OpError::Remote(e, "remove old", dst.into())),
                }
                remote(
                    sftp.rename(Path::new(tmp), Path::new(dst), flags),
                    "rename",
                    dst,
                )
            }
        }
    }

    fn open_at(&self, sftp: &Sftp, path: &str, offset: u64) -> OpResult<ssh2::File> {
        let mut f = remote(sftp.open(Path::new(path)), "open", path)?;
        if offset > 0 {
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| OpError::RemoteIo(e, "seek", path.to_string()))?;
        }
        Ok(f)
    }

    fn delete(&self, sftp: &Sftp, paths: &[String]) -> OpResult<()> {
        for p in paths {
            match sftp.unlink(Path::new(p)) {
                Ok(()) => {}
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(OpError::Remote(e, "remove", p.clone())),
            }
        }
        Ok(())
    }
}

/// Runs blocking work off the async runtime.
async fn blocking<T, F>(inner: &Arc<Inner>, f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce(&Inner) -> Result<T, StorageError> + Send + 'static,
{
    let inner = inner.clone();
    match tokio::task::spawn_blocking(move || f(&inner)).await {
        Ok(r) => r,
        Err(e) => Err(StorageError::Transient {
            backend: BACKEND,
            key: String::new(),
            message: format!("blocking task failed: {e}"),
        }),
    }
}

/// Reads the next chunk; `None` at end of file.
fn read_chunk(f: &mut ssh2::File) -> std::io::Result<Option<Bytes>> {
    let mut buf = vec![0u8; IO_CHUNK];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some(Bytes::from(buf)))
}

impl SftpStore {
    /// A store for the server and path a replica config names.
    pub fn new(cfg: &SftpOptions) -> Result<SftpStore, StorageError> {
        Ok(SftpStore {
            inner: Arc::new(Inner {
                settings: Settings::from_config(cfg)?,
                conn: Mutex::new(None),
                dirs: Mutex::new(HashSet::new()),
            }),
        })
    }
}

impl SftpStore {
    /// Streams the remote file `path` from `offset`.
    async fn open_path(&self, path: String, offset: u64) -> Result<ByteStream, StorageError> {
        let p = path.clone();
        let file = blocking(&self.inner, move |inner| {
            inner.run(|inner, sftp| inner.open_at(sftp, &p, offset))
        })
        .await?;
        let key = self.inner.location(&path);
        // Each chunk is one blocking read; the stream ends after an error or at end of file.
        let stream = futures::stream::unfold(Some(file), move |state| {
            let key = key.clone();
            async move {
                let mut file = state?;
                let r = tokio::task::spawn_blocking(move || {
                    let r = read_chunk(&mut file);
                    (file, r)
                })
                .await;
                let err = |message: String| StorageError::Transient {
                    backend: BACKEND,
                    key,
                    message,
                };
                match r {
                    Ok((file, Ok(Some(chunk)))) => Some((Ok(chunk), Some(file))),
                    Ok((_, Ok(None))) => None,
                    Ok((_, Err(e))) => Some((Err(err(format!("read: {e}"))), None)),
                    Err(e) => Some((Err(err(format!("blocking task failed: {e}"))), None)),
                }
            }
        });
        Ok(stream.boxed())
    }
}

#[async_trait]
impl ReplicaStore for SftpStore {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn describe(&self) -> String {
        let s = &self.inner.settings;
        let host = if s.host.contains(':') {
            format!("[{}]", s.host)
        } else {
            s.host.clone()
        };
        format!(
            "sftp://{}@{host}:{}/{}",
            s.user,
            s.port,
            s.root.trim_start_matches('/')
        )
    }

    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        blocking(&self.inner, move |inner| {
            inner.run(|inner, sftp| inner.list(sftp, level))
        })
        .await
    }

    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        self.open_path(self.inner.file_path(level, min, max), offset)
            .await
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<super::ObjectInfo>, StorageError> {
        let p = prefix.to_string();
        blocking(&self.inner, move |inner| {
            inner.run(|inner, sftp| inner.list_objects(sftp, &p))
        })
        .await
    }

    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        if key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(StorageError::Permanent {
                backend: BACKEND,
                key: key.to_string(),
                message: "invalid object key".to_string(),
            });
        }
        self.open_path(self.inner.settings.join(key), offset).await
    }

    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        let dst = self.inner.file_path(level, min, max);
        let src = src.to_path_buf();
        let size = blocking(&self.inner, move |inner| {
            inner.run(|inner, sftp| inner.write(sftp, &dst, &src, created_at))
        })
        .await?;
        Ok(LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at,
        })
    }

    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError> {
        if files.is_empty() {
            return Ok(());
        }
        let paths: Vec<String> = files
            .iter()
            .map(|f| self.inner.file_path(f.level, f.min_txid, f.max_txid))
            .collect();
        blocking(&self.inner, move |inner| {
            inner.run(|inner, sftp| inner.delete(sftp, &paths))
        })
        .await
    }

    /// Under a lock file: see [`lease`] for the scheme and its limits.
    fn supports_lease(&self) -> bool {
        true
    }

    async fn read_lease(&self) -> Result<Option<super::LeaseObject>, StorageError> {
        blocking(&self.inner, |inner| {
            inner.run(|inner, sftp| inner.lease_read(sftp))
        })
        .await
    }

    async fn write_lease(
        &self,
        data: Bytes,
        expected: Option<&super::LeaseVersion>,
    ) -> Result<super::LeaseVersion, StorageError> {
        let expected = expected.cloned();
        let nonce = lease::nonce();
        let key = self
            .inner
            .location(&self.inner.settings.join(super::LEASE_KEY));
        let outcome = blocking(&self.inner, move |inner| {
            inner.run(|inner, sftp| inner.lease_write(sftp, &data, expected.as_ref(), &nonce))
        })
        .await?;
        match outcome {
            lease::WriteOutcome::Written(v) => Ok(v),
            lease::WriteOutcome::Conflict(why) => Err(StorageError::Conflict {
                backend: BACKEND,
                key,
                message: format!("conditional write refused: {why}"),
            }),
            lease::WriteOutcome::Busy => Err(StorageError::Transient {
                backend: BACKEND,
                key,
                message: format!(
                    "the lease lock was held by another writer for {:?}; try again",
                    lease::LOCK_WAIT
                ),
            }),
        }
    }

    async fn remove_stale_uploads(&self) -> Result<usize, StorageError> {
        blocking(&self.inner, |inner| {
            inner.run(|inner, sftp| inner.remove_stale_uploads(sftp))
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
