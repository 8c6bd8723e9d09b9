//! Restore of Litestream 0.3 backups (the `generations/` layout), plain or age-encrypted.
//!
//! Layout, as Litestream 0.3.13 writes it under the replica's root (a directory, or the path in
//! a bucket):
//! - `generations/<id>/snapshots/<index>.snapshot.lz4`: the whole database at the start of WAL
//!   index `<index>` (`%08x`);
//! - `generations/<id>/wal/<index>_<offset>.wal.lz4`: the bytes of WAL file `<index>` from byte
//!   `<offset>` (`%08x_%08x`); the segment at offset 0 holds the WAL header. Offsets past 4 GiB
//!   have 9 or more hex digits (Litestream's own 0.3 reader skipped those). The older form
//!   `wal/<index>/<offset>.wal.lz4` is read too.
//! - each object is an LZ4 frame; on an encrypted replica the LZ4 frame is wrapped in an age file.
//!
//! Which state, as 0.3.13's restore picks it (times are the store's: file mtimes, which 0.3 sets
//! to the data's time, or S3 LastModified):
//! 1. the generation: among those whose span (oldest to newest snapshot or segment) contains the
//!    `-timestamp`, or all without one, the one updated last; `-generation ID` names one;
//! 2. its snapshot created last, at or before the `-timestamp`;
//! 3. every WAL segment from the snapshot's index on, in (index, offset) order, up to the first
//!    one created after the `-timestamp`.
//!
//! Applying: the snapshot is decompressed into `<out>.tmp`; each WAL index's segments are joined
//! into one WAL file (each must start where the previous ended) whose frames are checked as
//! SQLite checks them (salts and the cumulative checksum) and copied into the database up to the
//! last commit frame, which also sets the database size: what 0.3's restore gets from SQLite's
//! `wal_checkpoint(TRUNCATE)`, byte for byte. Nothing is held in memory beyond one page and
//! buffers; downloads go to a temporary directory next to the output. On any error nothing is
//! written at the output path.
mod describe;
mod error;
pub use describe::describe_plan;
pub use error::V03Error;

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

use super::{tmp_path, IntegrityCheck, RestoreError, RestoreOptions};
use crate::age_keys::{self, Identity};
use crate::sqlite::wal_reader::{wal_checksum, WalHeader, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE};
use crate::storage::retry::RetryPolicy;
use crate::storage::{DynStore, ObjectInfo, StorageError};

/// Where 0.3 keeps everything, relative to the replica's root.
pub const GENERATIONS_PREFIX: &str = "generations/";
/// Longest wait for a download's next bytes before it counts as stalled and resumes.
const DOWNLOAD_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// SQLite's database header magic.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// I/O buffer size.
const BUF: usize = 256 * 1024;

/// A snapshot object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// WAL index the snapshot starts.
    pub index: u64,
    /// Object key relative to the replica's root.
    pub key: String,
    /// Size in bytes (compressed, and encrypted if so).
    pub size: u64,
    /// When the store says it was written.
    pub created_at: SystemTime,
}

/// A WAL segment object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// WAL index.
    pub index: u64,
    /// Byte offset in that WAL file.
    pub offset: u64,
    /// Object key relative to the replica's root.
    pub key: String,
    /// Size in bytes (compressed, and encrypted if so).
    pub size: u64,
    /// When the store says it was written.
    pub created_at: SystemTime,
}

/// One generation: its snapshots (by index) and WAL segments (by index, then offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    /// 16 hex digits.
    pub id: String,
    /// Snapshots, sorted by index.
    pub snapshots: Vec<Snapshot>,
    /// Segments, sorted by (index, offset).
    pub segments: Vec<Segment>,
}

impl Generation {
    /// Oldest and newest creation times of its snapshots and segments (0.3's generation span).
    pub fn span(&self) -> Option<(SystemTime, SystemTime)> {
        let times = self
            .snapshots
            .iter()
            .map(|s| s.created_at)
            .chain(self.segments.iter().map(|s| s.created_at));
        let (mut lo, mut hi) = (None::<SystemTime>, None::<SystemTime>);
        for t in times {
            lo = Some(lo.map_or(t, |l| l.min(t)));
            hi = Some(hi.map_or(t, |h| h.max(t)));
        }
        Some((lo?, hi?))
    }
}

/// What to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The generation.
    pub generation: String,
    /// The snapshot to start from.
    pub snapshot: Snapshot,
    /// WAL segments to apply, grouped by index in ascending order; each group starts at offset 0
    /// with ascending offsets.
    pub wal: Vec<(u64, Vec<Segment>)>,
}

