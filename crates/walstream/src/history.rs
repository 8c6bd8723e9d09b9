//! The history side of one replica: compaction into L1..L3 on clock-aligned intervals, L9
//! snapshots every `snapshot.interval` (requested from the database thread, which streams them
//! from the database), and retention. Runs as one task beside the uploader.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::compaction::{self, merge_files, next_aligned, plan_level, CompactionError};
use crate::meta::MetaDir;
use crate::restore::RestoreError;
use crate::retention::{plan_deletions, RetentionPolicy};
use crate::storage::{DynStore, LtxFileInfo, StorageError, SNAPSHOT_LEVEL};

/// Levels, snapshots and retention (Litestream's `levels`, `snapshot`, `l0-retention`,
/// `retention`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryOptions {
    /// Compaction interval of L1, L2, ... (at most 8 levels).
    pub levels: Vec<Duration>,
    /// `snapshot.interval`.
    pub snapshot_interval: Duration,
    /// Retention policy.
    pub retention: RetentionPolicy,
    /// How often retention runs (Litestream: 15 s for L0).
    pub retention_check_interval: Duration,
}

impl Default for HistoryOptions {
    fn default() -> Self {
        HistoryOptions {
            levels: compaction::DEFAULT_INTERVALS.to_vec(),
            snapshot_interval: Duration::from_secs(24 * 3600),
            retention: RetentionPolicy::default(),
            retention_check_interval: Duration::from_secs(15),
        }
    }
}

/// Errors of compaction and retention.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// The store failed.
    #[error("replica {replica}: {source}")]
    Storage {
        /// The replica.
        replica: String,
        /// The cause.
        source: StorageError,
    },
    /// Downloading an input failed.
    #[error(transparent)]
    Download(#[from] RestoreError),
    /// Merging failed.
    #[error(transparent)]
    Compaction(#[from] CompactionError),
    /// Local I/O.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

fn storage(store: &DynStore) -> impl FnOnce(StorageError) -> HistoryError + '_ {
    move |source| HistoryError::Storage {
        replica: store.describe(),
        source,
    }
}

/// Lists every level of a store.
pub async fn list_all(store: &DynStore) -> Result<Vec<LtxFileInfo>, HistoryError> {
    crate::storage::list_levels(store.as_ref(), crate::storage::ALL_LEVELS, None)
        .await
        .map_err(|e| storage(store)(e.source))
}

/// Compacts the not-yet-compacted contiguous files of level `level - 1` into one file at
/// `level`. L0 inputs are read from the meta directory when still there. Returns the new file.
pub async fn compact_level(
    store: &DynStore,
    meta: &MetaDir,
    level: u8,
    tmp: &Path,
) -> Result<Option<LtxFileInfo>, HistoryError> {
    let src = store.ltx_files(level - 1).await.map_err(storage(store))?;
    let dst = store.ltx_files(level).await.map_err(storage(store))?;
    let inputs = plan_level(&src, &dst);
    let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
        return Ok(None);
    };
    let (min, max) = (first.min_txid, last.max_txid);
    let work = tempfile::Builder::new()
        .prefix(crate::meta::COMPACT_WORKDIR_PREFIX)
        .tempdir_in(tmp)
        .map_err(|source| HistoryError::Io {
            path: tmp.to_path_buf(),
            source,
        })?;
    let local: Vec<_> = if level == 1 {
        meta.list(0).unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut paths = Vec::with_capacity(inputs.len());
    for (i, f) in inputs.iter().enumerate() {
        let mine = local
            .iter()
            .find(|l| l.min_txid == f.min_txid && l.max_txid == f.max_txid);
        let size_ok = mine
            .and_then(|l| std::fs::metadata(&l.path).ok())
            .is_some_and(|m| m.len() == f.size);
        match mine {
            Some(l) if size_ok => paths.push(l.path.clone()),
            _ => {
                let dest = work.path().join(format!("{i:06}-{}", f.file_name()));
                paths.push(crate::restore::download(store, &store.describe(), f, dest).await?);
            }
        }
    }
    let out = work.path().join(ltx::file_name(min, max));
    let out2 = out.clone();
    let header = tokio::task::spawn_blocking(move || merge_files(&paths, &out2, level))
        .await
        .map_err(|e| HistoryError::Io {
            path: out.clone(),
            source: std::io::Error::other(e),
        })??;
    crate::failpoint::hit("compaction.after_merge");
    let created = UNIX_EPOCH + Duration::from_millis(header.timestamp.max(0) as u64);
    let info = store
        .write_ltx_file(level, min, max, &out, created)
        .await
        .map_err(storage(store))?;
    crate::failpoint::hit("compaction.after_upload");
    info!(replica = %store.describe(), level, min_txid = %min, max_txid = %max, files = inputs.len(), size = info.size, "compaction complete");
    Ok(Some(info))
}

/// Deletes what retention says is redundant. Returns the number of files deleted.
pub async fn enforce_retention(
    store: &DynStore,
    policy: &RetentionPolicy,
    now: SystemTime,
) -> Result<usize, HistoryError> {
    let files = list_all(store).await?;
    let delete = plan_deletions(&files, policy, now);
    if delete.is_empty() {
        return Ok(0);
    }
    store
        .delete_ltx_files(&delete)
        .await
        .map_err(storage(store))?;
    debug!(replica = %store.describe(), files = delete.len(), "retention deleted files");
    Ok(delete.len())
}

/// Deletes local L0 files that L1 on the store covers, except the newest (the position).
pub fn prune_local_l0(meta: &MetaDir, l1_max: ltx::TxId) {
    let Ok(files) = meta.list(0) else { return };
    let newest = files.last().map(|f| f.max_txid);
    for f in &files {
        if f.max_txid <= l1_max && Some(f.max_txid) < newest {
            let _ = std::fs::remove_file(&f.path);
        }
    }
}

/// Runs compaction, snapshot requests and retention until `stop`. `snapshot_due` is set when a
/// snapshot should be taken; the database thread clears it when it has written one.
pub async fn run(
    store: DynStore,
    meta: MetaDir,
    opts: HistoryOptions,
    snapshot_due: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    let now = SystemTime::now();
    let mut due: Vec<SystemTime> = opts
        .levels
        .iter()
        .map(|iv| next_aligned(now, *iv))
        .collect();
    let mut snapshot_at = next_aligned(now, opts.snapshot_interval);
    let mut retention_at = now + opts.retention_check_interval;
    let tmp = meta.root().to_path_buf();
    // A replica without any snapshot gets one soon after start, as Litestream does.
    match store.ltx_files(SNAPSHOT_LEVEL).await {
        Ok(s) if s.is_empty() => snapshot_due.store(true, Ordering::SeqCst),
        _ => {}
    }
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = SystemTime::now();
        for (i, at) in due.iter_mut().enumerate() {
            if now < *at {
                continue;
            }
            let level = (i + 1) as u8;
            match compact_level(&store, &meta, level, &tmp).await {
                Ok(Some(info)) if level == 1 => prune_local_l0(&meta, info.max_txid),
                Ok(_) => {}
                Err(e) => warn!(level, "compaction failed: {e}"),
            }
            *at = next_aligned(now, opts.levels[i]);
        }
        if now >= snapshot_at {
            snapshot_due.store(true, Ordering::SeqCst);
            snapshot_at = next_aligned(now, opts.snapshot_interval);
        }
        if now >= retention_at {
            if let Err(e) = enforce_retention(&store, &opts.retention, now).await {
                warn!("retention failed: {e}");
            }
            retention_at = now + opts.retention_check_interval;
        }
    }
}
