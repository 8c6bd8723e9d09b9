//! A replica in a local directory: `<root>/ltx/<level>/<min>-<max>.ltx`, mtime = LTX timestamp.
//!
//! This is Litestream's `file` backend layout, so either tool can read the other's replica.
//! Writes go to a hidden temp file beside the target, are fsynced, renamed into place, and the
//! directory is fsynced: a reader sees a whole file or none.
use std::fs::{DirBuilder, FileTimes, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use ltx::TxId;

use super::{ByteStream, LtxFileInfo, ReplicaStore, StorageError};

const BACKEND: &str = "file";
/// Chunk size of [`FileStore::open_ltx_file`] streams.
const READ_CHUNK: usize = 256 * 1024;
/// Mode of created files and directories (before the umask). Litestream copies the database
/// file's mode when it knows the database; a store has no database, so it uses the usual modes.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// Makes lease temp file names unique within the process.
static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A directory replica.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileStore { root: root.into() }
    }
    /// The root directory.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }
    /// `<root>/ltx/<level>`.
    pub fn level_dir(&self, level: u8) -> PathBuf {
        self.root.join("ltx").join(level.to_string())
    }
    /// `<root>/ltx/<level>/<min>-<max>.ltx`.
    pub fn ltx_path(&self, level: u8, min: TxId, max: TxId) -> PathBuf {
        self.level_dir(level).join(ltx::file_name(min, max))
    }
}

fn io_err(path: &Path, source: std::io::Error) -> StorageError {
    StorageError::Io {
        backend: BACKEND,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs blocking file system work off the async runtime.
async fn blocking<T, F>(path: &Path, f: F) -> Result<T, StorageError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StorageError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(io_err(
            path,
            std::io::Error::other(format!("blocking task failed: {e}")),
        )),
    }
}

fn list_level(dir: &Path, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        // Temp files (`.<name>.<n>.tmp`, Litestream's `<name>.tmp`) and strangers don't parse.
        let Some((min_txid, max_txid)) = name.to_str().and_then(ltx::parse_file_name) else {
            continue;
        };
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Deleted between readdir and stat: it is simply not there any more.
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&entry.path(), e)),
        };
        if !meta.is_file() {
            continue;
        }
        let created_at = meta.modified().map_err(|e| io_err(&entry.path(), e))?;
        out.push(LtxFileInfo {
            level,
            min_txid,
            max_txid,
            size: meta.len(),
            created_at,
        });
    }
    out.sort_by_key(|f| (f.min_txid, f.max_txid));
    Ok(out)
}

fn create_dirs(dir: &Path) -> Result<(), StorageError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| io_err(dir, e))
}

fn fsync_dir(dir: &Path) -> Result<(), StorageError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))
}

/// Copies `src` to `dst` atomically (temp file, fsync, rename, fsync dir) with mtime `created_at`;
/// returns the size.
fn write_atomic(src: &Path, dst: &Path, created_at: SystemTime) -> Result<u64, StorageError> {
    let dir = dst
        .parent()
        .ok_or_else(|| io_err(dst, std::io::Error::other("no parent directory")))?;
    let name = dst.file_name().and_then(|n| n.to_str()).unwrap_or("ltx");
    create_dirs(dir)?;
    let tmp = dir.join(super::upload_temp::temp_name(name));
    let _in_flight = super::upload_temp::InFlight::new(in_flight_key(&tmp));
    let result = (|| {
        let mut input = std::fs::File::open(src).map_err(|e| io_err(src, e))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        let size = std::io::copy(&mut input, &mut out).map_err(|e| io_err(&tmp, e))?;
        // Before the fsync and the rename, so the final name never shows another mtime.
        let times = FileTimes::new()
            .set_modified(created_at)
            .set_accessed(created_at);
        out.set_times(times).map_err(|e| io_err(&tmp, e))?;
        out.flush().map_err(|e| io_err(&tmp, e))?;
        out.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(out);
        crate::failpoint::hit("upload.before_rename");
        std::fs::rename(&tmp, dst).map_err(|e| io_err(dst, e))?;
        crate::failpoint::hit("upload.after_rename");
        Ok(size)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let size = result?;
    fsync_dir(dir)?;
    Ok(size)
}

fn in_flight_key(tmp: &Path) -> String {
    format!("{BACKEND}:{}", tmp.display())
}

/// Removes upload temp files ([`super::upload_temp::is_temp_name`]) from the level directories
/// under `root`, except those this process is writing; returns how many went.
fn remove_stale_uploads(store: &FileStore) -> Result<usize, StorageError> {
    let mut removed = 0;
    for level in 0..=super::SNAPSHOT_LEVEL {
        let dir = store.level_dir(level);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name();
            if !name.to_str().is_some_and(super::upload_temp::is_temp_name) {
                continue;
            }
            let path = entry.path();
            if super::upload_temp::is_in_flight(&in_flight_key(&path)) {
                continue;
            }
            // Not a directory or a link's target: only a plain file of that name goes.
            match entry.file_type() {
                Ok(t) if t.is_file() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&path, e)),
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed a stale upload temp file");
                    removed += 1;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path, e)),
            }
        }
    }
    Ok(removed)
}

