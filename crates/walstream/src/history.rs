//! The history side of one replica: compaction into L1..L3 on clock-aligned intervals, L9
//! snapshots every `snapshot.interval` (requested from the database thread, which streams them
//! from the database), and retention. Runs as one task beside the uploader.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{debug, info, warn};

use crate::compaction::{self, merge_files, next_aligned, plan_level, CompactionError};
use crate::meta::MetaDir;
use crate::restore::RestoreError;
use crate::retention::{plan_deletions, RetentionPolicy};
use crate::storage::{DynStore, LtxFileInfo, StorageError, SNAPSHOT_LEVEL};

/// History passes (compaction, retention) running at once, across every database of the
/// process. Levels are clock-aligned, so a fleet's compactions all fall due in the same
/// instant: 3,000 databases started 450 blocking threads at each 30 s boundary, took the
/// workers from WAL syncs, and left glibc holding ~300 MiB it had used for them.
static HISTORY_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

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
    // An encrypted replica: downloads stay encrypted on disk (to a key that lives in memory for
    // this compaction only), the merge decrypts in memory, and its output is written encrypted
    // to the replica's recipients, so no plaintext reaches the work directory.
    let enc = store.encryption();
    let ephemeral = enc.as_ref().map(|_| age::x25519::Identity::generate());
    let mut paths = Vec::with_capacity(inputs.len());
    let mut sealed = Vec::with_capacity(inputs.len());
    for (i, f) in inputs.iter().enumerate() {
        let mine = local
            .iter()
            .find(|l| l.min_txid == f.min_txid && l.max_txid == f.max_txid);
        let local_len = mine.and_then(|l| std::fs::metadata(&l.path).ok().map(|m| m.len()));
        let size_ok = match (&enc, local_len) {
            (_, None) => false,
            (None, Some(n)) => n == f.size,
            (Some(e), Some(n)) => e.stored_len(f.level, f.min_txid, f.max_txid, n) == Some(f.size),
        };
        match mine {
            Some(l) if size_ok => {
                paths.push(l.path.clone());
                sealed.push(crate::compaction::SealedInput::Plain(l.path.clone()));
            }
            _ => {
                let dest = work.path().join(format!("{i:06}-{}", f.file_name()));
                match &ephemeral {
                    Some(id) => {
                        let to = [id.to_public()];
                        let p =
                            crate::restore::download_sealed(store, &store.describe(), f, dest, &to)
                                .await?;
                        sealed.push(crate::compaction::SealedInput::Sealed(p));
                    }
                    None => paths
                        .push(crate::restore::download(store, &store.describe(), f, dest).await?),
                }
            }
        }
    }
    let out = work.path().join(ltx::file_name(min, max));
    let out2 = out.clone();
    let header = tokio::task::spawn_blocking(move || match (enc, ephemeral) {
        (Some(enc), Some(id)) => {
            let ids: Vec<crate::age_keys::Identity> = vec![Box::new(id)];
            crate::compaction::merge_sealed(&sealed, &ids, &enc, &out2, level)
        }
        _ => merge_files(&paths, &out2, level),
    })
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
    let all: Vec<u8> = crate::storage::ALL_LEVELS.collect();
    Ok(enforce_retention_scheduled(store, policy, now, &all, None)
        .await?
        .0)
}

