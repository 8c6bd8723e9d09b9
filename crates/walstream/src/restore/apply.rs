//! Applying a planned chain: parallel downloads into a temporary directory next to the output,
//! then one pass of the compactor writing `<out>.tmp` page by page.
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ltx::checksum::{page_checksum, DbChecksum};
use ltx::{Compactor, Decoder, TxId};
use tokio::io::AsyncWriteExt;
use tracing::{debug, info_span, warn, Instrument};

use super::{
    describe_chain, sidecars, tmp_path, FileRef, IntegrityCheck, RestoreError, RestoreOptions,
    RestoreSummary,
};
use crate::storage::retry::RetryPolicy;
use crate::storage::{DynStore, LtxFileInfo, StorageError};

/// Longest wait for a download's next bytes; then it counts as broken and resumes.
const DOWNLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Read buffer per open LTX file.
const READ_BUF: usize = 64 * 1024;
/// Write buffer for the database.
const WRITE_BUF: usize = 1024 * 1024;

/// A download progress bar over `total` bytes, only when stderr is a terminal (silent in scripts,
/// pipes and logs).
fn progress_bar(total: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "restoring {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

/// Restores `chain` (from [`plan`](super::plan())) into `opts.output`.
///
/// Downloads up to `opts.parallelism` files at once into a temporary directory next to the output,
/// merges them into `<out>.tmp`, checks every file checksum, every page 1..commit, and (when the
/// files carry checksums) the database checksum, runs the integrity check if asked, then fsyncs,
/// renames over the output and fsyncs the directory. Nothing is left behind on error or when the
/// future is dropped.
pub async fn apply(
    store: &DynStore,
    chain: &[LtxFileInfo],
    opts: &RestoreOptions,
) -> Result<RestoreSummary, RestoreError> {
    let replica = store.describe();
    let Some(last) = chain.last() else {
        return Err(RestoreError::NoBackups { replica });
    };
    let txid = last.max_txid;
    let span =
        info_span!("restore", replica = %replica, txid = %txid, output = %opts.output.display());
    async {
        super::check_output(&opts.output, opts.overwrite)?;
        let dir = parent_dir(&opts.output);
        create_dir_all_private(&dir).map_err(|e| RestoreError::io(&dir, e))?;
        let downloads = tempfile::Builder::new()
            .permissions(std::fs::Permissions::from_mode(0o700))
            .prefix(".walstream-restore-")
            .tempdir_in(&dir)
            .map_err(|e| RestoreError::io(&dir, e))?;

        let cancel = Arc::new(AtomicBool::new(false));
        let _cancel_on_drop = CancelOnDrop(cancel.clone());

        let bar = progress_bar(chain.iter().map(|f| f.size).sum());
        let paths: Vec<PathBuf> = futures::stream::iter(chain.iter().enumerate())
            .map(|(i, info)| {
                let dest = downloads
                    .path()
                    .join(format!("{i:06}-{}", info.file_name()));
                let bar = bar.clone();
                let fut = download(store, &replica, info, dest);
                async move {
                    let r = fut.await;
                    if let (Ok(_), Some(bar)) = (&r, &bar) {
                        bar.inc(info.size);
                    }
                    r
                }
            })
            .buffered(opts.parallelism.max(1))
            .try_collect()
            .await
            .inspect_err(|_| {
                if let Some(bar) = &bar {
                    bar.abandon();
                }
            })?;
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let bytes = chain.iter().map(|f| f.size).sum();
        debug!(files = chain.len(), bytes, "downloaded");

        let job = ApplyJob {
            chain: chain.to_vec(),
            paths,
            output: opts.output.clone(),
            overwrite: opts.overwrite,
            integrity_check: opts.integrity_check,
            replica: replica.clone(),
            cancel,
        };
        let (page_size, commit) = tokio::task::spawn_blocking(move || job.run())
            .await
            .map_err(|e| RestoreError::io(&opts.output, std::io::Error::other(e)))??;
        drop(downloads);
        debug!(files = chain.len(), page_size, commit, "restored");
        Ok(RestoreSummary {
            txid,
            page_size,
            commit,
            files: chain.len(),
            bytes,
        })
    }
    .instrument(span)
    .await
}

/// The directory a path lives in (`.` for a bare file name).
pub(super) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates missing parent directories with mode 0700, as Litestream does.
pub(super) fn create_dir_all_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Sets the flag when the restore future is dropped, so that the blocking writer stops.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Downloads one file to `dest`. A transient failure (an error from the store, a broken or
/// stalled stream) is retried as [`RetryPolicy::restore`] says, resuming at the byte offset
/// already received rather than starting over; an attempt that received bytes starts the retry
/// count over, so a long download on a flaky network still finishes.
pub(crate) async fn download(
    store: &DynStore,
    replica: &str,
    info: &LtxFileInfo,
    dest: PathBuf,
) -> Result<PathBuf, RestoreError> {
    download_to(store, replica, info, dest, None).await
}

/// Where a download's bytes go: the file, or the file through an age writer (to keep them
/// encrypted at rest, see [`download_sealed`]).
enum Sink {
    Plain(tokio::fs::File),
    Sealed(age::stream::StreamWriter<std::io::BufWriter<File>>),
}

impl Sink {
    async fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.write_all(b).await,
            Sink::Sealed(w) => w.write_all(b),
        }
    }
    async fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Plain(mut f) => f.flush().await,
            Sink::Sealed(w) => w.finish()?.flush(),
        }
    }
}