impl Plan {
    /// Every object the plan downloads, snapshot first.
    pub fn objects(&self) -> Vec<(String, u64)> {
        std::iter::once((self.snapshot.key.clone(), self.snapshot.size))
            .chain(
                self.wal
                    .iter()
                    .flat_map(|(_, segs)| segs.iter().map(|s| (s.key.clone(), s.size))),
            )
            .collect()
    }
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The generation restored.
    pub generation: String,
    /// The snapshot's index.
    pub snapshot_index: u64,
    /// The last WAL index applied, if any.
    pub wal_index: Option<u64>,
    /// Page size.
    pub page_size: u32,
    /// Database size in pages.
    pub pages: u64,
    /// Objects downloaded.
    pub files: usize,
    /// Bytes downloaded.
    pub bytes: u64,
}

/// Parses a hex number of 8 to 16 digits (0.3 writes `%08x`, so larger values take more digits).
fn parse_hex(s: &str) -> Option<u64> {
    if !(8..=16).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Whether `s` is a generation name: 16 hex digits.
pub fn is_generation_id(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The index of a snapshot file name, `<index>.snapshot.lz4`.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    parse_hex(name.strip_suffix(".snapshot.lz4")?)
}

/// The index and offset of a WAL segment file name, `<index>_<offset>.wal.lz4`, each 8 or more
/// hex digits.
pub fn parse_wal_segment_name(name: &str) -> Option<(u64, u64)> {
    let (index, offset) = name.strip_suffix(".wal.lz4")?.split_once('_')?;
    Some((parse_hex(index)?, parse_hex(offset)?))
}

/// Sorts a listing of `generations/` into generations (by id); other objects are ignored.
pub fn classify(objects: &[ObjectInfo]) -> Vec<Generation> {
    let mut gens: std::collections::BTreeMap<String, Generation> = Default::default();
    for o in objects {
        let Some(rest) = o.key.strip_prefix(GENERATIONS_PREFIX) else {
            continue;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (id, kind) = match parts.as_slice() {
            [id, kind, ..] if is_generation_id(id) => (*id, *kind),
            _ => continue,
        };
        let entry = || Generation {
            id: id.to_string(),
            snapshots: Vec::new(),
            segments: Vec::new(),
        };
        match (kind, &parts[2..]) {
            ("snapshots", [name]) => {
                if let Some(index) = parse_snapshot_name(name) {
                    gens.entry(id.to_string())
                        .or_insert_with(entry)
                        .snapshots
                        .push(Snapshot {
                            index,
                            key: o.key.clone(),
                            size: o.size,
                            created_at: o.modified,
                        });
                }
            }
            ("wal", rest) => {
                let parsed = match rest {
                    [name] => parse_wal_segment_name(name),
                    [dir, name] => name
                        .strip_suffix(".wal.lz4")
                        .and_then(parse_hex)
                        .and_then(|off| Some((parse_hex(dir)?, off))),
                    _ => None,
                };
                if let Some((index, offset)) = parsed {
                    gens.entry(id.to_string())
                        .or_insert_with(entry)
                        .segments
                        .push(Segment {
                            index,
                            offset,
                            key: o.key.clone(),
                            size: o.size,
                            created_at: o.modified,
                        });
                }
            }
            _ => {}
        }
    }
    let mut out: Vec<Generation> = gens.into_values().collect();
    for g in &mut out {
        g.snapshots
            .sort_by(|a, b| a.index.cmp(&b.index).then(a.key.cmp(&b.key)));
        g.segments.sort_by(|a, b| {
            (a.index, a.offset)
                .cmp(&(b.index, b.offset))
                .then(a.key.cmp(&b.key))
        });
    }
    out
}

/// Lists the replica's generations (retrying transient failures as restores do).
pub async fn list(store: &DynStore) -> Result<Vec<Generation>, V03Error> {
    let objects = RetryPolicy::restore()
        .run(store.kind(), GENERATIONS_PREFIX, |_| {
            store.list_objects(GENERATIONS_PREFIX)
        })
        .await
        .map_err(|source| V03Error::List {
            replica: store.describe(),
            source,
        })?;
    Ok(classify(&objects))
}

/// Picks what to restore, as Litestream 0.3.13 does (see the module docs). `replica` only
/// names the replica in errors.
pub fn plan(
    generations: &[Generation],
    generation: Option<&str>,
    timestamp: Option<SystemTime>,
    replica: &str,
) -> Result<Plan, V03Error> {
    let usable: Vec<&Generation> = generations
        .iter()
        .filter(|g| !g.snapshots.is_empty() || !g.segments.is_empty())
        .collect();
    if usable.is_empty() && generation.is_none() {
        return Err(V03Error::NoGenerations {
            replica: replica.to_string(),
        });
    }
    let candidates: Vec<&Generation> = match generation {
        Some(id) => {
            let found: Vec<&Generation> = usable.iter().copied().filter(|g| g.id == id).collect();
            if found.is_empty() {
                return Err(V03Error::GenerationNotFound {
                    generation: id.to_string(),
                    replica: replica.to_string(),
                    available: usable.iter().map(|g| g.id.clone()).collect(),
                });
            }
            found
        }
        None => usable,
    };
    // The generation updated last among those whose span holds the timestamp (0.3: a later
    // one replaces the choice only when strictly newer).
    let mut chosen: Option<(&Generation, SystemTime)> = None;
    let mut spans = Vec::new();
    for g in &candidates {
        let Some((created, updated)) = g.span() else {
            continue;
        };
        spans.push((g.id.clone(), created, updated));
        if let Some(t) = timestamp {
            if t < created || t > updated {
                continue;
            }
        }
        if chosen.is_none_or(|(_, best)| updated > best) {
            chosen = Some((g, updated));
        }
    }
    let Some((gen, _)) = chosen else {
        return Err(match timestamp {
            Some(timestamp) => V03Error::TimestampNotAvailable {
                timestamp,
                replica: replica.to_string(),
                spans,
            },
            None => V03Error::NoGenerations {
                replica: replica.to_string(),
            },
        });
    };

    // The snapshot created last at or before the timestamp.
    let mut snapshot: Option<&Snapshot> = None;
    for s in &gen.snapshots {
        if timestamp.is_some_and(|t| s.created_at > t) {
            continue;
        }
        if snapshot.is_none_or(|best| s.created_at > best.created_at) {
            snapshot = Some(s);
        }
    }
    let Some(snapshot) = snapshot else {
        return Err(V03Error::NoSnapshot {
            generation: gen.id.clone(),
            timestamp,
        });
    };

    // Segments from the snapshot's index on, up to the first one after the timestamp.
    let mut wal: Vec<(u64, Vec<Segment>)> = Vec::new();
    let bad = |index: u64, message: String| V03Error::Segments {
        generation: gen.id.clone(),
        index,
        message,
    };
    for s in &gen.segments {
        if timestamp.is_some_and(|t| s.created_at > t) {
            break;
        }
        if s.index < snapshot.index {
            continue;
        }
        match wal.last_mut() {
            Some((index, segs)) if *index == s.index => {
                if segs.last().is_some_and(|p| p.offset >= s.offset) {
                    return Err(bad(
                        s.index,
                        format!("two segments at offset {} ({})", s.offset, s.key),
                    ));
                }
                segs.push(s.clone());
            }
            _ => {
                if s.offset != 0 {
                    return Err(bad(
                        s.index,
                        format!(
                            "missing initial WAL segment: the first one is at offset {} ({})",
                            s.offset, s.key
                        ),
                    ));
                }
                wal.push((s.index, vec![s.clone()]));
            }
        }
    }
    // Every index from the snapshot's to the last one must be there.
    for (expect, (index, _)) in (snapshot.index..).zip(wal.iter()) {
        if *index != expect {
            return Err(bad(
                expect,
                format!("missing WAL index (the next one present is {index:08x})"),
            ));
        }
    }
    Ok(Plan {
        generation: gen.id.clone(),
        snapshot: snapshot.clone(),
        wal,
    })
}

/// Restores `plan` from `store` into `opts.output` (its `target` is ignored: the plan is the
/// target), decrypting with `identities` where objects are age files.
pub async fn apply(
    store: &DynStore,
    plan: &Plan,
    opts: &RestoreOptions,
    identities: Arc<Vec<Identity>>,
) -> Result<Summary, V03Error> {
    super::check_output(&opts.output, opts.overwrite)?;
    let dir = super::apply::parent_dir(&opts.output);
    super::apply::create_dir_all_private(&dir).map_err(|e| RestoreError::io(&dir, e))?;
    let downloads = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .prefix(".walstream-restore-")
        .tempdir_in(&dir)
        .map_err(|e| RestoreError::io(&dir, e))?;
    let replica = store.describe();
    debug!(replica = %replica, generation = %plan.generation, snapshot_index = %format!("{:08x}", plan.snapshot.index), wal_indexes = plan.wal.len(), "restoring a Litestream 0.3 backup");

    let objects = plan.objects();
    let bytes: u64 = objects.iter().map(|(_, s)| *s).sum();
    let paths: Vec<PathBuf> = futures::stream::iter(objects.iter().enumerate())
        .map(|(i, (key, size))| {
            let dest = downloads.path().join(format!("{i:06}"));
            download(store, &replica, key, *size, dest)
        })
        .buffered(opts.parallelism.max(1))
        .try_collect()
        .await?;
    debug!(files = paths.len(), bytes, "downloaded");

    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(cancel.clone());
    let job = Job {
        plan: plan.clone(),
        paths,
        work: downloads.path().to_path_buf(),
        output: opts.output.clone(),
        overwrite: opts.overwrite,
        integrity_check: opts.integrity_check,
        identities,
        cancel,
    };
    let (page_size, pages) = tokio::task::spawn_blocking(move || job.run())
        .await
        .map_err(|e| RestoreError::io(&opts.output, std::io::Error::other(e)))??;
    drop(downloads);
    Ok(Summary {
        generation: plan.generation.clone(),
        snapshot_index: plan.snapshot.index,
        wal_index: plan.wal.last().map(|(i, _)| *i),
        page_size,
        pages,
        files: objects.len(),
        bytes,
    })
}

/// Sets the flag when the restore future is dropped, so that the blocking part stops.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Downloads one object to `dest`, resuming after transient failures as LTX downloads do.
async fn download(
    store: &DynStore,
    replica: &str,
    key: &str,
    size: u64,
    dest: PathBuf,
) -> Result<PathBuf, V03Error> {
    let mut out = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&dest)
        .await
        .map_err(|e| RestoreError::io(&dest, e))?;
    let failed = |source| V03Error::Download {
        replica: replica.to_string(),
        key: key.to_string(),
        source,
    };
    let stalled = || StorageError::Transient {
        backend: store.kind(),
        key: key.to_string(),
        message: format!("no data for {DOWNLOAD_STALL_TIMEOUT:?}"),
    };
    let mut backoff = RetryPolicy::restore().backoff();
    let mut offset = 0u64;
    loop {
        let started_at = offset;
        let result = async {
            let open = store.open_object(key, offset);
            let mut stream = tokio::time::timeout(DOWNLOAD_STALL_TIMEOUT, open)
                .await
                .map_err(|_| stalled())??;
            while let Some(chunk) = tokio::time::timeout(DOWNLOAD_STALL_TIMEOUT, stream.next())
                .await
                .map_err(|_| stalled())?
            {
                let chunk = chunk?;
                out.write_all(&chunk)
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
            return Err(failed(err));
        }
        if offset == size && size > 0 {
            break;
        }
        if offset > started_at {
            backoff.reset();
        }
        let Some(delay) = backoff.next_delay() else {
            return Err(failed(err));
        };
        warn!(key, attempt = backoff.attempts(), offset, retry_in = ?delay, error = %err, "download failed; resuming");
        tokio::time::sleep(delay).await;
    }
    out.flush().await.map_err(|e| RestoreError::io(&dest, e))?;
    if offset != size {
        return Err(V03Error::SizeMismatch {
            key: key.to_string(),
            got: offset,
            want: size,
        });
    }
    Ok(dest)
}

/// The blocking half: decode, apply, move into place.
struct Job {
    plan: Plan,
    /// Downloaded objects, in [`Plan::objects`] order.
    paths: Vec<PathBuf>,
    /// Scratch directory (holds the joined WAL files).
    work: PathBuf,
    output: PathBuf,
    overwrite: bool,
    integrity_check: IntegrityCheck,
    identities: Arc<Vec<Identity>>,
    cancel: Arc<AtomicBool>,
}

/// Removes a file unless disarmed.
struct RemoveGuard {
    path: PathBuf,
    armed: bool,
}

impl Drop for RemoveGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A database or WAL page count times the page size.
fn byte_len(pages: u64, page_size: u32) -> u64 {
    pages.saturating_mul(u64::from(page_size))
}

impl Job {
    fn check_cancel(&self) -> Result<(), V03Error> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(RestoreError::Cancelled.into());
        }
        Ok(())
    }

    /// Decodes the downloaded object `path` (`key` on the store) into `out`: age if it is an age
    /// file, then the LZ4 frame. Returns the bytes written.
    fn decode(&self, key: &str, path: &Path, out: &mut dyn Write) -> Result<u64, V03Error> {
        let mut f = File::open(path).map_err(|e| RestoreError::io(path, e))?;
        let mut head = [0u8; 64];
        let n = read_up_to(&mut f, &mut head).map_err(|e| RestoreError::io(path, e))?;
        let head = &head[..n];
        let input = BufReader::with_capacity(BUF, std::io::Cursor::new(head.to_vec()).chain(f));
        let decode_err = |what: &str, e: std::io::Error| V03Error::Decode {
            key: key.to_string(),
            message: format!("{what}: {e}"),
        };
        let copied = if age_keys::is_age(head) {
            let plain =
                age_keys::decrypt(input, &self.identities).map_err(|source| V03Error::Decrypt {
                    key: key.to_string(),
                    source,
                })?;
            copy_lz4(BufReader::with_capacity(BUF, plain), out)
        } else {
            copy_lz4(input, out)
        };
        copied.map_err(|e| match e {
            CopyError::Read(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                decode_err("corrupt data (damaged ciphertext or LZ4 frame)", e)
            }
            CopyError::Read(e) => decode_err("cannot decode", e),
            CopyError::Write(e) => V03Error::Restore(RestoreError::io(&self.work, e)),
        })
    }

    fn run(self) -> Result<(u32, u64), V03Error> {
        let tmp = tmp_path(&self.output);
        let mut guard = RemoveGuard {
            path: tmp.clone(),
            armed: true,
        };
        let file = super::apply::create_private(&tmp).map_err(|e| RestoreError::io(&tmp, e))?;

        // The snapshot.
        let snap_key = self.plan.snapshot.key.clone();
        let mut w = BufWriter::with_capacity(BUF, file);
        let len = self.decode(&snap_key, &self.paths[0], &mut w)?;
        let file = w
            .into_inner()
            .map_err(|e| RestoreError::io(&tmp, e.into_error()))?;
        let page_size = db_page_size(&tmp, len).map_err(|message| V03Error::Decode {
            key: snap_key.clone(),
            message,
        })?;
        let mut pages = len / u64::from(page_size);
        debug!(key = %snap_key, bytes = len, page_size, "snapshot decoded");

        // The WAL, index by index.
        let mut next_path = 1;
        for (index, segs) in &self.plan.wal {
            self.check_cancel()?;
            let wal_path = self.work.join(format!("{index:016x}.wal"));
            let _wal_guard = RemoveGuard {
                path: wal_path.clone(),
                armed: true,
            };
            let wal_file = File::create(&wal_path).map_err(|e| RestoreError::io(&wal_path, e))?;
            let mut w = BufWriter::with_capacity(BUF, wal_file);
            let mut at = 0u64;
            for seg in segs {
                if seg.offset != at {
                    return Err(V03Error::Segments {
                        generation: self.plan.generation.clone(),
                        index: *index,
                        message: format!(
                            "segment {} starts at offset {} but the segments before it end at {at}",
                            seg.key, seg.offset
                        ),
                    });
                }
                let path = &self.paths[next_path];
                next_path += 1;
                at += self.decode(&seg.key, path, &mut w)?;
            }
            w.flush().map_err(|e| RestoreError::io(&wal_path, e))?;
            drop(w);
            if let Some(commit) = self.apply_wal(*index, &wal_path, &file, page_size)? {
                pages = u64::from(commit);
            }
        }

        file.sync_all().map_err(|e| RestoreError::io(&tmp, e))?;
        drop(file);
        if self.integrity_check != IntegrityCheck::None {
            super::apply::integrity_check(&tmp, self.integrity_check, ltx::TxId(0)).map_err(
                |e| match e {
                    RestoreError::IntegrityCheck { mode, message, .. } => {
                        V03Error::Restore(RestoreError::IntegrityCheck {
                            mode,
                            txid: ltx::TxId(0),
                            message: format!(
                                "generation {} (a Litestream 0.3 backup): {message}",
                                self.plan.generation
                            ),
                        })
                    }
                    other => other.into(),
                },
            )?;
        }
        self.check_cancel()?;
        if self.overwrite {
            for sidecar in super::sidecars(&self.output) {
                match std::fs::remove_file(&sidecar) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(RestoreError::io(&sidecar, e).into()),
                }
            }
            std::fs::rename(&tmp, &self.output).map_err(|e| RestoreError::io(&self.output, e))?;
        } else {
            super::apply::move_no_clobber(&tmp, &self.output)?;
        }
        guard.armed = false;
        std::fs::set_permissions(
            &self.output,
            std::fs::Permissions::from_mode(0o666 & !super::apply::umask()),
        )
        .map_err(|e| RestoreError::io(&self.output, e))?;
        let dir = super::apply::parent_dir(&self.output);
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| RestoreError::io(&dir, e))?;
        Ok((page_size, pages))
    }

    /// Checks the WAL file of `index` frame by frame and copies its committed pages into `db`;
    /// returns the database size in pages at the last commit, or `None` without one.
    fn apply_wal(
        &self,
        index: u64,
        wal_path: &Path,
        db: &File,
        page_size: u32,
    ) -> Result<Option<u32>, V03Error> {
        let bad = |message: String| V03Error::Wal {
            generation: self.plan.generation.clone(),
            index,
            message,
        };
        let io = |e| V03Error::Restore(RestoreError::io(wal_path, e));
        let open = || -> Result<BufReader<File>, V03Error> {
            Ok(BufReader::with_capacity(
                BUF,
                File::open(wal_path).map_err(io)?,
            ))
        };
        let mut r = open()?;
        let mut hb = [0u8; WAL_HEADER_SIZE as usize];
        match read_up_to(&mut r, &mut hb).map_err(io)? {
            0 => return Ok(None),
            n if n < hb.len() => return Err(bad(format!("WAL header cut short ({n} bytes)"))),
            _ => {}
        }
        let header = WalHeader::parse(&hb).map_err(|e| bad(format!("invalid WAL header: {e}")))?;
        if header.page_size != page_size {
            return Err(bad(format!(
                "WAL page size {} differs from the snapshot's {page_size}",
                header.page_size
            )));
        }
        // Pass 1: find the last commit frame, checking every frame.
        let frame_size = WAL_FRAME_HEADER_SIZE as usize + page_size as usize;
        let mut frame = vec![0u8; frame_size];
        let mut sum = header.checksum;
        let mut n = 0u64;
        let mut committed = 0u64;
        let mut commit = 0u32;
        loop {
            let got = read_up_to(&mut r, &mut frame).map_err(io)?;
            if got == 0 {
                break;
            }
            if got < frame_size {
                return Err(bad(format!(
                    "frame {} cut short ({got} of {frame_size} bytes)",
                    n + 1
                )));
            }
            let (pgno, size, next) = check_frame(&header, sum, &frame).ok_or_else(|| {
                bad(format!(
                    "frame {} at WAL offset {} fails its salt or checksum check",
                    n + 1,
                    header.frame_offset(n)
                ))
            })?;
            let _ = pgno;
            sum = next;
            n += 1;
            if size != 0 {
                committed = n;
                commit = size;
            }
        }
        if committed < n {
            warn!(generation = %self.plan.generation, index = %format!("{index:08x}"), frames = n - committed, "uncommitted frames at the end of the WAL are not applied (as SQLite does)");
        }
        if committed == 0 {
            return Ok(None);
        }
        // Pass 2: copy the committed frames' pages.
        let mut r = open()?;
        std::io::copy(&mut (&mut r).take(WAL_HEADER_SIZE), &mut std::io::sink()).map_err(io)?;
        let db_err = |e| V03Error::Restore(RestoreError::io(&tmp_path(&self.output), e));
        for i in 0..committed {
            if i % 1024 == 0 {
                self.check_cancel()?;
            }
            r.read_exact(&mut frame).map_err(io)?;
            let pgno = be32(&frame, 0);
            let page = &frame[WAL_FRAME_HEADER_SIZE as usize..];
            db.write_all_at(page, byte_len(u64::from(pgno) - 1, page_size))
                .map_err(db_err)?;
        }
        db.set_len(byte_len(u64::from(commit), page_size))
            .map_err(db_err)?;
        debug!(index = %format!("{index:08x}"), frames = committed, commit, "applied WAL");
        Ok(Some(commit))
    }
}

