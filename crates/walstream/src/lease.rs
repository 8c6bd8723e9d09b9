//! The two-writer guard: a lease object on the replica, beside the level directories
//! ([`LEASE_KEY`]), taken and renewed with conditional writes.
//!
//! Two walstream processes pointed at one replica path would interleave TXIDs of two databases
//! (Litestream 0.5 does not guard against this). So before a replicator reads the replica's
//! position it takes the lease: create-if-absent, or replace-if-unchanged of a lease that has
//! expired, was released, or is its own. Another live owner's lease makes it refuse
//! ([`LeaseError::Held`]). While running, [`Lease::run`] renews it every `renew_interval` (a
//! third of the TTL by default); writes go through [`LeasedStore`], which lets a write or delete
//! through only while the lease is valid by the local monotonic clock with a margin of a third
//! of the TTL. A renewal that loses the conditional write means someone else holds it now: the
//! replica is fenced for good ([`LeaseError::Fenced`]), and an error names the other owner.
//!
//! Identity: the owner id is a random token kept in the meta directory
//! (`walstream-lease-owner`), with the host and database path for messages. A process restarted
//! after a crash reads the same token, proves it is the same owner, and takes the lease back at
//! once. The file is `flock`ed while the process runs, so a second process on the same database
//! cannot borrow the identity.
//!
//! Expiry compares the holder's wall clock (it writes `expires_at`) with the taker's: clocks of
//! hosts sharing a replica must agree within the margin (10 s at the default 30 s TTL).
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use ltx::TxId;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::storage::{
    ByteStream, DynStore, LeaseObject, LeaseVersion, LtxFileInfo, ReplicaStore, StorageError,
    LEASE_KEY,
};

/// Default lease TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// The owner token's file name in the meta directory.
pub const OWNER_FILE: &str = "walstream-lease-owner";

/// How long a lease lasts and how often it is renewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    /// Time to live of each renewal.
    pub ttl: Duration,
    /// Time between renewals.
    pub renew_interval: Duration,
}

impl LeaseOptions {
    /// `ttl`, renewed every third of it.
    pub fn with_ttl(ttl: Duration) -> LeaseOptions {
        LeaseOptions {
            ttl,
            renew_interval: ttl / 3,
        }
    }
    /// Writes stop this long before the lease would run out by the local clock.
    pub fn margin(&self) -> Duration {
        self.ttl / 3
    }
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions::with_ttl(DEFAULT_TTL)
    }
}

/// Errors of the lease.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another live owner holds the lease.
    #[error(
        "replica {replica} is leased to {holder} until {until}: another walstream is replicating \
         to it. Stop that one, wait for its lease to expire, or set `lease: false` on this replica"
    )]
    Held {
        /// The replica.
        replica: String,
        /// Who holds it.
        holder: String,
        /// Its expiry, RFC 3339.
        until: String,
    },
    /// The lease was lost to someone else while running.
    #[error(
        "replica {replica}: the lease was taken over by {holder}; stopped writing to this replica"
    )]
    Fenced {
        /// The replica.
        replica: String,
        /// Who holds it now.
        holder: String,
    },
    /// The lease object does not parse.
    #[error(
        "replica {replica}: the lease object {LEASE_KEY} is unreadable ({message}); remove it if no \
         other walstream replicates here"
    )]
    Unreadable {
        /// The replica.
        replica: String,
        /// Why.
        message: String,
    },
    /// Same database, another live process.
    #[error(
        "{path}: locked by another walstream process replicating the same database; stop it first"
    )]
    OwnerLocked {
        /// The owner file.
        path: PathBuf,
    },
    /// The owner file could not be read or written.
    #[error("lease owner file {path}: {source}")]
    Owner {
        /// The owner file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The store failed.
    #[error("replica {replica}: lease: {source}")]
    Storage {
        /// The replica.
        replica: String,
        /// The cause.
        source: StorageError,
    },
    /// Taking the lease kept racing with someone else.
    #[error("replica {replica}: the lease kept changing while taking it; giving up")]
    Contended {
        /// The replica.
        replica: String,
    },
}