/// [`download`], with the file written encrypted to `to` (the plaintext never reaches the disk):
/// for the compaction of an encrypted replica, which reads it back with the matching identity.
pub(crate) async fn download_sealed(
    store: &DynStore,
    replica: &str,
    info: &LtxFileInfo,
    dest: PathBuf,
    to: &[age::x25519::Recipient],
) -> Result<PathBuf, RestoreError> {
    download_to(store, replica, info, dest, Some(to)).await
}

async fn download_to(
    store: &DynStore,
    replica: &str,
    info: &LtxFileInfo,
    dest: PathBuf,
    seal: Option<&[age::x25519::Recipient]>,
) -> Result<PathBuf, RestoreError> {
    let file_ref = || FileRef::new(replica, info);
    let span = info_span!("download", level = info.level, min_txid = %info.min_txid, max_txid = %info.max_txid);
    // An encrypted store's listed sizes are the stored ones: the plaintext's length is unknown
    // until read, and age itself tells a whole object (its last chunk is marked) from a cut one.
    let encrypted = store.encryption().is_some();
    async {
        // Owner-only, like the directory it is in.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&dest)
            .await
            .map_err(|e| RestoreError::io(&dest, e))?;
        let mut out = match seal {
            None => Sink::Plain(file),
            Some(to) => {
                let w = std::io::BufWriter::with_capacity(READ_BUF, file.into_std().await);
                Sink::Sealed(
                    crate::storage::encrypted::seal_to(to, w)
                        .map_err(|e| RestoreError::io(&dest, e))?,
                )
            }
        };
        let key = format!("{}/{}", info.level, info.file_name());
        let stalled = || StorageError::Transient {
            backend: store.kind(),
            key: key.clone(),
            message: format!("no data for {DOWNLOAD_STALL_TIMEOUT:?}"),
        };
        let mut backoff = RetryPolicy::restore().backoff();
        let mut offset = 0u64;
        loop {
            let started_at = offset;
            let result = async {
                let open = store.open_ltx_file(info.level, info.min_txid, info.max_txid, offset);
                let mut stream = tokio::time::timeout(DOWNLOAD_STALL_TIMEOUT, open)
                    .await
                    .map_err(|_| stalled())??;
                while let Some(chunk) = tokio::time::timeout(DOWNLOAD_STALL_TIMEOUT, stream.next())
                    .await
                    .map_err(|_| stalled())?
                {
                    let chunk = chunk?;
                    if offset == 0 && !encrypted && crate::age_keys::is_age(&chunk) {
                        return Err(StorageError::Permanent {
                            backend: store.kind(),
                            key: format!("{replica}/{key}"),
                            message: "the object is age-encrypted and no age identity is \
                                      configured (age: identities: [...] on the replica)"
                                .to_string(),
                        });
                    }
                    out.write(&chunk)
                        .await
                        .map_err(|source| StorageError::Io {
                            backend: "local",
                            path: dest.clone(),
                            source,
                        })?;
                    offset += chunk.len() as u64;
                }
                Ok::<(), StorageError>(())
            }
            .await;
            let err = match result {
                Ok(()) => break,
                Err(e) => e,
            };
            if !err.is_retryable() {
                return Err(RestoreError::Download {
                    file: file_ref(),
                    source: err,
                });
            }
            if offset == info.size && info.size > 0 && !encrypted {
                // Every byte arrived before the stream broke; a request for the empty tail
                // would be refused (416) by S3.
                break;
            }
            if offset > started_at {
                backoff.reset();
            }
            let Some(delay) = backoff.next_delay() else {
                return Err(RestoreError::Download {
                    file: file_ref(),
                    source: err,
                });
            };
            warn!(attempt = backoff.attempts(), offset, retry_in = ?delay, error = %err, "download failed; resuming");
            tokio::time::sleep(delay).await;
        }
        out.finish().await.map_err(|e| RestoreError::io(&dest, e))?;
        if offset != info.size && !encrypted {
            return Err(RestoreError::SizeMismatch {
                file: file_ref(),
                got: offset,
                want: info.size,
            });
        }
        Ok(dest)
    }
    .instrument(span)
    .await
}

