//! Follow mode (`restore -f`): restore, then keep the copy up to date with the replica.
//!
//! - **Start.** If the copy and its recorded position (see [`position`]) agree with each other
//!   and with the replica, the follower resumes from the recorded TXID. Otherwise it restores
//!   the latest state into a staging file, switches its header to rollback-journal mode, and
//!   renames it over the output (reasons are logged at WARN). An existing output without a
//!   recorded position is refused unless `force`, as Litestream does.
//! - **Poll** every `interval`: list L0; if L0 alone explains the replica (files continuing
//!   right after the position), download them; otherwise list every level and bridge the gap
//!   from L1..L8, and, when a gap persists over two polls, from a newer full file (an L9
//!   snapshot). See [`plan_follow`].
//! - **Apply** a batch as one merge (newest page wins) written in place under SQLite's EXCLUSIVE
//!   lock (see [`copy`]): readers see whole LTX files only, never part of one.
//! - **Replica reset.** A replica that went backwards (its newest TXID below the copy's), or
//!   whose file at the copy's TXID has another timestamp (replaced by another database's), is
//!   restored in full again, written into the copy in place under the lock.
//! - **Stop.** When `shutdown` completes, between batches: a batch in progress is finished.
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use ltx::{Compactor, Decoder, TxId};
use tracing::{debug, info, info_span, warn, Instrument};

use super::{
    describe_chain, download, list, plan, sidecars, IntegrityCheck, RestoreError, RestoreOptions,
    Target,
};
use crate::storage::retry::RetryPolicy;
use crate::storage::{DynStore, LtxFileInfo};

use super::plan::{l0_settles, replica_mismatch, timestamp_at};
pub use super::plan::{plan_follow, FollowPlan};

pub mod copy;
pub mod position;

use copy::Copy;
use position::Recorded;

/// Litestream's default `-follow-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// How to follow.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The copy.
    pub output: PathBuf,
    /// Time between polls.
    pub interval: Duration,
    /// Files downloaded at once.
    pub parallelism: usize,
    /// Replace an existing output that has no recorded position.
    pub force: bool,
    /// Check run on a full restore before it is moved into place.
    pub integrity_check: IntegrityCheck,
}

impl FollowOptions {
    /// Litestream's defaults: 1 s, 8 downloads, no force, no check.
    pub fn new(output: impl Into<PathBuf>) -> Self {
        FollowOptions {
            output: output.into(),
            interval: DEFAULT_INTERVAL,
            parallelism: 8,
            force: false,
            integrity_check: IntegrityCheck::None,
        }
    }
}

/// Errors of follow mode.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// Restoring, listing or downloading failed.
    #[error(transparent)]
    Restore(#[from] RestoreError),
    /// The output exists but no position was recorded for it.
    #[error("cannot resume follow mode: {} exists but {} does not; delete the database to re-restore, or use -force", .path.display(), position::txid_path(.path).display())]
    NoPosition {
        /// The output.
        path: PathBuf,
    },
    /// A file that should be a database is not.
    #[error("{}: not a SQLite database", .path.display())]
    NotADatabase {
        /// The file.
        path: PathBuf,
    },
    /// The copy's header says WAL mode.
    #[error("{}: header says WAL mode; a followed copy must be in rollback-journal mode", .path.display())]
    NotRollback {
        /// The file.
        path: PathBuf,
    },
    /// A batch's page size differs from the copy's.
    #[error("{}: page size {copy} but files {chain} have {files}", .path.display())]
    PageSize {
        /// The copy.
        path: PathBuf,
        /// The copy's page size.
        copy: u32,
        /// The files' page size.
        files: u32,
        /// The files.
        chain: String,
    },
    /// Merging downloaded files failed.
    #[error("apply {chain} to {}", .path.display())]
    Ltx {
        /// The copy.
        path: PathBuf,
        /// The files.
        chain: String,
        /// The cause.
        #[source]
        source: ltx::Error,
    },
    /// SQLite failed on the copy.
    #[error("sqlite: {}", .path.display())]
    Sqlite {
        /// The copy.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Local file I/O.
    #[error("{}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl FollowError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        FollowError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Restores, then follows until `shutdown` completes.
pub async fn follow(
    store: &DynStore,
    opts: &FollowOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), FollowError> {
    let span = info_span!("follow", output = %opts.output.display(), replica = %store.describe());
    async {
        tokio::pin!(shutdown);
        let mut f = tokio::select! {
            r = Follower::start(store.clone(), opts.clone()) => r?,
            _ = &mut shutdown => {
                info!("follow mode stopped before the copy was ready");
                return Ok(());
            }
        };
        info!(txid = %f.pos, interval = ?opts.interval, "entering follow mode");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(opts.interval) => {}
            }
            let batch = tokio::select! {
                _ = &mut shutdown => break,
                r = f.poll() => r,
            };
            let result = match batch {
                Ok(Some(step)) => f.apply(step).await,
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                // Storage outages and the like: keep polling.
                warn!(error = %format!("{e:#}"), txid = %f.pos, "follow: poll failed; retrying next interval");
            }
        }
        info!(txid = %f.pos, "follow mode stopped");
        Ok(())
    }
    .instrument(span)
    .await
}