/// Checks one frame against the header's salts and the running checksum, as SQLite's
/// `walDecodeFrame`; returns (pgno, commit size, checksum after it).
fn check_frame(
    header: &WalHeader,
    prev: (u32, u32),
    frame: &[u8],
) -> Option<(u32, u32, (u32, u32))> {
    let hdr = frame.get(..WAL_FRAME_HEADER_SIZE as usize)?;
    let page = frame.get(WAL_FRAME_HEADER_SIZE as usize..)?;
    let pgno = be32(hdr, 0);
    if pgno == 0 || be32(hdr, 8) != header.salt1 || be32(hdr, 12) != header.salt2 {
        return None;
    }
    let sum = wal_checksum(header.big_endian_checksums, prev, hdr.get(..8)?);
    let sum = wal_checksum(header.big_endian_checksums, sum, page);
    (sum == (be32(hdr, 16), be32(hdr, 20))).then_some((pgno, be32(hdr, 4), sum))
}

fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(s) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

/// The page size of the database at `path` (`len` bytes), after checking that it is one.
fn db_page_size(path: &Path, len: u64) -> Result<u32, String> {
    let mut h = [0u8; 100];
    if len < h.len() as u64 {
        return Err(format!(
            "not a SQLite database ({len} bytes after decompression)"
        ));
    }
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut h, 0))
        .map_err(|e| format!("reading the snapshot back: {e}"))?;
    if &h[..16] != SQLITE_MAGIC {
        return Err("not a SQLite database (no SQLite header after decompression)".to_string());
    }
    let ps = match u32::from(u16::from_be_bytes([h[16], h[17]])) {
        1 => 65536,
        n if (512..=32768).contains(&n) && n.is_power_of_two() => n,
        n => return Err(format!("invalid page size {n} in the SQLite header")),
    };
    // (`is_multiple_of` needs Rust 1.87; the workspace supports 1.85.)
    if Some(len % u64::from(ps)) != Some(0) {
        return Err(format!(
            "{len} bytes is not a whole number of {ps}-byte pages"
        ));
    }
    Ok(ps)
}