/// The lease object's contents (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The owner token (random, from the meta directory).
    pub owner: String,
    /// Host name of the holder.
    pub host: String,
    /// Database path of the holder.
    pub db: String,
    /// Process id of the holder.
    pub pid: u32,
    /// Incremented by each new owner or re-acquisition.
    pub generation: u64,
    /// Unix milliseconds when the lease runs out; 0 once released.
    pub expires_at_ms: u64,
}

impl LeaseRecord {
    fn holder(&self) -> String {
        format!(
            "{} (db {} on {}, pid {}, generation {})",
            self.owner, self.db, self.host, self.pid, self.generation
        )
    }
    fn expired_at(&self, now: SystemTime) -> bool {
        unix_ms(now) >= self.expires_at_ms
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// This process's identity as a lease owner. Holds the owner file's `flock` while alive.
#[derive(Debug)]
pub struct Owner {
    token: String,
    host: String,
    db: String,
    _lock: std::fs::File,
}

impl Owner {
    /// Loads the token from `<meta_dir>/walstream-lease-owner` (making a new one if missing)
    /// and locks the file for this process's lifetime.
    pub fn load(meta_dir: &Path, db: &Path) -> Result<Owner, LeaseError> {
        use std::io::{Read, Seek, Write};
        let path = meta_dir.join(OWNER_FILE);
        let err = |source| LeaseError::Owner {
            path: path.clone(),
            source,
        };
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(meta_dir)
            .map_err(err)?;
        let mut f =
            std::os::unix::fs::OpenOptionsExt::mode(&mut std::fs::OpenOptions::new(), 0o600)
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(err)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LeaseError::OwnerLocked { path: path.clone() })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
        }
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(err)?;
        let mut token = text.trim().to_string();
        if token.len() < 16 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
            token = random_token().map_err(err)?;
            f.set_len(0).map_err(err)?;
            f.rewind().map_err(err)?;
            f.write_all(format!("{token}\n").as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        Ok(Owner {
            token,
            host: hostname(),
            db: db.display().to_string(),
            _lock: f,
        })
    }

    /// The token.
    pub fn token(&self) -> &str {
        &self.token
    }
}

fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // truncates, and the last byte stays 0.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown-host".to_string();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// A held lease, shared by the writers (through [`LeasedStore`]) and the renewal task.
///
/// The lease costs nothing while the replica is idle: the renewal task renews only if something
/// was written since the last renewal, so after the last write it renews once more and then lets
/// the lease lapse. The next write takes it again first ([`Guard::before_write`]): a conditional
/// replace of the lease object against the version this process wrote last. If anyone else wrote
/// the lease object meanwhile, the replace fails, and the replica is fenced for good.
#[derive(Debug)]
pub struct Guard {
    replica: String,
    opts: LeaseOptions,
    lease: tokio::sync::Mutex<Option<Lease>>,
    state: Mutex<GuardState>,
    activity: tokio::sync::Notify,
}

#[derive(Debug)]
struct GuardState {
    valid_until: Instant,
    last_renewal: Instant,
    wrote_since_renewal: bool,
    fenced_by: Option<String>,
    failing: bool,
}

impl Guard {
    /// A guard over `lease`, valid until `valid_until` by the local monotonic clock.
    pub fn new(lease: Lease, valid_until: Instant) -> Arc<Guard> {
        Arc::new(Guard {
            replica: lease.store.describe(),
            opts: lease.opts,
            lease: tokio::sync::Mutex::new(Some(lease)),
            state: Mutex::new(GuardState {
                valid_until,
                last_renewal: Instant::now(),
                wrote_since_renewal: false,
                fenced_by: None,
                failing: false,
            }),
            activity: tokio::sync::Notify::new(),
        })
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut GuardState) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut s| f(&mut s))
    }

    fn fence(&self, holder: String) {
        self.with_state(|s| s.fenced_by = Some(holder));
    }

    /// The other owner, once fenced.
    pub fn fenced_by(&self) -> Option<String> {
        self.with_state(|s| s.fenced_by.clone()).flatten()
    }

    fn fenced_error(&self, key: &str, holder: &str) -> StorageError {
        StorageError::Permanent {
            backend: "lease",
            key: key.to_string(),
            message: format!(
                "fenced: replica {} is leased to {holder}; not writing",
                self.replica
            ),
        }
    }

    /// Whether writes may go now without taking the lease again.
    fn valid(&self) -> Result<bool, String> {
        let margin = self.opts.margin();
        self.with_state(|s| match &s.fenced_by {
            Some(h) => Err(h.clone()),
            None => Ok(Instant::now() + margin < s.valid_until),
        })
        .unwrap_or(Ok(false))
    }

    /// Called before each write or delete: `Ok` once the lease is held. A lapsed lease is taken
    /// again here with a conditional write. Lost to another owner: a permanent error (fenced);
    /// the store failing: a transient one, so the caller retries.
    pub async fn before_write(&self, key: &str) -> Result<(), StorageError> {
        match self.valid() {
            Err(holder) => return Err(self.fenced_error(key, &holder)),
            Ok(true) => {
                self.with_state(|s| s.wrote_since_renewal = true);
                return Ok(());
            }
            Ok(false) => {}
        }
        let mut lease = self.lease.lock().await;
        // Another writer may have taken it while this one waited for the lock.
        match self.valid() {
            Err(holder) => return Err(self.fenced_error(key, &holder)),
            Ok(true) => {
                self.with_state(|s| s.wrote_since_renewal = true);
                return Ok(());
            }
            Ok(false) => {}
        }
        let Some(l) = lease.as_mut() else {
            return Err(self.fenced_error(key, "nobody (released)"));
        };
        match self.renew_locked(l).await {
            Ok(()) => {
                debug!(replica = %self.replica, "lease taken again after lapsing");
                self.with_state(|s| s.wrote_since_renewal = true);
                self.activity.notify_one();
                Ok(())
            }
            Err(LeaseError::Fenced { holder, .. }) => Err(self.fenced_error(key, &holder)),
            Err(e) => Err(StorageError::Transient {
                backend: "lease",
                key: key.to_string(),
                message: format!("taking the lease on {} again: {e}", self.replica),
            }),
        }
    }

    async fn renew_locked(&self, lease: &mut Lease) -> Result<(), LeaseError> {
        let sent = Instant::now();
        match lease.renew().await {
            Ok(()) => {
                self.with_state(|s| {
                    s.valid_until = sent + self.opts.ttl;
                    s.last_renewal = sent;
                });
                Ok(())
            }
            Err(LeaseError::Fenced { replica, holder }) => {
                self.fence(holder.clone());
                error!(replica = %replica, holder = %holder, "lease lost: another walstream took over this replica; stopped writing to it");
                Err(LeaseError::Fenced { replica, holder })
            }
            Err(e) => Err(e),
        }
    }

    /// Renews while writes happen, lets the lease lapse when they stop, until `cancel` or the
    /// lease is lost. Transient failures are retried every second (writes pause once the lease
    /// runs short).
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let next = self
                .with_state(|s| s.last_renewal + self.opts.renew_interval)
                .unwrap_or_else(Instant::now);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
            let wrote = self
                .with_state(|s| std::mem::take(&mut s.wrote_since_renewal))
                .unwrap_or(false);
            if self.fenced_by().is_some() {
                return;
            }
            if !wrote {
                // Idle: no request until the next write takes the lease again.
                debug!(replica = %self.replica, "no writes since the last renewal; letting the lease lapse");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = self.activity.notified() => {}
                }
                continue;
            }
            let mut lease = self.lease.lock().await;
            let Some(l) = lease.as_mut() else { return };
            match self.renew_locked(l).await {
                Ok(()) => {
                    if self.with_state(|s| std::mem::take(&mut s.failing)) == Some(true) {
                        info!(replica = %self.replica, "lease renewed again");
                    }
                }
                Err(LeaseError::Fenced { .. }) => return,
                Err(e) => {
                    if self.with_state(|s| !std::mem::replace(&mut s.failing, true)) == Some(true) {
                        warn!(replica = %self.replica, "lease renewal failed (writes pause if it runs out): {e}");
                    }
                    // Still owed: try again in a second.
                    self.with_state(|s| {
                        s.wrote_since_renewal = true;
                        s.last_renewal = Instant::now() + Duration::from_secs(1)
                            - self.opts.renew_interval.max(Duration::from_secs(1));
                    });
                }
            }
        }
    }

    /// Gives the lease back (unless lost), so the next owner need not wait for the TTL.
    pub async fn release(&self) {
        let Some(lease) = self.lease.lock().await.take() else {
            return;
        };
        if self.fenced_by().is_some() {
            return;
        }
        self.fence("nobody (released)".to_string());
        if let Err(e) = lease.release().await {
            warn!(replica = %self.replica, "releasing the lease failed (it expires by itself): {e}");
        }
    }

    /// The store wrapped so that writes and deletes need the lease.
    pub fn leased_store(self: &Arc<Self>, inner: DynStore) -> DynStore {
        Arc::new(LeasedStore::new(inner, self.clone()))
    }
}

