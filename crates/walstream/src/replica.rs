//! A database's replica: the remote position, and uploads of the meta directory's L0 (and
//! snapshot) files with retry. Never reads the WAL.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ltx::TxId;
use tracing::{debug, debug_span, info, Instrument};

use crate::meta::{LocalLtx, MetaDir, MetaError};
use crate::storage::retry::RetryPolicy;
use crate::storage::{DynStore, StorageError, SNAPSHOT_LEVEL};

/// Litestream's `shutdown-sync-timeout` default.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the replica.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The store failed.
    #[error("replica {replica}: {source}")]
    Storage {
        /// The replica, without secrets.
        replica: String,
        /// The cause.
        source: StorageError,
    },
    /// The meta directory failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// The newest TXID on the store, over every level. `None` for an empty replica.
pub async fn remote_max_txid(store: &DynStore) -> Result<Option<TxId>, ReplicaError> {
    max_txid_of_levels(store, 0..=SNAPSHOT_LEVEL).await
}

/// Where L0 uploads resume: the newest TXID in levels 0..=8. A snapshot (L9) does not count, so
/// an L0 file a crash left un-uploaded after its snapshot still goes up and L0 stays contiguous.
pub async fn remote_upload_position(store: &DynStore) -> Result<Option<TxId>, ReplicaError> {
    max_txid_of_levels(store, 0..=SNAPSHOT_LEVEL - 1).await
}

async fn max_txid_of_levels(
    store: &DynStore,
    levels: std::ops::RangeInclusive<u8>,
) -> Result<Option<TxId>, ReplicaError> {
    let files = crate::storage::list_levels(store.as_ref(), levels, None)
        .await
        .map_err(|e| ReplicaError::Storage {
            replica: store.describe(),
            source: e.source,
        })?;
    Ok(files.iter().map(|f| f.max_txid).max())
}

/// Whether every local L0 file from `after + 1` up to the newest exists, so that uploading them
/// continues the replica without a gap.
pub fn local_chain_complete(meta: &MetaDir, after: Option<TxId>) -> Result<bool, MetaError> {
    let files = meta.list(0)?;
    let mut expect = after.map_or(1, |t| t.0 + 1);
    for f in &files {
        if f.max_txid.0 < expect {
            continue;
        }
        if f.min_txid.0 > expect {
            return Ok(false);
        }
        expect = f.max_txid.0 + 1;
    }
    Ok(true)
}

/// Uploads a database's local files to its store.
#[derive(Debug)]
pub struct Replica {
    store: DynStore,
    meta: MetaDir,
    /// Newest TXID known to be on the store.
    remote: Option<TxId>,
    /// How uploads are retried.
    retry: RetryPolicy,
    /// Set when the process is shutting down.
    stop: Option<Arc<AtomicBool>>,
    /// When the stop flag was first seen set during a retry.
    stop_seen: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// How long uploads keep retrying once the stop flag is set.
    shutdown_timeout: Duration,
    /// Delete uploaded local L0 files (all but the newest). Off while compaction runs: it reads
    /// them instead of downloading them again, and prunes them once L1 covers them.
    prune_uploaded: bool,
    /// MaxTXIDs of the L9 snapshots this replica uploaded: L0 may jump onto them.
    snapshot_txids: std::collections::HashSet<TxId>,
}

impl Replica {
    /// A replica whose store holds everything up to `remote`.
    pub fn new(store: DynStore, meta: MetaDir, remote: Option<TxId>) -> Replica {
        Replica {
            store,
            meta,
            remote,
            retry: RetryPolicy::upload(),
            stop: None,
            stop_seen: std::sync::Mutex::new(None),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            prune_uploaded: true,
            snapshot_txids: std::collections::HashSet::new(),
        }
    }

    /// Retries uploads as `policy` says instead of [`RetryPolicy::upload`] (without end).
    pub fn with_retry(mut self, policy: RetryPolicy) -> Replica {
        self.retry = policy;
        self
    }