/// [`enforce_retention`], and when the next file would become deletable by age alone (`None`:
/// not until something new is written).
pub async fn enforce_retention_scheduled(
    store: &DynStore,
    policy: &RetentionPolicy,
    now: SystemTime,
    levels: &[u8],
    metrics_db: Option<&str>,
) -> Result<(usize, Option<SystemTime>), HistoryError> {
    // Only the levels this replicator writes (L0, its compaction levels, L9): a pass over
    // every level made 10 LISTs, most of them of levels never used. Files of other levels are
    // neither deleted nor needed by the check, so the plan stays conservative.
    let files = crate::storage::list_levels(store.as_ref(), levels.iter().copied(), None)
        .await
        .map_err(|e| storage(store)(e.source))?;
    if let Some(db) = metrics_db {
        let (e, n, r) = crate::retention::l0_status(&files, policy, now);
        crate::metrics::db::l0_retention(db, e, n, r);
    }
    let next = crate::retention::next_deletion_due(&files, policy, now);
    let delete = plan_deletions(&files, policy, now);
    if delete.is_empty() {
        return Ok((0, next));
    }
    store
        .delete_ltx_files(&delete)
        .await
        .map_err(storage(store))?;
    debug!(replica = %store.describe(), files = delete.len(), "retention deleted files");
    Ok((delete.len(), next))
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

/// What the history task is told by the rest of the database's tasks.
pub struct HistoryLinks {
    /// The newest TXID of L0 on the store (the uploader's position).
    pub uploaded: tokio::sync::watch::Receiver<Option<ltx::TxId>>,
    /// Asks the database side for an L9 snapshot of its position after its next sync.
    pub request_snapshot: Box<dyn Fn() + Send + Sync>,
}

fn level_maxima(listing: &[LtxFileInfo]) -> [Option<ltx::TxId>; SNAPSHOT_LEVEL as usize + 1] {
    let mut m = [None; SNAPSHOT_LEVEL as usize + 1];
    for f in listing {
        if let Some(slot) = m.get_mut(f.level as usize) {
            *slot = (*slot).max(Some(f.max_txid));
        }
    }
    m
}

/// Runs compaction, snapshot requests and retention until `cancel`.
///
/// It works only when something is owed, and sleeps until then: a level is compacted at its
/// next clock-aligned time only if the level below holds a newer TXID than it does (known from
/// `listing`, the store's listing at start, and from this task's own writes, so finding out
/// costs no request); a scheduled snapshot is requested only if the database changed since the
/// last one; retention runs after a change, and again only when a file comes of age
/// ([`crate::retention::next_deletion_due`]). An idle replica therefore costs nothing once its
/// last write's compactions and retention are done.
pub async fn run(
    store: DynStore,
    meta: MetaDir,
    opts: HistoryOptions,
    listing: Vec<LtxFileInfo>,
    mut links: HistoryLinks,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut max = level_maxima(&listing);
    let levels = opts.levels.len().min(SNAPSHOT_LEVEL as usize - 1);
    let mut due: Vec<Option<SystemTime>> = vec![None; levels];
    let now = SystemTime::now();
    let mut snapshot_at = next_aligned(now, opts.snapshot_interval);
    let mut last_snapshot = max[SNAPSHOT_LEVEL as usize];
    // Retention runs once at start, then after changes and when files come of age.
    let mut retention_dirty = true;
    let mut retention_at = now;
    let mut retention_next: Option<SystemTime> = None;
    let tmp = meta.root().to_path_buf();
    // litestream_l0_retention_files_total's `db` label: the database's file name, from the
    // meta directory's (`.<name>-litestream`).
    let metrics_db = {
        let root = meta
            .root()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        root.strip_prefix('.')
            .and_then(|r| r.strip_suffix("-litestream"))
            .map(str::to_string)
            .unwrap_or(root)
    };
    let listed_levels: Vec<u8> = (0..=levels as u8).chain([SNAPSHOT_LEVEL]).collect();
    // A replica without any snapshot gets one soon after start, as Litestream does.
    if last_snapshot.is_none() {
        (links.request_snapshot)();
        last_snapshot = Some(ltx::TxId(0));
        retention_dirty = true;
    }
    loop {
        let uploaded = *links.uploaded.borrow_and_update();
        max[0] = max[0].max(uploaded);
        let now = SystemTime::now();
        for (i, d) in due.iter_mut().enumerate() {
            if d.is_none() && max[i] > max[i + 1] {
                *d = Some(next_aligned(now, opts.levels[i]));
            }
        }
        let mut next: Option<SystemTime> = due.iter().flatten().min().copied();
        if max[0] > last_snapshot {
            next = next.min(Some(snapshot_at)).or(Some(snapshot_at));
        }
        let retention_due = if retention_dirty {
            Some(retention_at)
        } else {
            retention_next
        };
        if let Some(r) = retention_due {
            next = Some(next.map_or(r, |n| n.min(r)));
        }
        let sleep_for = next.map(|t| t.duration_since(now).unwrap_or(Duration::ZERO));
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = links.uploaded.changed() => {
                if r.is_err() {
                    break;
                }
                continue;
            }
            _ = async {
                match sleep_for {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        let _slot = tokio::select! {
            _ = cancel.cancelled() => break,
            s = HISTORY_SLOTS.acquire() => s,
        };
        let now = SystemTime::now();
        for i in 0..levels {
            if due[i].is_none_or(|d| now < d) {
                continue;
            }
            let level = (i + 1) as u8;
            due[i] = None;
            match compact_level(&store, &meta, level, &tmp).await {
                Ok(Some(info)) => {
                    if level == 1 {
                        prune_local_l0(&meta, info.max_txid);
                    }
                    max[i + 1] = max[i + 1].max(Some(info.max_txid));
                    retention_dirty = true;
                }
                // Nothing to compact after all (the listing says the level is covered).
                Ok(None) => max[i + 1] = max[i + 1].max(max[i]),
                Err(e) => {
                    warn!(
                        level,
                        "compaction failed (retrying at the next interval): {e}"
                    );
                    due[i] = Some(next_aligned(now, opts.levels[i]));
                }
            }
        }
        if now >= snapshot_at {
            if max[0] > last_snapshot {
                (links.request_snapshot)();
                last_snapshot = max[0];
                retention_dirty = true;
            }
            snapshot_at = next_aligned(now, opts.snapshot_interval);
        }
        if retention_due.is_some_and(|r| now >= r) {
            match enforce_retention_scheduled(
                &store,
                &opts.retention,
                now,
                &listed_levels,
                Some(&metrics_db),
            )
            .await
            {
                Ok((_, n)) => {
                    retention_dirty = false;
                    retention_next = n;
                }
                Err(e) => {
                    warn!("retention failed (retrying later): {e}");
                    retention_dirty = true;
                }
            }
            retention_at = now + opts.retention_check_interval;
        }
    }
}