/// Opens `path` at `offset`; a missing file is [`StorageError::NotFound`].
fn open_at(path: &Path, offset: u64) -> Result<std::fs::File, StorageError> {
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(StorageError::NotFound {
                backend: BACKEND,
                key: path.display().to_string(),
            })
        }
        Err(e) => return Err(io_err(path, e)),
    };
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| io_err(path, e))?;
    Ok(f)
}

/// Reads the next chunk; `None` at end of file.
fn read_chunk(f: &mut std::fs::File, path: &Path) -> Result<Option<Bytes>, StorageError> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(path, e)),
        }
    }
    if n == 0 {
        return Ok(None);
    }
    buf.truncate(n);
    Ok(Some(Bytes::from(buf)))
}

/// Streams an open file from its current position: each chunk is one blocking read; the stream
/// ends after an error or at end of file.
fn stream_file(file: std::fs::File, path: PathBuf) -> ByteStream {
    futures::stream::unfold(Some((file, path)), |state| async move {
        let (mut file, path) = state?;
        let p = path.clone();
        let r = tokio::task::spawn_blocking(move || {
            let r = read_chunk(&mut file, &p);
            (file, r)
        })
        .await;
        match r {
            Ok((file, Ok(Some(chunk)))) => Some((Ok(chunk), Some((file, path)))),
            Ok((_, Ok(None))) => None,
            Ok((_, Err(e))) => Some((Err(e), None)),
            Err(e) => Some((
                Err(io_err(
                    &path,
                    std::io::Error::other(format!("blocking task failed: {e}")),
                )),
                None,
            )),
        }
    })
    .boxed()
}

/// Every regular file under `root` whose key (path relative to `root`, `/`-separated) starts with
/// `prefix`. Only the directory the prefix names is walked; symlinks are not followed.
fn list_objects(root: &Path, prefix: &str) -> Result<Vec<super::ObjectInfo>, StorageError> {
    let base = match prefix.rfind('/') {
        Some(i) => &prefix[..i],
        None => "",
    };
    let mut out = Vec::new();
    let mut dirs = vec![(root.join(base), base.to_string())];
    while let Some((dir, key)) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
                continue
            }
            Err(e) => return Err(io_err(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let child = if key.is_empty() {
                name
            } else {
                format!("{key}/{name}")
            };
            let ft = match entry.file_type() {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&entry.path(), e)),
            };
            if ft.is_dir() {
                if child.starts_with(prefix) || prefix.starts_with(&format!("{child}/")) {
                    dirs.push((entry.path(), child));
                }
            } else if ft.is_file() && child.starts_with(prefix) {
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&entry.path(), e)),
                };
                out.push(super::ObjectInfo {
                    key: child,
                    size: meta.len(),
                    modified: meta.modified().map_err(|e| io_err(&entry.path(), e))?,
                });
            }
        }
    }
    Ok(out)
}

/// The path of object `key` under `root`; `None` for a key that would leave the root.
fn object_path(root: &Path, key: &str) -> Option<PathBuf> {
    let mut p = root.to_path_buf();
    for part in key.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return None;
        }
        p.push(part);
    }
    Some(p)
}

/// A version of the lease file: its length and FNV-1a hash (the contents name owner, generation
/// and expiry, so equal contents are the same lease).
pub(super) fn lease_version(data: &[u8]) -> super::LeaseVersion {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    super::LeaseVersion(format!("{}-{h:016x}", data.len()))
}