    /// Bounds retries once `stop` is set: a failing upload keeps retrying for at most `timeout`
    /// (Litestream's `shutdown-sync-timeout`, 30 s by default) after the flag was first seen.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>, timeout: Duration) -> Replica {
        self.stop = Some(stop);
        self.shutdown_timeout = timeout;
        self
    }

    /// The store.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// Newest TXID known to be on the store.
    pub fn remote_txid(&self) -> Option<TxId> {
        self.remote
    }

    /// Uploads one local file, retrying transient failures as `self.retry` says (by default
    /// without end: the file stays in the meta directory until it is on the store). Once the
    /// stop flag is set, retrying goes on for at most `shutdown_timeout` more.
    async fn upload(&self, f: &LocalLtx) -> Result<(), ReplicaError> {
        let header = MetaDir::read_header(&f.path)?;
        let created_at = UNIX_EPOCH + Duration::from_millis(header.timestamp.max(0) as u64);
        let key = format!("{}/{}", f.level, ltx::file_name(f.min_txid, f.max_txid));
        let store = &self.store;
        let stop = self.stop.clone();
        let shutdown_timeout = self.shutdown_timeout;
        let stop_seen = &self.stop_seen;
        let give_up = move || {
            if !stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
                return false;
            }
            let Ok(mut seen) = stop_seen.lock() else {
                return true;
            };
            seen.get_or_insert_with(tokio::time::Instant::now).elapsed() >= shutdown_timeout
        };
        self.retry
            .run_until(store.kind(), &key, give_up, |attempt| {
                let span = debug_span!("upload", level = f.level, min_txid = %f.min_txid, max_txid = %f.max_txid, attempt);
                store
                    .write_ltx_file(f.level, f.min_txid, f.max_txid, &f.path, created_at)
                    .instrument(span)
            })
            .await
            .map(|_| ())
            .map_err(|source| ReplicaError::Storage {
                replica: self.store.describe(),
                source,
            })
    }

    /// Moves the upload position forward to what the store holds (levels 0 to 8), if that is
    /// further.
    async fn adopt_store_position(&mut self) -> Result<(), ReplicaError> {
        let pos = remote_upload_position(&self.store).await?;
        if pos > self.remote {
            info!(replica = %self.store.describe(), from = ?self.remote.map(|t| t.to_string()), to = ?pos.map(|t| t.to_string()), "the store holds more than this replica uploaded; continuing from there");
            self.remote = pos;
        }
        Ok(())
    }

    /// Whether uploaded local L0 files are deleted right away (default) or left for compaction.
    pub fn set_prune_uploaded(&mut self, prune: bool) {
        self.prune_uploaded = prune;
    }

    /// Uploads every local file newer than the remote position: snapshots first, then L0 files
    /// in TXID order. Afterwards removes local files the store now holds, keeping the newest L0
    /// (it records the WAL position). Returns the number of files uploaded.
    pub async fn sync(&mut self) -> Result<usize, ReplicaError> {
        let mut n = 0;
        for f in self.meta.list(SNAPSHOT_LEVEL)? {
            self.snapshot_txids.insert(f.max_txid);
            let started = SystemTime::now();
            self.upload(&f).await?;
            crate::failpoint::hit("snapshot.after_upload");
            info!(replica = %self.store.describe(), max_txid = %f.max_txid, elapsed = ?started.elapsed().unwrap_or_default(), "snapshot uploaded");
            let _ = std::fs::remove_file(&f.path);
            // A snapshot does not advance the L0 upload position: L0 stays contiguous.
            n += 1;
        }
        let files = self.meta.list(0)?;
        let newest = files.last().map(|f| f.max_txid);
        let mut asked_store = false;
        let mut i = 0;
        while i < files.len() {
            let f = &files[i];
            if Some(f.max_txid) <= self.remote {
                i += 1;
                continue;
            }
            // Upload strictly in TXID order. A directory listing may miss a file renamed into
            // place while it runs and still show a later one; uploading past the hole would
            // leave it forever. A jump is taken only onto a full snapshot that went up as L9.
            let onto_snapshot = self.snapshot_txids.contains(&f.max_txid);
            let hole = |remote: Option<TxId>| {
                remote.is_some_and(|r| f.min_txid.0 != r.0 + 1 && !onto_snapshot)
            };
            if hole(self.remote) && !asked_store {
                // The missing file may be on the store already: an upload whose answer was
                // lost (a reset, a garbled response) landed, compaction covered it with L1 and
                // pruned it locally, all before the retry found the file gone. Once per pass.
                asked_store = true;
                self.adopt_store_position().await?;
                if Some(f.max_txid) <= self.remote {
                    i += 1;
                    continue;
                }
            }
            if hole(self.remote) {
                if let Some(r) = self.remote {
                    debug!(replica = %self.store.describe(), after = %r, next = %f.min_txid, "L0 listing has a hole; waiting for the next pass");
                }
                break;
            }
            // One file at a time, in TXID order: a kill can never leave a later file on the
            // store without an earlier one. (Eight at once did, in the crash loop: a replica
            // holding TXID 2 without 1. A backlog stays small instead: commits wait while an
            // upload is in flight and go up as one file, see server::database.)
            if let Err(e) = self.upload(f).await {
                if f.path.exists() {
                    return Err(e);
                }
                // Pruned while its upload was retried: the store covers it (see above).
                debug!(replica = %self.store.describe(), txid = %f.max_txid, error = %e, "local L0 file gone during its upload; asking the store where it is");
                self.adopt_store_position().await?;
                break;
            }
            crate::failpoint::hit("upload.before_position");
            debug!(replica = %self.store.describe(), txid = %f.max_txid, "L0 uploaded");
            self.remote = Some(f.max_txid);
            n += 1;
            i += 1;
        }
        if self.prune_uploaded {
            for f in &files {
                if Some(f.max_txid) <= self.remote && Some(f.max_txid) < newest {
                    let _ = std::fs::remove_file(&f.path);
                }
            }
        }
        Ok(n)
    }
}