impl LeaseError {
    /// Whether trying again later may succeed: the store failed transiently, or the lease
    /// object kept changing. `Held` is not: another process owns the replica.
    pub fn is_retryable(&self) -> bool {
        match self {
            LeaseError::Storage { source, .. } => source.is_retryable(),
            LeaseError::Contended { .. } => true,
            _ => false,
        }
    }
}

/// A held lease: renew it with [`Lease::renew`], give it back with [`Lease::release`]; a
/// running replicator shares it through a [`Guard`].
#[derive(Debug)]
pub struct Lease {
    store: DynStore,
    owner: Owner,
    opts: LeaseOptions,
    record: LeaseRecord,
    version: LeaseVersion,
}

impl Lease {
    /// Takes the lease on `store` for `owner`, or says who holds it.
    pub async fn acquire(
        store: DynStore,
        owner: Owner,
        opts: LeaseOptions,
    ) -> Result<Lease, LeaseError> {
        let replica = store.describe();
        let serr = |source| LeaseError::Storage {
            replica: replica.clone(),
            source,
        };
        for _ in 0..5 {
            let current = store.read_lease().await.map_err(serr)?;
            let now = SystemTime::now();
            let (generation, expected) = match &current {
                None => (1, None),
                Some(obj) => {
                    let rec = parse(&replica, obj)?;
                    if rec.owner != owner.token && !rec.expired_at(now) {
                        return Err(LeaseError::Held {
                            replica,
                            holder: rec.holder(),
                            until: rfc3339_ms(rec.expires_at_ms),
                        });
                    }
                    if rec.owner == owner.token && !rec.expired_at(now) {
                        info!(replica = %replica, owner = %owner.token, "lease: taking back our own unexpired lease (restart after a crash)");
                    } else if rec.expires_at_ms > 0 && rec.owner != owner.token {
                        warn!(replica = %replica, previous = %rec.holder(), "lease: taking over an expired lease");
                    }
                    (rec.generation.saturating_add(1), Some(obj.version.clone()))
                }
            };
            let record = LeaseRecord {
                owner: owner.token.clone(),
                host: owner.host.clone(),
                db: owner.db.clone(),
                pid: std::process::id(),
                generation,
                expires_at_ms: unix_ms(now + opts.ttl),
            };
            match store.write_lease(encode(&record), expected.as_ref()).await {
                Ok(version) => {
                    info!(replica = %replica, generation, ttl = ?opts.ttl, "lease acquired");
                    return Ok(Lease {
                        store,
                        owner,
                        opts,
                        record,
                        version,
                    });
                }
                Err(e) if e.is_conflict() => {
                    debug!(replica = %replica, "lease: raced while taking it; reading again");
                    continue;
                }
                Err(e) => return Err(serr(e)),
            }
        }
        Err(LeaseError::Contended { replica })
    }