fn read_lease_file(path: &Path) -> Result<Option<super::LeaseObject>, StorageError> {
    match std::fs::read(path) {
        Ok(data) => Ok(Some(super::LeaseObject {
            version: lease_version(&data),
            data: Bytes::from(data),
        })),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

/// Compare-and-swap of the lease file: under an exclusive `flock` of `lease.lock` beside it (held
/// only for this call, and taken by every walstream the same way), read, compare, write a temp
/// file, fsync, rename, fsync the directory.
fn write_lease_file(
    path: &Path,
    data: &[u8],
    expected: Option<&super::LeaseVersion>,
) -> Result<super::LeaseVersion, StorageError> {
    let dir = path
        .parent()
        .ok_or_else(|| io_err(path, std::io::Error::other("no parent directory")))?;
    create_dirs(dir)?;
    let lock_path = dir.join("lease.lock");
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(&lock_path)
        .map_err(|e| io_err(&lock_path, e))?;
    lock.lock().map_err(|e| io_err(&lock_path, e))?;
    let current = read_lease_file(path)?;
    let conflict = |message: String| StorageError::Conflict {
        backend: BACKEND,
        key: path.display().to_string(),
        message,
    };
    match (expected, &current) {
        (None, None) => {}
        (None, Some(_)) => return Err(conflict("the lease exists already".to_string())),
        (Some(_), None) => return Err(conflict("the lease is gone".to_string())),
        (Some(want), Some(cur)) if &cur.version != want => {
            return Err(conflict(
                "the lease was changed by someone else".to_string(),
            ))
        }
        (Some(_), Some(_)) => {}
    }
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".lease.{}-{seq}.tmp", std::process::id()));
    let result = (|| {
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        out.write_all(data).map_err(|e| io_err(&tmp, e))?;
        out.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(out);
        std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    fsync_dir(dir)?;
    drop(lock);
    Ok(lease_version(data))
}

#[async_trait]
impl ReplicaStore for FileStore {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn describe(&self) -> String {
        if self.root.is_absolute() {
            format!("file://{}", self.root.display())
        } else {
            self.root.display().to_string()
        }
    }

    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        let dir = self.level_dir(level);
        let d = dir.clone();
        blocking(&dir, move || list_level(&d, level)).await
    }

    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        let path = self.ltx_path(level, min, max);
        let p = path.clone();
        let file = blocking(&path, move || open_at(&p, offset)).await?;
        Ok(stream_file(file, path))
    }

    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        let dst = self.ltx_path(level, min, max);
        let (s, d) = (src.to_path_buf(), dst.clone());
        let size = blocking(&dst, move || write_atomic(&s, &d, created_at)).await?;
        Ok(LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at,
        })
    }

    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError> {
        let paths: Vec<PathBuf> = files
            .iter()
            .map(|f| self.ltx_path(f.level, f.min_txid, f.max_txid))
            .collect();
        blocking(&self.root, move || {
            for p in &paths {
                match std::fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(p, e)),
                }
                crate::failpoint::hit("retention.between_deletes");
            }
            Ok(())
        })
        .await
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<super::ObjectInfo>, StorageError> {
        let root = self.root.clone();
        let p = prefix.to_string();
        blocking(&self.root, move || list_objects(&root, &p)).await
    }

    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        let Some(path) = object_path(&self.root, key) else {
            return Err(StorageError::Permanent {
                backend: BACKEND,
                key: key.to_string(),
                message: "invalid object key".to_string(),
            });
        };
        let p = path.clone();
        let file = blocking(&path, move || open_at(&p, offset)).await?;
        Ok(stream_file(file, path))
    }

    fn supports_lease(&self) -> bool {
        true
    }

    async fn remove_stale_uploads(&self) -> Result<usize, StorageError> {
        let store = self.clone();
        blocking(&self.root, move || remove_stale_uploads(&store)).await
    }

    async fn read_lease(&self) -> Result<Option<super::LeaseObject>, StorageError> {
        let path = self.root.join(super::LEASE_KEY);
        let p = path.clone();
        blocking(&path, move || read_lease_file(&p)).await
    }

    async fn write_lease(
        &self,
        data: Bytes,
        expected: Option<&super::LeaseVersion>,
    ) -> Result<super::LeaseVersion, StorageError> {
        let path = self.root.join(super::LEASE_KEY);
        let (p, expected) = (path.clone(), expected.cloned());
        blocking(&path, move || {
            write_lease_file(&p, &data, expected.as_ref())
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::contract;
    use crate::storage::upload_temp;
    use crate::storage::DynStore;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, DynStore) {
        let dir = tempfile::tempdir().unwrap();
        let s: DynStore = Arc::new(FileStore::new(dir.path().join("replica")));
        (dir, s)
    }

    #[tokio::test]
    async fn file_store_contract_suite_passes() {
        let mut dirs = Vec::new();
        contract::run_all(|| {
            let (d, s) = store();
            dirs.push(d);
            async move { s }
        })
        .await;
    }

    #[tokio::test]
    async fn file_store_contract_listing_passes() {
        let (dir, root) = store();
        let base = dir.path().join("replica");
        contract::run_listing(root, |rel| {
            Arc::new(FileStore::new(base.join(rel))) as DynStore
        })
        .await;
    }

    #[tokio::test]
    async fn file_store_layout_matches_litestream() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FileStore::new(dir.path());
        let src = dir.path().join("src.ltx");
        std::fs::write(&src, b"hello").unwrap();
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        fs.write_ltx_file(3, TxId(0x1a), TxId(0x2b), &src, t)
            .await
            .unwrap();
        let p = dir
            .path()
            .join("ltx/3/000000000000001a-000000000000002b.ltx");
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), t);
        // No temp file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("ltx/3"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1);
        assert_eq!(fs.describe(), format!("file://{}", dir.path().display()));
        assert_eq!(fs.kind(), "file");
    }

    #[tokio::test]
    async fn file_store_listing_skips_temp_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FileStore::new(dir.path());
        let level = dir.path().join("ltx/0");
        std::fs::create_dir_all(&level).unwrap();
        for name in [
            "0000000000000001-0000000000000001.ltx",
            "0000000000000002-0000000000000002.ltx.tmp",
            ".0000000000000003-0000000000000003.ltx.1-2.tmp",
            "README",
            "1-1.ltx",
        ] {
            std::fs::write(level.join(name), b"x").unwrap();
        }
        std::fs::create_dir(level.join("0000000000000009-0000000000000009.ltx")).unwrap();
        let files = fs.ltx_files(0).await.unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!((files[0].min_txid, files[0].size), (TxId(1), 1));
    }

    /// Temp files a killed upload left go, in every level; LTX files, Litestream's temp files,
    /// strangers, directories and an upload in flight stay.
    #[tokio::test]
    async fn file_store_removes_stale_upload_temp_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FileStore::new(dir.path());
        let mut src = contract::Sources::new();
        let t = SystemTime::now();
        for (level, min) in [(0u8, 1u64), (0, 2), (9, 1)] {
            fs.write_ltx_file(level, TxId(min), TxId(min), &src.file(b"ltx"), t)
                .await
                .unwrap();
        }
        let ltx0 = "0000000000000003-0000000000000003.ltx";
        let stale = [
            format!("ltx/0/.{ltx0}.4242-7.tmp"),
            format!("ltx/0/{}", upload_temp::temp_name(ltx0)),
            "ltx/3/.0000000000000001-0000000000000009.ltx.1-1.tmp".to_string(),
            "ltx/9/.0000000000000001-0000000000000001.ltx.99-0.tmp".to_string(),
        ];
        let kept = [
            format!("ltx/0/{ltx0}.tmp"),
            "ltx/0/README".to_string(),
            "ltx/0/.lease.1-1.tmp".to_string(),
            "ltx/x/.0000000000000001-0000000000000001.ltx.1-1.tmp".to_string(),
            ".walstream/.0000000000000001-0000000000000001.ltx.1-1.tmp".to_string(),
        ];
        for p in stale.iter().chain(&kept) {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"partial").unwrap();
        }
        let as_dir = dir
            .path()
            .join("ltx/1/.0000000000000001-0000000000000001.ltx.1-1.tmp");
        std::fs::create_dir_all(&as_dir).unwrap();
        let live = dir
            .path()
            .join(format!("ltx/0/{}", upload_temp::temp_name(ltx0)));
        std::fs::write(&live, b"uploading").unwrap();
        let in_flight = upload_temp::InFlight::new(in_flight_key(&live));

        assert_eq!(fs.remove_stale_uploads().await.unwrap(), stale.len());
        for p in &stale {
            assert!(!dir.path().join(p).exists(), "{p} left");
        }
        for p in &kept {
            assert!(dir.path().join(p).exists(), "{p} removed");
        }
        assert!(as_dir.is_dir() && live.exists());
        assert_eq!(fs.ltx_files(0).await.unwrap().len(), 2);
        assert_eq!(fs.ltx_files(9).await.unwrap().len(), 1);
        // Nothing left to do; once the upload is over, its file is fair game.
        assert_eq!(fs.remove_stale_uploads().await.unwrap(), 0);
        drop(in_flight);
        assert_eq!(fs.remove_stale_uploads().await.unwrap(), 1);
        assert!(!live.exists());
        // A store that was never written to has nothing to remove.
        let empty = FileStore::new(dir.path().join("none"));
        assert_eq!(empty.remove_stale_uploads().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn file_store_missing_source_is_io_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FileStore::new(dir.path());
        let err = fs
            .write_ltx_file(
                0,
                TxId(1),
                TxId(1),
                &dir.path().join("nope"),
                SystemTime::now(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::Io { .. }), "{err}");
        assert!(err.to_string().contains("nope"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path().join("ltx/0")).unwrap().count(),
            0
        );
    }
}