/// The blocking half: everything after the downloads.
struct ApplyJob {
    chain: Vec<LtxFileInfo>,
    paths: Vec<PathBuf>,
    output: PathBuf,
    overwrite: bool,
    integrity_check: IntegrityCheck,
    replica: String,
    cancel: Arc<AtomicBool>,
}

/// Removes `<out>.tmp` unless disarmed.
struct TmpGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl ApplyJob {
    fn file_ref(&self, i: usize) -> FileRef {
        match self.chain.get(i) {
            Some(info) => FileRef::new(&self.replica, info),
            None => FileRef {
                replica: self.replica.clone(),
                level: 0,
                min_txid: TxId(0),
                max_txid: TxId(0),
            },
        }
    }

    fn txid(&self) -> TxId {
        self.chain.last().map(|f| f.max_txid).unwrap_or_default()
    }

    fn check_cancel(&self) -> Result<(), RestoreError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(RestoreError::Cancelled);
        }
        Ok(())
    }

    fn open(&self, i: usize) -> Result<Decoder<BufReader<File>>, RestoreError> {
        let path = &self.paths[i];
        let f = File::open(path).map_err(|e| RestoreError::io(path, e))?;
        let dec = Decoder::new(BufReader::with_capacity(READ_BUF, f)).map_err(|source| {
            RestoreError::Ltx {
                file: self.file_ref(i),
                source,
            }
        })?;
        let h = dec.header();
        if let Some(info) = self.chain.get(i) {
            if h.min_txid != info.min_txid || h.max_txid != info.max_txid {
                return Err(RestoreError::BadFile {
                    file: self.file_ref(i),
                    message: format!(
                        "header covers TXIDs {}-{}, not what its name says",
                        h.min_txid, h.max_txid
                    ),
                });
            }
        }
        Ok(dec)
    }

    /// After the merge failed with `err`: decodes each file on its own to find one at fault, and
    /// reports that file instead; otherwise `err`.
    fn diagnose(&self, err: RestoreError) -> RestoreError {
        let mut buf = Vec::new();
        for i in 0..self.paths.len() {
            let result = self.open(i).and_then(|mut dec| {
                buf.resize(dec.header().page_size as usize, 0);
                let decode = || -> Result<(), ltx::Error> {
                    while dec.next_page(&mut buf)?.is_some() {}
                    dec.finish().map(|_| ())
                };
                decode().map_err(|source| RestoreError::Ltx {
                    file: self.file_ref(i),
                    source,
                })
            });
            if let Err(e) = result {
                return e;
            }
        }
        err
    }

    fn compaction_error(&self, source: ltx::Error) -> RestoreError {
        self.diagnose(RestoreError::Compaction {
            chain: describe_chain(&self.chain),
            txid: self.txid(),
            source,
        })
    }

    fn run(self) -> Result<(u32, u32), RestoreError> {
        match self.write() {
            Err(RestoreError::MissingPage { pgno, txid, chain }) => {
                let e = self.diagnose(RestoreError::MissingPage { pgno, txid, chain });
                match e {
                    RestoreError::MissingPage { pgno, .. } => {
                        Err(self.missing_page_culprit(pgno, e))
                    }
                    other => Err(other),
                }
            }
            Err(e @ RestoreError::DbChecksumMismatch { .. }) => Err(self.diagnose(e)),
            other => other,
        }
    }

    /// When every file decodes on its own but page `pgno` is in none of them: the file that grew
    /// the database past `pgno` (its commit reached `pgno` while the state before it was
    /// smaller) should have held it. Names that file, or returns `err` if none is found.
    fn missing_page_culprit(&self, pgno: u32, err: RestoreError) -> RestoreError {
        let mut before = 0u32;
        let mut culprit = None;
        for i in 0..self.paths.len() {
            let Ok(dec) = self.open(i) else { return err };
            let commit = dec.header().commit;
            if commit >= pgno && before < pgno {
                culprit = Some((i, commit, before));
            }
            before = commit;
        }
        match culprit {
            Some((i, commit, before)) => RestoreError::BadFile {
                file: self.file_ref(i),
                message: format!(
                    "grows the database from {before} to {commit} pages but page {pgno} is \
                     missing from it (chain {})",
                    describe_chain(&self.chain)
                ),
            },
            None => err,
        }
    }

    fn write(&self) -> Result<(u32, u32), RestoreError> {
        let txid = self.txid();
        let mut decoders = Vec::with_capacity(self.paths.len());
        for i in 0..self.paths.len() {
            decoders.push(self.open(i)?);
        }
        let page_size = decoders.first().map(|d| d.header().page_size).unwrap_or(0);
        for (i, dec) in decoders.iter().enumerate() {
            if dec.header().page_size != page_size {
                return Err(RestoreError::BadFile {
                    file: self.file_ref(i),
                    message: format!(
                        "page size {} differs from the chain's {page_size}",
                        dec.header().page_size
                    ),
                });
            }
        }
        let mut compactor = Compactor::new(decoders).map_err(|e| self.compaction_error(e))?;
        let header = compactor.header().clone();
        if !header.is_snapshot() {
            return Err(RestoreError::BadFile {
                file: self.file_ref(0),
                message: "the chain does not start with a full database (MinTXID 1)".to_string(),
            });
        }
        let commit = header.commit;
        let lock = ltx::lock_pgno(page_size);
        let verify_checksum = !header.no_checksum();

        let tmp = tmp_path(&self.output);
        let mut guard = TmpGuard {
            path: tmp.clone(),
            armed: true,
        };
        let file = create_private(&tmp).map_err(|e| RestoreError::io(&tmp, e))?;
        let mut w = BufWriter::with_capacity(WRITE_BUF, file);
        let mut buf = vec![0u8; page_size as usize];
        let zeros = vec![0u8; page_size as usize];
        let mut checksum = DbChecksum::new();
        let mut expected = 1u32;
        let missing = |pgno: u32| RestoreError::MissingPage {
            pgno,
            txid,
            chain: describe_chain(&self.chain),
        };

        while let Some(pgno) = compactor
            .next_page(&mut buf)
            .map_err(|e| self.compaction_error(e))?
        {
            self.check_cancel()?;
            if pgno == lock {
                continue;
            }
            if expected == lock {
                // SQLite never stores the lock page; it is zeros in the file.
                w.write_all(&zeros).map_err(|e| RestoreError::io(&tmp, e))?;
                expected += 1;
            }
            if pgno != expected {
                return Err(missing(expected));
            }
            w.write_all(&buf).map_err(|e| RestoreError::io(&tmp, e))?;
            if verify_checksum {
                checksum.add(page_checksum(pgno, &buf));
            }
            expected += 1;
        }
        if expected == lock && expected <= commit {
            w.write_all(&zeros).map_err(|e| RestoreError::io(&tmp, e))?;
            expected += 1;
        }
        if expected <= commit {
            return Err(missing(expected));
        }
        let trailer = compactor.finish().map_err(|e| self.compaction_error(e))?;
        if verify_checksum && checksum.value() != trailer.post_apply_checksum {
            return Err(RestoreError::DbChecksumMismatch {
                txid,
                file: self.file_ref(self.chain.len().saturating_sub(1)),
                expected: trailer.post_apply_checksum,
                actual: checksum.value(),
            });
        }

        let file = w
            .into_inner()
            .map_err(|e| RestoreError::io(&tmp, e.into_error()))?;
        file.set_len(u64::from(commit) * u64::from(page_size))
            .map_err(|e| RestoreError::io(&tmp, e))?;
        file.sync_all().map_err(|e| RestoreError::io(&tmp, e))?;
        drop(file);

        if self.integrity_check != IntegrityCheck::None {
            integrity_check(&tmp, self.integrity_check, txid)?;
        }
        self.check_cancel()?;

        if self.overwrite {
            for sidecar in sidecars(&self.output) {
                match std::fs::remove_file(&sidecar) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(RestoreError::io(&sidecar, e)),
                }
            }
            std::fs::rename(&tmp, &self.output).map_err(|e| RestoreError::io(&self.output, e))?;
        } else {
            move_no_clobber(&tmp, &self.output)?;
        }
        guard.armed = false;
        // The database in place gets the mode a plain create would give it (0666 less the
        // umask), as Litestream's restore does; until then it is owner-only.
        std::fs::set_permissions(
            &self.output,
            std::fs::Permissions::from_mode(0o666 & !umask()),
        )
        .map_err(|e| RestoreError::io(&self.output, e))?;
        let dir = parent_dir(&self.output);
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| RestoreError::io(&dir, e))?;
        Ok((page_size, commit))
    }
}