/// What one poll decided to do.
enum Step {
    /// Download and apply these files.
    Files(Vec<LtxFileInfo>, Vec<LtxFileInfo>),
    /// Restore everything again (the replica was reset or replaced), in place.
    Full(Vec<LtxFileInfo>, String),
}

struct Follower {
    store: DynStore,
    opts: FollowOptions,
    replica: String,
    pos: TxId,
    recorded: Recorded,
    /// `None` only while a blocking apply has it.
    copy: Option<Copy>,
    gap_polls: u32,
}

impl Follower {
    async fn start(store: DynStore, opts: FollowOptions) -> Result<Follower, FollowError> {
        let out = opts.output.clone();
        let replica = store.describe();
        let files = list(store.as_ref()).await?;
        let found = position::read(&out).map_err(|e| FollowError::io(&out, e))?;
        let exists = std::fs::symlink_metadata(&out).is_ok();
        let reason = match (&found, exists) {
            (None, false) => None,
            (Some(_), false) => Some("the copy is missing".to_string()),
            (None, true) if opts.force => Some("no recorded position (-force)".to_string()),
            (None, true) => return Err(FollowError::NoPosition { path: out }),
            (Some(p), true) => check_resume(&out, p, &files, &replica),
        };
        let resume = found.filter(|_| exists && reason.is_none());
        if let Some(p) = resume {
            let copy = Copy::open(&out)?;
            let header = copy.header()?;
            let recorded = Recorded {
                txid: p.txid.to_string(),
                page_size: copy.page_size(),
                commit: header.db_size,
                change_counter: header.change_counter,
                replica: replica.clone(),
                timestamp_ms: p
                    .recorded
                    .as_ref()
                    .and_then(|r| r.timestamp_ms)
                    .or_else(|| timestamp_at(&files, p.txid)),
            };
            info!(txid = %p.txid, walstream_state = p.recorded.is_some(), "resuming follow mode from the recorded position");
            let mut f = Follower {
                store,
                opts,
                replica,
                pos: p.txid,
                recorded,
                copy: Some(copy),
                gap_polls: 0,
            };
            f.save()?;
            return Ok(f);
        }
        if let Some(reason) = &reason {
            warn!(reason = %reason, "follow: full restore");
        }
        let (recorded, copy) = full_restore_rename(&store, &opts, &files, &replica).await?;
        let pos = recorded.txid().unwrap_or_default();
        let mut f = Follower {
            store,
            opts,
            replica,
            pos,
            recorded,
            copy: Some(copy),
            gap_polls: 0,
        };
        f.save()?;
        Ok(f)
    }

    fn save(&mut self) -> Result<(), FollowError> {
        position::write(&self.opts.output, &self.recorded)
            .map_err(|e| FollowError::io(&position::txid_path(&self.opts.output), e))
    }