    /// Who holds it (this process).
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// One renewal: replace our record if unchanged.
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        let mut record = self.record.clone();
        record.expires_at_ms = unix_ms(SystemTime::now() + self.opts.ttl);
        self.replace(record).await
    }

    /// Gives the lease back (expiry 0), so the next owner need not wait for the TTL.
    pub async fn release(mut self) -> Result<(), LeaseError> {
        let mut record = self.record.clone();
        record.expires_at_ms = 0;
        self.replace(record).await?;
        info!(replica = %self.store.describe(), "lease released");
        Ok(())
    }

    /// Conditional replace of our record. A conflict is re-read: if the object is still ours
    /// (an earlier write landed although it reported an error) the version is adopted and the
    /// write repeated; otherwise the lease is lost.
    async fn replace(&mut self, record: LeaseRecord) -> Result<(), LeaseError> {
        let replica = self.store.describe();
        let serr = |source| LeaseError::Storage {
            replica: replica.clone(),
            source,
        };
        for _ in 0..3 {
            match self
                .store
                .write_lease(encode(&record), Some(&self.version))
                .await
            {
                Ok(v) => {
                    self.version = v;
                    self.record = record;
                    return Ok(());
                }
                Err(e) if e.is_conflict() => {
                    let Some(obj) = self.store.read_lease().await.map_err(serr)? else {
                        return Err(LeaseError::Fenced {
                            replica,
                            holder: "nobody (the lease object was deleted)".to_string(),
                        });
                    };
                    let cur = parse(&replica, &obj)?;
                    if cur.owner == self.record.owner && cur.generation == self.record.generation {
                        self.version = obj.version;
                        continue;
                    }
                    return Err(LeaseError::Fenced {
                        replica,
                        holder: cur.holder(),
                    });
                }
                Err(e) => return Err(serr(e)),
            }
        }
        Err(LeaseError::Contended { replica })
    }
}