/// Creates `path` afresh with mode 0600 (a stale file of that name, left by a crash, is replaced:
/// an existing file would keep its old mode).
pub(super) fn create_private(path: &Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// The process umask, read from `/proc/self/status` (reading it with umask(2) would change it
/// for a moment under other threads); 022 where that is unavailable.
pub(super) fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Moves `tmp` to `output` without replacing a database that appeared meanwhile: a hard link fails
/// if the target exists. An empty file at `output` may be replaced, as Litestream does.
pub(super) fn move_no_clobber(tmp: &Path, output: &Path) -> Result<(), RestoreError> {
    if std::fs::metadata(output)
        .map(|m| m.is_file() && m.len() == 0)
        .unwrap_or(false)
    {
        return std::fs::rename(tmp, output).map_err(|e| RestoreError::io(output, e));
    }
    match std::fs::hard_link(tmp, output) {
        Ok(()) => std::fs::remove_file(tmp).map_err(|e| RestoreError::io(tmp, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(RestoreError::OutputExists {
                path: output.to_path_buf(),
            })
        }
        // File systems without hard links.
        Err(_) => std::fs::rename(tmp, output).map_err(|e| RestoreError::io(output, e)),
    }
}

/// Runs `PRAGMA quick_check` or `integrity_check` on the file without creating `-wal`/`-shm`.
pub(super) fn integrity_check(
    path: &Path,
    mode: IntegrityCheck,
    txid: TxId,
) -> Result<(), RestoreError> {
    use rusqlite::OpenFlags;
    let sqlite_err = |source| RestoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let uri = format!("file:{}?immutable=1", uri_escape(&path.to_string_lossy()));
    let conn = rusqlite::Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err)?;
    let pragma = match mode {
        IntegrityCheck::Quick => "PRAGMA quick_check",
        _ => "PRAGMA integrity_check",
    };
    let mut stmt = conn.prepare(pragma).map_err(sqlite_err)?;
    let lines: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .map_err(sqlite_err)?
        .take(5)
        .collect::<Result<_, _>>()
        .map_err(sqlite_err)?;
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(());
    }
    Err(RestoreError::IntegrityCheck {
        mode: mode.as_str(),
        txid,
        message: lines.join("; "),
    })
}