    /// Lists the replica and decides the next step; `None` when up to date (or waiting at a gap).
    async fn poll(&mut self) -> Result<Option<Step>, FollowError> {
        let store = self.store.as_ref();
        let l0 = RetryPolicy::restore()
            .run(store.kind(), "level 0", |_| store.ltx_files(0))
            .await
            .map_err(|source| RestoreError::List {
                replica: self.replica.clone(),
                level: 0,
                source,
            })?;
        let plan = plan_follow(&l0, self.pos, false);
        let (files, plan) = if l0_settles(&l0, self.pos, &plan) {
            (l0, plan)
        } else {
            let all = list(store).await?;
            let plan = plan_follow(&all, self.pos, self.gap_polls >= 1);
            (all, plan)
        };
        if let Some(reason) = replica_mismatch(&files, self.pos, self.recorded.timestamp_ms) {
            // A full restore plans on every level.
            let all = if files.iter().any(|f| f.level > 0) {
                files
            } else {
                list(store).await?
            };
            return Ok(Some(Step::Full(all, reason)));
        }
        match plan {
            FollowPlan::Apply(chain) => {
                self.gap_polls = 0;
                Ok(Some(Step::Files(chain, files)))
            }
            FollowPlan::UpToDate => {
                self.gap_polls = 0;
                Ok(None)
            }
            FollowPlan::Gap { at, next } => {
                self.gap_polls += 1;
                warn!(txid = %at, next = %next, polls = self.gap_polls, "follow: no file continues from the copy's TXID; waiting (a newer snapshot is used from the second poll on)");
                Ok(None)
            }
            FollowPlan::Behind { .. } => Ok(None),
        }
    }

    async fn apply(&mut self, step: Step) -> Result<(), FollowError> {
        match step {
            Step::Files(chain, listing) => self.apply_files(chain, &listing).await,
            Step::Full(listing, reason) => {
                warn!(reason = %reason, "follow: full restore");
                self.full_in_place(&listing).await
            }
        }
    }

    async fn apply_files(
        &mut self,
        chain: Vec<LtxFileInfo>,
        listing: &[LtxFileInfo],
    ) -> Result<(), FollowError> {
        let Some(last) = chain.last().cloned() else {
            return Ok(());
        };
        let out = self.opts.output.clone();
        let dir = parent_dir(&out);
        let downloads = tempfile::Builder::new()
            .prefix(".walstream-follow-")
            .tempdir_in(&dir)
            .map_err(|e| FollowError::io(&dir, e))?;
        let paths: Vec<PathBuf> = futures::stream::iter(chain.iter().enumerate())
            .map(|(i, info)| {
                let dest = downloads
                    .path()
                    .join(format!("{i:06}-{}", info.file_name()));
                download(&self.store, &self.replica, info, dest)
            })
            .buffered(self.opts.parallelism.max(1))
            .try_collect()
            .await?;
        let bytes: u64 = chain.iter().map(|f| f.size).sum();
        let described = describe_chain(&chain);
        let Some(mut copy) = self.copy.take() else {
            return Err(FollowError::io(
                &out,
                std::io::Error::other("copy not open"),
            ));
        };
        let job_out = out.clone();
        let job_chain = described.clone();
        let (copy, result) = tokio::task::spawn_blocking(move || {
            let r = apply_ltx_files(&mut copy, &paths, &job_out, &job_chain);
            (copy, r)
        })
        .await
        .map_err(|e| FollowError::io(&out, std::io::Error::other(e)))?;
        self.copy = Some(copy);
        let (counter, commit) = result?;
        drop(downloads);
        let from = self.pos;
        self.pos = last.max_txid;
        self.recorded = Recorded {
            txid: last.max_txid.to_string(),
            page_size: self.recorded.page_size,
            commit,
            change_counter: counter,
            replica: self.replica.clone(),
            timestamp_ms: timestamp_at(listing, last.max_txid),
        };
        self.save()?;
        info!(from_txid = %from, to_txid = %self.pos, files = chain.len(), bytes, chain = %described, "follow: applied");
        Ok(())
    }

