//! Restore: plan a chain of LTX files from a replica's listing, then stream them through the
//! compactor into `<out>.tmp`, fsync, rename, fsync the directory.
//!
//! - [`list`] reads every level of a replica;
//! - [`plan()`] picks the chain (pure; see [`plan`](mod@plan) for the rules);
//! - [`apply`] downloads the chain in parallel into a temporary directory next to the output,
//!   merges it page by page into `<out>.tmp`, verifies it, and moves it into place.
//! - [`run`] does all three.
//!
//! On any error nothing is left at the output path: the `.tmp` file and the downloads are removed.
//! Dropping the future of [`apply`] or [`run`] cancels the restore the same way.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use walstream::restore::{self, RestoreOptions, Target};
//! let store = walstream::storage::open_url("file:///var/backups/app")?;
//! let opts = RestoreOptions::new("/tmp/app.db", Target::Latest);
//! let summary = restore::run(&store, &opts).await?;
//! println!("restored TXID {}", summary.txid);
//! # Ok(()) }
//! ```
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ltx::TxId;

use crate::storage::retry::RetryPolicy;
use crate::storage::{DynStore, LtxFileInfo, ReplicaStore, StorageError};

mod apply;
pub mod follow;
pub mod plan;
pub mod v03;

pub use apply::apply;
pub(crate) use apply::{download, download_sealed};
pub use plan::plan;

/// Which state to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The newest state the replica holds.
    Latest,
    /// The state right after this TXID; it must be the MaxTXID of some file.
    TxId(TxId),
    /// The newest state whose files were all created strictly before this time.
    Timestamp(SystemTime),
}

/// `PRAGMA integrity_check` after restoring, as Litestream's `-integrity-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IntegrityCheck {
    /// No check (Litestream's default).
    #[default]
    None,
    /// `PRAGMA quick_check`.
    Quick,
    /// `PRAGMA integrity_check`.
    Full,
}

impl IntegrityCheck {
    /// The name used on the command line and in `-json` output.
    pub fn as_str(&self) -> &'static str {
        match self {
            IntegrityCheck::None => "none",
            IntegrityCheck::Quick => "quick",
            IntegrityCheck::Full => "full",
        }
    }
}

impl std::str::FromStr for IntegrityCheck {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" | "" => Ok(IntegrityCheck::None),
            "quick" => Ok(IntegrityCheck::Quick),
            "full" => Ok(IntegrityCheck::Full),
            other => Err(format!(
                "invalid integrity check mode {other:?}: expected none, quick or full"
            )),
        }
    }
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// Where the database goes.
    pub output: PathBuf,
    /// Which state.
    pub target: Target,
    /// Replace an existing output (and remove its `-wal` and `-shm`).
    pub overwrite: bool,
    /// Files downloaded at once (at least 1).
    pub parallelism: usize,
    /// Check run on the restored file before it is moved into place.
    pub integrity_check: IntegrityCheck,
}

impl RestoreOptions {
    /// Options with Litestream's defaults: no overwrite, 8 parallel downloads, no integrity check.
    pub fn new(output: impl Into<PathBuf>, target: Target) -> Self {
        RestoreOptions {
            output: output.into(),
            target,
            overwrite: false,
            parallelism: 8,
            integrity_check: IntegrityCheck::None,
        }
    }
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The TXID the database is at.
    pub txid: TxId,
    /// Page size of the database.
    pub page_size: u32,
    /// Size of the database in pages.
    pub commit: u32,
    /// Number of LTX files applied.
    pub files: usize,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// One LTX file of a replica, as named in errors: `level 0 file <min>-<max>.ltx in <replica>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// The replica, as [`ReplicaStore::describe`] gives it.
    pub replica: String,
    /// Compaction level.
    pub level: u8,
    /// First TXID.
    pub min_txid: TxId,
    /// Last TXID.
    pub max_txid: TxId,
}

impl FileRef {
    /// The reference to `info` on `replica`.
    pub fn new(replica: &str, info: &LtxFileInfo) -> Self {
        FileRef {
            replica: replica.to_string(),
            level: info.level,
            min_txid: info.min_txid,
            max_txid: info.max_txid,
        }
    }
}