/// The renewal task of a running replicator's lease.
#[derive(Debug)]
pub struct LeaseTask {
    guard: Arc<Guard>,
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
}

impl LeaseTask {
    /// The guard writers check.
    pub fn guard(&self) -> &Arc<Guard> {
        &self.guard
    }

    /// Stops renewing and releases the lease (unless it was lost). Call after the last write.
    pub async fn finish(self) {
        self.cancel.cancel();
        if let Err(e) = self.handle.await {
            warn!("lease task failed: {e}");
        }
        self.guard.release().await;
    }
}

/// Takes the lease for replicating `db` (meta directory `meta_dir`) to `store` and starts
/// renewing it: returns the store to write through and the renewal task. With `opts` `None`
/// (`lease: false`), or a store without conditional writes (said in a warning), the store is
/// returned as it is.
pub async fn start(
    store: DynStore,
    db: &Path,
    meta_dir: &Path,
    opts: Option<LeaseOptions>,
) -> Result<(DynStore, Option<LeaseTask>), LeaseError> {
    let Some(opts) = opts else {
        debug!(replica = %store.describe(), "lease: off (`lease: false`)");
        return Ok((store, None));
    };
    if !store.supports_lease() {
        warn!(replica = %store.describe(), "the {} store has no conditional writes: no lease guards this replica against a second walstream", store.kind());
        return Ok((store, None));
    }
    // A start that fails leaves nothing behind: the meta directory goes again if it was made
    // here only for the owner token.
    let existed = meta_dir.exists();
    let undo = || {
        if !existed {
            let _ = std::fs::remove_dir_all(meta_dir);
        }
    };
    let owner = Owner::load(meta_dir, db).inspect_err(|_| undo())?;
    let sent = Instant::now();
    let lease = Lease::acquire(store.clone(), owner, opts)
        .await
        .inspect_err(|_| undo())?;
    let guard = Guard::new(lease, sent + opts.ttl);
    let leased = guard.leased_store(store);
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(guard.clone().run(cancel.clone()));
    Ok((
        leased,
        Some(LeaseTask {
            guard,
            cancel,
            handle,
        }),
    ))
}

fn encode(record: &LeaseRecord) -> Bytes {
    // Serializing a struct of strings and integers cannot fail.
    Bytes::from(serde_json::to_vec_pretty(record).unwrap_or_default())
}

fn parse(replica: &str, obj: &LeaseObject) -> Result<LeaseRecord, LeaseError> {
    serde_json::from_slice(&obj.data).map_err(|e| LeaseError::Unreadable {
        replica: replica.to_string(),
        message: e.to_string(),
    })
}

/// A store whose writes and deletes go through only while the lease [`Guard`] allows (taking
/// a lapsed lease again first).
#[derive(Debug)]
pub struct LeasedStore {
    inner: DynStore,
    guard: Arc<Guard>,
}

impl LeasedStore {
    /// Wraps `inner`.
    pub fn new(inner: DynStore, guard: Arc<Guard>) -> LeasedStore {
        LeasedStore { inner, guard }
    }
}