    /// A full restore into a staging file, then copied into the copy in place under the lock
    /// (readers keep their connections); a page size change renames it over instead.
    async fn full_in_place(&mut self, listing: &[LtxFileInfo]) -> Result<(), FollowError> {
        let out = self.opts.output.clone();
        let chain = plan(listing, &Target::Latest, &self.replica)?;
        let staging = staging_path(&out);
        let summary = restore_to(&self.store, &chain, &staging, &self.opts).await?;
        let same_size = self
            .copy
            .as_ref()
            .is_some_and(|c| c.page_size() == summary.page_size);
        if !same_size {
            warn!(copy = ?self.copy.as_ref().map(Copy::page_size), new = summary.page_size, "follow: page size changed; replacing the copy (readers must reopen it)");
            self.copy = None;
            let (recorded, copy) = install(
                &staging,
                &out,
                &chain,
                listing,
                &self.replica,
                summary.commit,
            )?;
            self.copy = Some(copy);
            self.pos = summary.txid;
            self.recorded = recorded;
            return self.save();
        }
        let Some(mut copy) = self.copy.take() else {
            return Err(FollowError::io(
                &out,
                std::io::Error::other("copy not open"),
            ));
        };
        let job_staging = staging.clone();
        let commit = summary.commit;
        let (copy, result) = tokio::task::spawn_blocking(move || {
            let r = copy_file_pages(&mut copy, &job_staging, commit);
            (copy, r)
        })
        .await
        .map_err(|e| FollowError::io(&out, std::io::Error::other(e)))?;
        self.copy = Some(copy);
        let _ = std::fs::remove_file(&staging);
        let counter = result?;
        let from = self.pos;
        self.pos = summary.txid;
        self.recorded = Recorded {
            txid: summary.txid.to_string(),
            page_size: summary.page_size,
            commit,
            change_counter: counter,
            replica: self.replica.clone(),
            timestamp_ms: timestamp_at(listing, summary.txid),
        };
        self.save()?;
        info!(from_txid = %from, to_txid = %self.pos, files = summary.files, bytes = summary.bytes, "follow: restored in full, in place");
        Ok(())
    }
}

/// Why a recorded position cannot be resumed, if it cannot.
fn check_resume(
    out: &Path,
    p: &position::Position,
    files: &[LtxFileInfo],
    replica: &str,
) -> Option<String> {
    let header = match copy::read_header(out) {
        Ok(Some(h)) => h,
        Ok(None) => return Some("the copy is not a SQLite database".into()),
        Err(e) => return Some(format!("cannot read the copy's header: {e}")),
    };
    if !header.is_rollback() {
        return Some("the copy's header says WAL mode: it was not written by a follower".into());
    }
    if let Some(r) = &p.recorded {
        if r.replica != replica {
            return Some(format!(
                "the position was recorded for replica {}, not {replica}",
                r.replica
            ));
        }
        if r.page_size != header.page_size {
            return Some(format!(
                "page size {} recorded, the copy has {}",
                r.page_size, header.page_size
            ));
        }
        let c = header.change_counter;
        if c != r.change_counter && c != r.change_counter.wrapping_add(1) {
            return Some(format!(
                "the copy was changed by something else: change counter {c}, recorded {}",
                r.change_counter
            ));
        }
    }
    replica_mismatch(
        files,
        p.txid,
        p.recorded.as_ref().and_then(|r| r.timestamp_ms),
    )
}

/// Merges the downloaded files and writes the result into the copy; returns the change counter
/// and the new size in pages.
fn apply_ltx_files(
    copy: &mut Copy,
    paths: &[PathBuf],
    out: &Path,
    chain: &str,
) -> Result<(u32, u32), FollowError> {
    let ltx_err = |source| FollowError::Ltx {
        path: out.to_path_buf(),
        chain: chain.to_string(),
        source,
    };
    let mut decoders = Vec::with_capacity(paths.len());
    for p in paths {
        let f = std::fs::File::open(p).map_err(|e| FollowError::io(p, e))?;
        decoders
            .push(Decoder::new(std::io::BufReader::with_capacity(64 * 1024, f)).map_err(ltx_err)?);
    }
    let mut compactor = Compactor::new(decoders).map_err(ltx_err)?;
    let header = compactor.header().clone();
    if header.page_size != copy.page_size() {
        return Err(FollowError::PageSize {
            path: out.to_path_buf(),
            copy: copy.page_size(),
            files: header.page_size,
            chain: chain.to_string(),
        });
    }
    let commit = header.commit;
    let mut failed: Option<ltx::Error> = None;
    let counter = copy.apply(commit, |buf| match compactor.next_page(buf) {
        Ok(p) => Ok(p),
        Err(e) => {
            failed = Some(e);
            Err(FollowError::Io {
                path: out.to_path_buf(),
                source: std::io::Error::other("ltx decode failed"),
            })
        }
    });
    if let Some(e) = failed {
        return Err(ltx_err(e));
    }
    let counter = counter?;
    // Checks every file's checksum (the pages are on disk already; a bad file is reported and
    // the next poll re-applies from the recorded position).
    compactor.finish().map_err(ltx_err)?;
    Ok((counter, commit))
}