/// Reads until `buf` is full or end of input; returns the bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

enum CopyError {
    Read(std::io::Error),
    Write(std::io::Error),
}

/// Decompresses the LZ4 frame(s) of `input` into `out`; returns the bytes written.
fn copy_lz4(input: impl Read, out: &mut dyn Write) -> Result<u64, CopyError> {
    let mut dec = lz4_flex::frame::FrameDecoder::new(input);
    let mut buf = vec![0u8; BUF];
    let mut total = 0u64;
    loop {
        let n = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // lz4_flex reports a bad frame as `Other`: it is bad data all the same.
                return Err(CopyError::Read(if e.kind() == std::io::ErrorKind::Other {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                } else {
                    e
                }));
            }
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::UNIX_EPOCH;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn obj(key: &str, at: u64) -> ObjectInfo {
        ObjectInfo {
            key: key.to_string(),
            size: 10,
            modified: t(at),
        }
    }

    #[test]
    fn names_parse_with_offsets_past_4gib() {
        assert_eq!(parse_snapshot_name("00000000.snapshot.lz4"), Some(0));
        assert_eq!(parse_snapshot_name("0000001f.snapshot.lz4"), Some(31));
        assert_eq!(
            parse_wal_segment_name("00000002_000060b0.wal.lz4"),
            Some((2, 0x60b0))
        );
        // 9 and more hex digits: offsets past 4 GiB (Litestream 0.3 skipped these).
        assert_eq!(
            parse_wal_segment_name("00000000_100000000.wal.lz4"),
            Some((0, 0x1_0000_0000))
        );
        assert_eq!(
            parse_wal_segment_name("00000003_12345678a.wal.lz4"),
            Some((3, 0x1_2345_678a))
        );
        assert_eq!(
            parse_wal_segment_name("100000000_00000000.wal.lz4"),
            Some((0x1_0000_0000, 0))
        );
        for bad in [
            "0000000_00000000.wal.lz4",
            "00000000_0000000.wal.lz4",
            "00000000-00000000.wal.lz4",
            "00000000_00000000.wal",
            "00000000_0000000g.wal.lz4",
            "00000000_00000000000000000.wal.lz4",
            "00000000_00000000.wal.lz4.tmp",
        ] {
            assert_eq!(parse_wal_segment_name(bad), None, "{bad}");
        }
        assert_eq!(parse_snapshot_name("0000000.snapshot.lz4"), None);
        assert!(is_generation_id("07dc414e9e0543e0"));
        assert!(!is_generation_id("07dc414e9e0543e"));
    }

    #[test]
    fn classify_reads_both_wal_layouts_and_sorts() {
        let gens = classify(&[
            obj(
                "generations/aaaaaaaaaaaaaaaa/wal/00000000_100000000.wal.lz4",
                5,
            ),
            obj(
                "generations/aaaaaaaaaaaaaaaa/wal/00000000_00000000.wal.lz4",
                1,
            ),
            obj(
                "generations/aaaaaaaaaaaaaaaa/snapshots/00000000.snapshot.lz4",
                1,
            ),
            obj(
                "generations/aaaaaaaaaaaaaaaa/wal/00000001/00000000.wal.lz4",
                6,
            ),
            obj(
                "generations/aaaaaaaaaaaaaaaa/wal/00000000_00001000.wal.lz4.tmp",
                6,
            ),
            obj(
                "generations/not-a-generation/snapshots/00000000.snapshot.lz4",
                1,
            ),
            obj("ltx/0/0000000000000001-0000000000000001.ltx", 1),
        ]);
        assert_eq!(gens.len(), 1);
        let g = &gens[0];
        assert_eq!(g.snapshots.len(), 1);
        let pos: Vec<(u64, u64)> = g.segments.iter().map(|s| (s.index, s.offset)).collect();
        assert_eq!(pos, vec![(0, 0), (0, 0x1_0000_0000), (1, 0)]);
        assert_eq!(g.span(), Some((t(1), t(6))));
    }

    fn two_generations() -> Vec<Generation> {
        classify(&[
            // Old generation, times 0..10.
            obj(
                "generations/0000000000000001/snapshots/00000000.snapshot.lz4",
                0,
            ),
            obj(
                "generations/0000000000000001/wal/00000000_00000000.wal.lz4",
                0,
            ),
            obj(
                "generations/0000000000000001/wal/00000000_00001000.wal.lz4",
                5,
            ),
            obj(
                "generations/0000000000000001/wal/00000001_00000000.wal.lz4",
                10,
            ),
            // New generation, times 20..40, a second snapshot at index 2 (time 30).
            obj(
                "generations/0000000000000002/snapshots/00000000.snapshot.lz4",
                20,
            ),
            obj(
                "generations/0000000000000002/wal/00000000_00000000.wal.lz4",
                20,
            ),
            obj(
                "generations/0000000000000002/wal/00000001_00000000.wal.lz4",
                25,
            ),
            obj(
                "generations/0000000000000002/snapshots/00000002.snapshot.lz4",
                30,
            ),
            obj(
                "generations/0000000000000002/wal/00000002_00000000.wal.lz4",
                30,
            ),
            obj(
                "generations/0000000000000002/wal/00000002_00002000.wal.lz4",
                40,
            ),
        ])
    }

    fn positions(p: &Plan) -> Vec<(u64, u64)> {
        p.wal
            .iter()
            .flat_map(|(_, s)| s.iter().map(|s| (s.index, s.offset)))
            .collect()
    }

    #[test]
    fn plan_latest_takes_the_generation_updated_last_and_its_last_snapshot() {
        let gens = two_generations();
        let p = plan(&gens, None, None, "r").unwrap();
        assert_eq!(p.generation, "0000000000000002");
        assert_eq!(p.snapshot.index, 2);
        assert_eq!(positions(&p), vec![(2, 0), (2, 0x2000)]);
    }

    #[test]
    fn plan_by_timestamp_follows_0_3() {
        let gens = two_generations();
        // Inside the old generation: its snapshot, segments up to time 5.
        let p = plan(&gens, None, Some(t(7)), "r").unwrap();
        assert_eq!(p.generation, "0000000000000001");
        assert_eq!(positions(&p), vec![(0, 0), (0, 0x1000)]);
        // Exactly at a segment's time: it is included.
        let p = plan(&gens, None, Some(t(25)), "r").unwrap();
        assert_eq!(
            (p.generation.as_str(), p.snapshot.index),
            ("0000000000000002", 0)
        );
        assert_eq!(positions(&p), vec![(0, 0), (1, 0)]);
        // Between the generations: in neither span.
        let e = plan(&gens, None, Some(t(15)), "r").unwrap_err();
        assert!(matches!(e, V03Error::TimestampNotAvailable { .. }), "{e}");
        assert!(e.to_string().contains("no matching backups found"), "{e}");
        // After everything.
        assert!(plan(&gens, None, Some(t(41)), "r").is_err());
    }

    #[test]
    fn plan_with_generation_picks_it() {
        let gens = two_generations();
        let p = plan(&gens, Some("0000000000000001"), None, "r").unwrap();
        assert_eq!(positions(&p), vec![(0, 0), (0, 0x1000), (1, 0)]);
        let e = plan(&gens, Some("00000000000000ff"), None, "r").unwrap_err();
        assert!(
            e.to_string().contains("0000000000000001, 0000000000000002"),
            "{e}"
        );
        let e = plan(&[], None, None, "file:///r").unwrap_err();
        assert!(e.is_no_backups(), "{e}");
    }

    #[test]
    fn plan_refuses_gaps_in_the_wal() {
        let gens = classify(&[
            obj(
                "generations/0000000000000001/snapshots/00000000.snapshot.lz4",
                0,
            ),
            obj(
                "generations/0000000000000001/wal/00000000_00000000.wal.lz4",
                0,
            ),
            obj(
                "generations/0000000000000001/wal/00000001_00001000.wal.lz4",
                1,
            ),
        ]);
        let e = plan(&gens, None, None, "r").unwrap_err();
        assert!(e.to_string().contains("missing initial WAL segment"), "{e}");
        let gens = classify(&[
            obj(
                "generations/0000000000000001/snapshots/00000000.snapshot.lz4",
                0,
            ),
            obj(
                "generations/0000000000000001/wal/00000000_00000000.wal.lz4",
                0,
            ),
            obj(
                "generations/0000000000000001/wal/00000002_00000000.wal.lz4",
                1,
            ),
        ]);
        let e = plan(&gens, None, None, "r").unwrap_err();
        assert!(e.to_string().contains("missing WAL index"), "{e}");
        let gens = classify(&[obj(
            "generations/0000000000000001/wal/00000000_00000000.wal.lz4",
            0,
        )]);
        let e = plan(&gens, None, None, "r").unwrap_err();
        assert!(matches!(e, V03Error::NoSnapshot { .. }), "{e}");
    }
}