#[async_trait]
impl ReplicaStore for LeasedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        self.inner.ltx_files(level).await
    }
    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        self.inner.open_ltx_file(level, min, max, offset).await
    }
    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        self.guard
            .before_write(&format!("{level}/{}", ltx::file_name(min, max)))
            .await?;
        self.inner
            .write_ltx_file(level, min, max, src, created_at)
            .await
    }
    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError> {
        if let Some(f) = files.first() {
            self.guard
                .before_write(&format!("{}/{}", f.level, f.file_name()))
                .await?;
        }
        self.inner.delete_ltx_files(files).await
    }
    fn encryption(&self) -> Option<std::sync::Arc<crate::storage::encrypted::Encryption>> {
        self.inner.encryption()
    }
    fn supports_lease(&self) -> bool {
        self.inner.supports_lease()
    }
    async fn read_lease(&self) -> Result<Option<LeaseObject>, StorageError> {
        self.inner.read_lease().await
    }
    async fn write_lease(
        &self,
        data: Bytes,
        expected: Option<&LeaseVersion>,
    ) -> Result<LeaseVersion, StorageError> {
        self.inner.write_lease(data, expected).await
    }
    async fn remove_stale_uploads(&self) -> Result<usize, StorageError> {
        // A delete like any other: only while the lease is held.
        self.guard.before_write("stale uploads").await?;
        self.inner.remove_stale_uploads().await
    }
    async fn list_objects(
        &self,
        prefix: &str,
    ) -> Result<Vec<crate::storage::ObjectInfo>, StorageError> {
        self.inner.list_objects(prefix).await
    }
    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        self.inner.open_object(key, offset).await
    }
    fn ltx_layout(&self) -> crate::storage::LtxLayout {
        self.inner.ltx_layout()
    }
    async fn list_databases(&self, recursive: bool) -> Result<Vec<String>, StorageError> {
        self.inner.list_databases(recursive).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::storage::contract;
    use crate::storage::file::FileStore;

    fn file_store(dir: &Path) -> DynStore {
        Arc::new(FileStore::new(dir.join("replica")))
    }

    fn owner(dir: &Path, name: &str) -> Owner {
        Owner::load(&dir.join(format!("meta-{name}")), Path::new(name)).unwrap()
    }

    #[tokio::test]
    async fn lease_second_owner_refused_naming_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path());
        let a = Lease::acquire(
            store.clone(),
            owner(dir.path(), "a"),
            LeaseOptions::default(),
        )
        .await
        .unwrap();
        let err = Lease::acquire(
            store.clone(),
            owner(dir.path(), "b"),
            LeaseOptions::default(),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, LeaseError::Held { .. }), "{msg}");
        assert!(
            msg.contains(&store.describe())
                && msg.contains(a.owner.token())
                && msg.contains("db a"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn lease_lapsed_is_taken_again_then_expired_taken_over_and_old_owner_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path());
        let opts = LeaseOptions::with_ttl(Duration::from_millis(300));
        let a = Lease::acquire(store.clone(), owner(dir.path(), "a"), opts)
            .await
            .unwrap();
        let guard_a = Guard::new(a, Instant::now() + opts.ttl);
        let leased_a = guard_a.leased_store(store.clone());
        let mut src = contract::Sources::new();
        let f = src.file(b"a");
        leased_a
            .write_ltx_file(0, TxId(1), TxId(1), &f, SystemTime::now())
            .await
            .unwrap();
        let version_before = store.read_lease().await.unwrap().unwrap().version;
        tokio::time::sleep(Duration::from_millis(350)).await;
        // Lapsed, nobody else took it: the write takes it again (one conditional write).
        leased_a
            .write_ltx_file(0, TxId(2), TxId(2), &f, SystemTime::now())
            .await
            .unwrap();
        let version_after = store.read_lease().await.unwrap().unwrap().version;
        assert_ne!(
            version_before, version_after,
            "the lease was not written again"
        );
        tokio::time::sleep(Duration::from_millis(350)).await;
        // Expired: another owner takes it over; a's next write is fenced and lands nothing.
        let b = Lease::acquire(store.clone(), owner(dir.path(), "b"), opts)
            .await
            .unwrap();
        assert_eq!(b.record.generation, 2);
        let fenced = leased_a
            .write_ltx_file(0, TxId(3), TxId(3), &f, SystemTime::now())
            .await
            .unwrap_err();
        assert!(
            !fenced.is_retryable() && fenced.to_string().contains("fenced"),
            "{fenced}"
        );
        assert!(
            fenced.to_string().contains(b.owner.token()),
            "fenced error should name the holder: {fenced}"
        );
        assert_eq!(
            guard_a.fenced_by().map(|h| h.contains(b.owner.token())),
            Some(true)
        );
        assert_eq!(store.ltx_files(0).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn lease_idle_makes_no_request_after_one_last_renewal() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path());
        let opts = LeaseOptions::with_ttl(Duration::from_millis(300));
        let lease = Lease::acquire(store.clone(), owner(dir.path(), "a"), opts)
            .await
            .unwrap();
        let guard = Guard::new(lease, Instant::now() + opts.ttl);
        let leased = guard.leased_store(store.clone());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(guard.clone().run(cancel.clone()));
        let mut src = contract::Sources::new();
        let f = src.file(b"a");
        leased
            .write_ltx_file(0, TxId(1), TxId(1), &f, SystemTime::now())
            .await
            .unwrap();
        // One renewal owed by the write, then quiet.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let after_owed = store.read_lease().await.unwrap().unwrap().version;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            store.read_lease().await.unwrap().unwrap().version,
            after_owed,
            "an idle lease kept being renewed"
        );
        cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn lease_same_owner_restart_takes_back_at_once_and_release_frees() {
        let dir = tempfile::tempdir().unwrap();
        let store = file_store(dir.path());
        let a = Lease::acquire(
            store.clone(),
            owner(dir.path(), "a"),
            LeaseOptions::default(),
        )
        .await
        .unwrap();
        let token = a.owner.token().to_string();
        // A crash: the process is gone without releasing (the flock goes with it).
        drop(a);
        let again = Lease::acquire(
            store.clone(),
            owner(dir.path(), "a"),
            LeaseOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(again.owner.token(), token);
        assert_eq!(again.record.generation, 2);
        again.release().await.unwrap();
        let b = Lease::acquire(
            store.clone(),
            owner(dir.path(), "b"),
            LeaseOptions::default(),
        )
        .await
        .unwrap();
        assert_eq!(b.record.generation, 3);
    }

    #[tokio::test]
    async fn lease_owner_file_locked_by_live_process() {
        let dir = tempfile::tempdir().unwrap();
        let _a = owner(dir.path(), "a");
        let err = Owner::load(&dir.path().join("meta-a"), Path::new("a")).unwrap_err();
        assert!(matches!(err, LeaseError::OwnerLocked { .. }), "{err}");
    }

    #[tokio::test]
    async fn leased_store_passes_contract_listing_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let meta = dir.path().join("meta");
        let owner = Owner::load(&meta, Path::new("db")).unwrap();
        let lease = Lease::acquire(file_store(&meta), owner, LeaseOptions::default())
            .await
            .unwrap();
        let guard = Guard::new(lease, Instant::now() + Duration::from_secs(3600));
        let base = dir.path().join("replica");
        contract::run_listing(guard.leased_store(file_store(dir.path())), |rel| {
            guard.leased_store(Arc::new(FileStore::new(base.join(rel))))
        })
        .await;
    }

    #[tokio::test]
    async fn leased_store_passes_contract_while_held() {
        let mut dirs = Vec::new();
        contract::run_all(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = file_store(dir.path());
            let meta = dir.path().join("meta");
            dirs.push(dir);
            async move {
                // The lease lives on a store of its own: the suite checks the lease object of
                // the store under test from scratch.
                let lease_store = file_store(&meta);
                let owner = Owner::load(&meta, Path::new("db")).unwrap();
                let lease = Lease::acquire(lease_store, owner, LeaseOptions::default())
                    .await
                    .unwrap();
                let guard = Guard::new(lease, Instant::now() + Duration::from_secs(3600));
                guard.leased_store(store)
            }
        })
        .await;
    }
}