/// Escapes the characters SQLite's URI parser treats specially.
fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uri_escape_escapes_query_characters() {
        assert_eq!(uri_escape("/a b/c?d#e%f"), "/a b/c%3fd%23e%25f");
    }

    #[test]
    fn create_dir_all_private_makes_missing_parents() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b");
        create_dir_all_private(&deep).unwrap();
        create_dir_all_private(&deep).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&deep).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
    }

    #[test]
    fn create_private_is_owner_only_even_over_a_stale_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db.tmp");
        std::fs::write(&p, b"stale").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let f = create_private(&p).unwrap();
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(f.metadata().unwrap().len(), 0);
        assert!(umask() & !0o777 == 0);
    }

    #[test]
    fn parent_dir_of_bare_name_is_cwd() {
        assert_eq!(parent_dir(Path::new("db")), PathBuf::from("."));
        assert_eq!(parent_dir(Path::new("/x/db")), PathBuf::from("/x"));
    }

    #[test]
    fn move_no_clobber_refuses_existing_database() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("db.tmp");
        let out = dir.path().join("db");
        std::fs::write(&tmp, b"new").unwrap();
        std::fs::write(&out, b"old").unwrap();
        assert!(matches!(
            move_no_clobber(&tmp, &out),
            Err(RestoreError::OutputExists { .. })
        ));
        assert_eq!(std::fs::read(&out).unwrap(), b"old");
        std::fs::write(&out, b"").unwrap();
        move_no_clobber(&tmp, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn integrity_check_of_fresh_database_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x?.db");
        let conn = rusqlite::Connection::open(&p).unwrap();
        conn.execute_batch("PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(conn);
        integrity_check(&p, IntegrityCheck::Full, TxId(1)).unwrap();
        integrity_check(&p, IntegrityCheck::Quick, TxId(1)).unwrap();
        std::fs::write(&p, vec![7u8; 8192]).unwrap();
        assert!(integrity_check(&p, IntegrityCheck::Full, TxId(1)).is_err());
    }
}

/// `apply` against an in-memory store that can fail, cut or stall downloads.
#[cfg(test)]
mod store_tests;