impl fmt::Display for FileRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "level {} file {} in {}",
            self.level,
            ltx::file_name(self.min_txid, self.max_txid),
            self.replica
        )
    }
}

/// Everything that can go wrong restoring. Each variant names the file, TXID or path involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The replica holds no usable chain (no files, or none starting at TXID 1).
    #[error("no matching backup files available in {replica}")]
    NoBackups {
        /// The replica.
        replica: String,
    },
    /// The `-txid` target is not the end of any restorable chain.
    #[error(
        "tx not available: {target} is not the end of an LTX file in a chain from TXID 1 (replica covers {})",
        fmt_ranges(.available)
    )]
    TxNotAvailable {
        /// The requested TXID.
        target: TxId,
        /// TXID ranges the replica's files cover.
        available: Vec<(TxId, TxId)>,
    },
    /// The `-timestamp` target lies outside the times of the replica's files (as in Litestream,
    /// a time after the newest file is refused rather than read as "latest").
    #[error(
        "timestamp not available: {} is outside the backups, which span {}",
        humantime::format_rfc3339_millis(*.timestamp),
        fmt_span(.span)
    )]
    TimestampNotAvailable {
        /// The requested time.
        timestamp: SystemTime,
        /// Oldest and newest file creation times, if there are files.
        span: Option<(SystemTime, SystemTime)>,
    },
    /// The newest state cannot be reached: files are missing in between.
    #[error("non-contiguous ltx files: have up to {have} but next file starts at {next}")]
    NonContiguous {
        /// Last TXID reachable from TXID 1.
        have: TxId,
        /// First TXID of the next file.
        next: TxId,
    },
    /// Listing a level failed.
    #[error("list level {level} of {replica}")]
    List {
        /// The replica.
        replica: String,
        /// The level.
        level: u8,
        /// The cause.
        #[source]
        source: StorageError,
    },
    /// Downloading a file failed.
    #[error("download {file}")]
    Download {
        /// The file.
        file: FileRef,
        /// The cause.
        #[source]
        source: StorageError,
    },
    /// A download's length differs from the listing.
    #[error("{file}: downloaded {got} bytes but the listing says {want}")]
    SizeMismatch {
        /// The file.
        file: FileRef,
        /// Bytes received.
        got: u64,
        /// Bytes listed.
        want: u64,
    },
    /// A file is not valid LTX (bad header, corrupt frame, checksum mismatch, truncated).
    #[error("{file}")]
    Ltx {
        /// The file.
        file: FileRef,
        /// The cause.
        #[source]
        source: ltx::Error,
    },
    /// A file's header disagrees with its name or with the chain.
    #[error("{file}: {message}")]
    BadFile {
        /// The file.
        file: FileRef,
        /// What is wrong.
        message: String,
    },
    /// Merging the chain failed, and no single file was found at fault.
    #[error("apply files {chain} up to TXID {txid}")]
    Compaction {
        /// The chain, e.g. `L9 0000000000000001-0000000000000005, L0 ...`.
        chain: String,
        /// Target TXID.
        txid: TxId,
        /// The cause.
        #[source]
        source: ltx::Error,
    },
    /// The chain does not hold every page of the database.
    #[error("page {pgno} missing from the chain at TXID {txid} ({chain})")]
    MissingPage {
        /// The first missing page.
        pgno: u32,
        /// Target TXID.
        txid: TxId,
        /// The chain.
        chain: String,
    },
    /// The restored pages do not give the post-apply checksum the last file records.
    #[error("database checksum mismatch at TXID {txid}: restored pages give {actual:016x}, {file} expects {expected:016x}")]
    DbChecksumMismatch {
        /// Target TXID.
        txid: TxId,
        /// The last file of the chain.
        file: FileRef,
        /// Checksum in the trailer.
        expected: u64,
        /// Checksum of the written pages.
        actual: u64,
    },
    /// The output exists and overwriting was not asked for.
    #[error("cannot restore, output path already exists and is not empty: {}; use -force to overwrite", .path.display())]
    OutputExists {
        /// The existing file (the database or one of its `-wal`/`-shm` files).
        path: PathBuf,
    },
    /// `PRAGMA integrity_check` or `quick_check` did not say ok.
    #[error("integrity check ({mode}) of restored database at TXID {txid} failed: {message}")]
    IntegrityCheck {
        /// `quick` or `full`.
        mode: &'static str,
        /// Target TXID.
        txid: TxId,
        /// The first lines SQLite reported.
        message: String,
    },
    /// SQLite failed while checking the restored file.
    #[error("sqlite: {}", .path.display())]
    Sqlite {
        /// The file being checked.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Local file I/O.
    #[error("{}", .path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The restore was cancelled (its future dropped) before it finished.
    #[error("restore cancelled")]
    Cancelled,
}