/// Writes every page of the database at `src` into the copy as one batch.
fn copy_file_pages(copy: &mut Copy, src: &Path, commit: u32) -> Result<u32, FollowError> {
    use std::io::Read;
    let f = std::fs::File::open(src).map_err(|e| FollowError::io(src, e))?;
    let mut r = std::io::BufReader::with_capacity(1024 * 1024, f);
    let mut pgno = 0u32;
    copy.apply(commit, |buf| {
        if pgno >= commit {
            return Ok(None);
        }
        r.read_exact(buf).map_err(|e| FollowError::io(src, e))?;
        pgno += 1;
        Ok(Some(pgno))
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `<out>.walstream-follow-new`: where full restores are built.
fn staging_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_os_string();
    s.push(".walstream-follow-new");
    PathBuf::from(s)
}

/// Restores `chain` into `staging` (replacing it).
async fn restore_to(
    store: &DynStore,
    chain: &[LtxFileInfo],
    staging: &Path,
    opts: &FollowOptions,
) -> Result<super::RestoreSummary, FollowError> {
    let ropts = RestoreOptions {
        output: staging.to_path_buf(),
        target: Target::Latest,
        overwrite: true,
        parallelism: opts.parallelism.max(1),
        integrity_check: opts.integrity_check,
    };
    let summary = super::apply(store, chain, &ropts).await?;
    debug!(txid = %summary.txid, files = summary.files, bytes = summary.bytes, "follow: staged a full restore");
    Ok(summary)
}

/// Full restore when starting: staging file, header for the copy, renamed over the output.
async fn full_restore_rename(
    store: &DynStore,
    opts: &FollowOptions,
    files: &[LtxFileInfo],
    replica: &str,
) -> Result<(Recorded, Copy), FollowError> {
    let out = &opts.output;
    let chain = plan(files, &Target::Latest, replica)?;
    let staging = staging_path(out);
    let summary = restore_to(store, &chain, &staging, opts).await?;
    let installed = install(&staging, out, &chain, files, replica, summary.commit)?;
    info!(txid = %summary.txid, files = summary.files, bytes = summary.bytes, "follow: restored in full");
    Ok(installed)
}

/// Prepares `staging` for following and renames it over `out` (removing `-wal`, `-shm` and
/// `-journal`, which would otherwise be replayed into it).
fn install(
    staging: &Path,
    out: &Path,
    chain: &[LtxFileInfo],
    listing: &[LtxFileInfo],
    replica: &str,
    commit: u32,
) -> Result<(Recorded, Copy), FollowError> {
    let counter = copy::prepare_new_copy(staging, commit)?;
    let header = copy::read_header(staging)
        .map_err(|e| FollowError::io(staging, e))?
        .ok_or_else(|| FollowError::NotADatabase {
            path: staging.to_path_buf(),
        })?;
    let mut journal = out.as_os_str().to_os_string();
    journal.push("-journal");
    let [wal, shm] = sidecars(out);
    for p in [wal, shm, PathBuf::from(journal)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FollowError::io(&p, e)),
        }
    }
    std::fs::rename(staging, out).map_err(|e| FollowError::io(out, e))?;
    let dir = parent_dir(out);
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FollowError::io(&dir, e))?;
    let txid = chain.last().map(|f| f.max_txid).unwrap_or_default();
    let recorded = Recorded {
        txid: txid.to_string(),
        page_size: header.page_size,
        commit,
        change_counter: counter,
        replica: replica.to_string(),
        timestamp_ms: timestamp_at(listing, txid),
    };
    let copy = Copy::open(out)?;
    Ok((recorded, copy))
}