impl RestoreError {
    /// Whether the replica has nothing to restore at all (Litestream's `-if-replica-exists`
    /// treats this as success).
    pub fn is_no_backups(&self) -> bool {
        matches!(self, RestoreError::NoBackups { .. })
    }
    /// The one file of the chain at fault, when the error is about a single file: missing from
    /// the store, shorter or longer than listed, not valid LTX, or disagreeing with its name.
    pub fn bad_file(&self) -> Option<&FileRef> {
        match self {
            RestoreError::Download { file, source } if source.is_not_found() => Some(file),
            RestoreError::SizeMismatch { file, .. }
            | RestoreError::Ltx { file, .. }
            | RestoreError::BadFile { file, .. } => Some(file),
            _ => None,
        }
    }
    /// Whether retrying later may succeed (a storage hiccup).
    pub fn is_retryable(&self) -> bool {
        match self {
            RestoreError::List { source, .. } | RestoreError::Download { source, .. } => {
                source.is_retryable()
            }
            _ => false,
        }
    }
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RestoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

fn fmt_span(span: &Option<(SystemTime, SystemTime)>) -> String {
    match span {
        Some((a, b)) => format!(
            "{} to {}",
            humantime::format_rfc3339_millis(*a),
            humantime::format_rfc3339_millis(*b)
        ),
        None => "nothing".to_string(),
    }
}

fn fmt_ranges(ranges: &[(TxId, TxId)]) -> String {
    if ranges.is_empty() {
        return "nothing".to_string();
    }
    ranges
        .iter()
        .map(|(a, b)| format!("{a}-{b}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Describes a chain for errors and logs: `L9 0000000000000001-0000000000000005, L0 ...`.
pub fn describe_chain(chain: &[LtxFileInfo]) -> String {
    chain
        .iter()
        .map(|f| format!("L{} {}-{}", f.level, f.min_txid, f.max_txid))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lists every level (0 to 9) of a replica. Transient failures are retried a bounded number of
/// times.
pub async fn list(store: &dyn ReplicaStore) -> Result<Vec<LtxFileInfo>, RestoreError> {
    crate::storage::list_levels(
        store,
        crate::storage::ALL_LEVELS,
        Some(&RetryPolicy::restore()),
    )
    .await
    .map_err(|e| RestoreError::List {
        replica: store.describe(),
        level: e.level,
        source: e.source,
    })
}

/// Lists, plans and applies: restores `opts.target` from `store` into `opts.output`.
pub async fn run(store: &DynStore, opts: &RestoreOptions) -> Result<RestoreSummary, RestoreError> {
    check_output(&opts.output, opts.overwrite)?;
    let files = list(store.as_ref()).await?;
    let chain = plan(&files, &opts.target, &store.describe())?;
    apply_with_fallback(store, &files, chain, opts).await
}

/// How many bad files one restore steps around before it gives up.
const MAX_FALLBACKS: usize = 16;

/// Applies `chain` (planned from `files`); when one file of it turns out missing or corrupt,
/// plans again without that file and applies the other chain, as long as it ends at the same
/// TXID (another level may cover the bad file: an L1 file over a corrupt L0 file). Without such
/// a chain, the error names the bad file. Nothing is written at the output path on failure.
pub async fn apply_with_fallback(
    store: &DynStore,
    files: &[LtxFileInfo],
    mut chain: Vec<LtxFileInfo>,
    opts: &RestoreOptions,
) -> Result<RestoreSummary, RestoreError> {
    let end = chain.last().map(|f| f.max_txid);
    let mut files = files.to_vec();
    let mut first_err: Option<RestoreError> = None;
    let mut attempt = 0;
    loop {
        let err = match apply(store, &chain, opts).await {
            Ok(summary) => return Ok(summary),
            Err(e) => e,
        };
        let Some(bad) = err.bad_file().cloned() else {
            return Err(first_err.unwrap_or(err));
        };
        let first = first_err.take().unwrap_or(err);
        if attempt >= MAX_FALLBACKS {
            return Err(first);
        }
        files.retain(|f| {
            !(f.level == bad.level && f.min_txid == bad.min_txid && f.max_txid == bad.max_txid)
        });
        match plan(&files, &opts.target, &store.describe()) {
            Ok(next) if next.last().map(|f| f.max_txid) == end => {
                tracing::warn!(file = %bad, chain = %describe_chain(&next), "bad file in the restore chain; restoring through another chain");
                chain = next;
            }
            _ => return Err(first),
        }
        first_err = Some(first);
        attempt += 1;
    }
}

/// Fails with [`RestoreError::OutputExists`] if `output` is a non-empty file (an empty one is
/// replaced, as Litestream does) or has a `-wal`/`-shm` file, unless `overwrite`.
pub fn check_output(output: &Path, overwrite: bool) -> Result<(), RestoreError> {
    if overwrite {
        return Ok(());
    }
    match std::fs::metadata(output) {
        Ok(m) if m.is_dir() || m.len() > 0 => {
            return Err(RestoreError::OutputExists {
                path: output.to_path_buf(),
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(RestoreError::io(output, e)),
    }
    // A stale -wal next to a fresh database would be replayed into it by the next reader.
    for sidecar in sidecars(output) {
        match std::fs::symlink_metadata(&sidecar) {
            Ok(_) => return Err(RestoreError::OutputExists { path: sidecar }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RestoreError::io(&sidecar, e)),
        }
    }
    Ok(())
}

/// `<db>-wal` and `<db>-shm`.
pub(crate) fn sidecars(db: &Path) -> [PathBuf; 2] {
    let with = |suffix: &str| {
        let mut s = db.as_os_str().to_os_string();
        s.push(suffix);
        PathBuf::from(s)
    };
    [with("-wal"), with("-shm")]
}

/// `<out>.tmp`.
pub fn tmp_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_os_string();
    s.push(".tmp");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn check_output_missing_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        check_output(&dir.path().join("db"), false).unwrap();
    }

    #[test]
    fn check_output_empty_file_is_ok() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, b"").unwrap();
        check_output(&p, false).unwrap();
    }

    #[test]
    fn check_output_nonempty_without_force_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(&p, b"x").unwrap();
        let err = check_output(&p, false).unwrap_err();
        assert!(matches!(err, RestoreError::OutputExists { .. }));
        assert!(err.to_string().contains("-force"), "{err}");
        check_output(&p, true).unwrap();
    }

    #[test]
    fn check_output_stale_wal_without_force_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db");
        std::fs::write(dir.path().join("db-wal"), b"x").unwrap();
        let err = check_output(&p, false).unwrap_err();
        assert!(err.to_string().contains("db-wal"), "{err}");
    }

    #[test]
    fn integrity_check_parses_litestream_modes() {
        assert_eq!(
            "none".parse::<IntegrityCheck>().unwrap(),
            IntegrityCheck::None
        );
        assert_eq!(
            "quick".parse::<IntegrityCheck>().unwrap(),
            IntegrityCheck::Quick
        );
        assert_eq!(
            "full".parse::<IntegrityCheck>().unwrap(),
            IntegrityCheck::Full
        );
        assert!("fast".parse::<IntegrityCheck>().is_err());
    }

    #[test]
    fn file_ref_names_level_and_file() {
        let r = FileRef {
            replica: "file:///r".into(),
            level: 1,
            min_txid: TxId(3),
            max_txid: TxId(8),
        };
        assert_eq!(
            r.to_string(),
            "level 1 file 0000000000000003-0000000000000008.ltx in file:///r"
        );
    }
}
