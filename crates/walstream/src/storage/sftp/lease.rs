//! The lease on an SFTP replica, and the removal of stale upload temp files.
//!
//! SFTP version 3 has no conditional writes, so the lease's compare-and-swap runs under a lock
//! file, `<path>/.walstream/lease.lock`, that every walstream takes the same way:
//!
//! 1. The new lease goes to a temp file beside the lease (`.lease.<nonce>.tmp`), fsynced. Its
//!    mtime is the server's clock now.
//! 2. The lock is created with `SSH_FXF_CREAT | SSH_FXF_EXCL` (`O_EXCL` on the server), which
//!    fails while anyone else holds it, and holds the caller's nonce. A busy lock is polled for
//!    up to [`LOCK_WAIT`], then the call fails as transient (someone else is writing the lease:
//!    try again and see).
//! 3. Under the lock: read the lease, compare its version (length and hash of its bytes, as on a
//!    file replica) with the expected one; absent/present/changed is a
//!    [`StorageError::Conflict`]. Otherwise the temp file is renamed over the lease.
//! 4. The lock is removed, if it still holds this call's nonce.
//!
//! A lock left by a process killed inside the few milliseconds of step 3 is stale once it is
//! [`STALE_LOCK_AGE`] older than the temp file of step 1; both times are the server's, so hosts'
//! clocks do not matter. A stale lock is renamed away to a unique name first (only one taker can
//! rename a given file), checked to be the stale one, and removed.
//!
//! Limits, which the lease's other guards (its TTL and margin) must cover:
//! - A holder stalled inside step 3 for longer than [`STALE_LOCK_AGE`] (a hung connection) can
//!   have its lock broken, and two writers may then both compare and swap.
//! - Replacing a lease removes the old file just before the rename (SFTP v3 renames refuse to
//!   replace a file). A read in that gap that finds no lease but the lock present waits for the
//!   lock to go and reads again, so readers do not see the gap unless the lock is stale.
//! - Servers that ignore `SSH_FXF_EXCL` (OpenSSH honours it) give no mutual exclusion at all.
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ssh2::{OpenFlags, OpenType, RenameFlags, Sftp};

use super::{conn, is_missing, remote, Inner, OpError, OpResult, FILE_MODE, TEMP_SEQ};
use crate::storage::{upload_temp, LeaseObject, LeaseVersion, LEASE_KEY, SNAPSHOT_LEVEL};

/// How long a lease write waits for a busy lock before it fails as transient.
pub(super) const LOCK_WAIT: Duration = Duration::from_secs(5);
/// A lock this much older than the server's clock is a leftover of a killed process.
pub(super) const STALE_LOCK_AGE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
const LOCK_NAME: &str = "lease.lock";

/// A unique token for one lease write (pid, sequence, time).
pub(super) fn nonce() -> String {
    let seq = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{seq}-{nanos:x}", std::process::id())
}

/// What a lease write came to, short of an error.
pub(super) enum WriteOutcome {
    Written(LeaseVersion),
    /// The condition failed: why.
    Conflict(&'static str),
    /// Someone else held the lock for all of [`LOCK_WAIT`].
    Busy,
}

enum Lock {
    Acquired,
    /// Ours already: an earlier attempt of this call took it before its session broke.
    Retaken,
    Busy,
}

fn read_file(sftp: &Sftp, path: &str) -> OpResult<Option<Vec<u8>>> {
    let mut f = match sftp.open(Path::new(path)) {
        Ok(f) => f,
        Err(e) if is_missing(&e) => return Ok(None),
        Err(e) => return Err(OpError::Remote(e, "open lease", path.to_string())),
    };
    let mut data = Vec::new();
    f.read_to_end(&mut data)
        .map_err(|e| OpError::RemoteIo(e, "read lease", path.to_string()))?;
    Ok(Some(data))
}

fn mtime(sftp: &Sftp, path: &str) -> OpResult<Option<u64>> {
    match sftp.stat(Path::new(path)) {
        Ok(st) => Ok(Some(st.mtime.unwrap_or(0))),
        Err(e) if is_missing(&e) => Ok(None),
        Err(e) => Err(OpError::Remote(e, "stat", path.to_string())),
    }
}

impl Inner {
    fn lease_path(&self) -> String {
        self.settings.join(LEASE_KEY)
    }

    fn lease_lock_path(&self) -> (String, String) {
        let lease = self.lease_path();
        let dir = match lease.rsplit_once('/') {
            Some((d, _)) => d.to_string(),
            None => String::new(),
        };
        let lock = if dir.is_empty() {
            LOCK_NAME.to_string()
        } else {
            format!("{dir}/{LOCK_NAME}")
        };
        (dir, lock)
    }

    /// The lease, or `None`. A missing lease with the lock present may be a replacement in
    /// progress: wait for the lock to go (up to [`LOCK_WAIT`]) and read again.
    pub(super) fn lease_read(&self, sftp: &Sftp) -> OpResult<Option<LeaseObject>> {
        let path = self.lease_path();
        let (_, lock) = self.lease_lock_path();
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            if let Some(data) = read_file(sftp, &path)? {
                return Ok(Some(LeaseObject {
                    version: crate::storage::file::lease_version(&data),
                    data: Bytes::from(data),
                }));
            }
            if mtime(sftp, &lock)?.is_none() || Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// The compare-and-swap of the module docs. `nonce` is the same across the retries of one
    /// call, so that a retry after a broken session recognises its own lock.
    pub(super) fn lease_write(
        &self,
        sftp: &Sftp,
        data: &[u8],
        expected: Option<&LeaseVersion>,
        nonce: &str,
    ) -> OpResult<WriteOutcome> {
        let path = self.lease_path();
        let (dir, lock) = self.lease_lock_path();
        if !dir.is_empty() {
            self.ensure_dir(sftp, &dir)?;
        }
        let tmp_name = format!(".lease.{nonce}.tmp");
        let tmp = if dir.is_empty() {
            tmp_name
        } else {
            format!("{dir}/{tmp_name}")
        };
        let result = self.lease_write_via(sftp, data, expected, nonce, &path, &lock, &tmp);
        // Gone after a successful rename; otherwise ours to clean up.
        let _ = sftp.unlink(Path::new(&tmp));
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn lease_write_via(
        &self,
        sftp: &Sftp,
        data: &[u8],
        expected: Option<&LeaseVersion>,
        nonce: &str,
        path: &str,
        lock: &str,
        tmp: &str,
    ) -> OpResult<WriteOutcome> {
        let mut f = remote(
            sftp.open_mode(
                Path::new(tmp),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                FILE_MODE,
                OpenType::File,
            ),
            "create lease temp",
            tmp,
        )?;
        f.write_all(data)
            .map_err(|e| OpError::RemoteIo(e, "write lease temp", tmp.to_string()))?;
        let _ = f.fsync();
        remote(f.close(), "close lease temp", tmp)?;
        let now = mtime(sftp, tmp)?.unwrap_or(0);
        let retaken = match self.lock(sftp, lock, nonce, now)? {
            Lock::Busy => return Ok(WriteOutcome::Busy),
            Lock::Acquired => false,
            Lock::Retaken => true,
        };
        let result = (|| {
            let current = read_file(sftp, path)?.map(|d| crate::storage::file::lease_version(&d));
            let new = crate::storage::file::lease_version(data);
            if retaken && current.as_ref() == Some(&new) {
                // The earlier attempt got as far as the rename.
                return Ok(WriteOutcome::Written(new));
            }
            let refused = match (expected, &current) {
                (None, None) => None,
                (None, Some(_)) => Some("the lease exists already"),
                (Some(_), None) => Some("the lease is gone"),
                (Some(want), Some(cur)) if cur != want => {
                    Some("the lease was changed by someone else")
                }
                (Some(_), Some(_)) => None,
            };
            if let Some(why) = refused {
                return Ok(WriteOutcome::Conflict(why));
            }
            self.replace(sftp, tmp, path)?;
            Ok(WriteOutcome::Written(crate::storage::file::lease_version(
                data,
            )))
        })();
        self.unlock(sftp, lock, nonce);
        result
    }

    /// Takes the lock file, breaking a stale one; [`Lock::Busy`] after [`LOCK_WAIT`].
    fn lock(&self, sftp: &Sftp, lock: &str, nonce: &str, server_now: u64) -> OpResult<Lock> {
        let deadline = Instant::now() + LOCK_WAIT;
        let mut refused_without_lock = 0;
        loop {
            let created = sftp.open_mode(
                Path::new(lock),
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                FILE_MODE,
                OpenType::File,
            );
            let err = match created {
                Ok(mut f) => {
                    f.write_all(nonce.as_bytes())
                        .map_err(|e| OpError::RemoteIo(e, "write lease lock", lock.into()))?;
                    remote(f.close(), "close lease lock", lock)?;
                    return Ok(Lock::Acquired);
                }
                Err(e) if conn::session_broken(&e) => {
                    return Err(OpError::Remote(e, "create lease lock", lock.into()))
                }
                Err(e) => e,
            };
            // SFTP v3 has no "exists" status (OpenSSH answers a plain failure): look.
            let Some(holder) = read_file(sftp, lock)? else {
                // Removed just now by its holder, or the create failed for another reason
                // (permissions): try again, but not for ever.
                refused_without_lock += 1;
                if refused_without_lock >= 3 {
                    return Err(OpError::Remote(err, "create lease lock", lock.into()));
                }
                continue;
            };
            if holder == nonce.as_bytes() {
                // Ours, from an attempt whose session broke after the create.
                return Ok(Lock::Retaken);
            }
            if self.is_stale(sftp, lock, server_now)? {
                self.break_stale(sftp, lock, nonce, server_now)?;
                continue;
            }
            if Instant::now() >= deadline {
                return Ok(Lock::Busy);
            }
            std::thread::sleep(POLL);
        }
    }

    fn is_stale(&self, sftp: &Sftp, path: &str, server_now: u64) -> OpResult<bool> {
        Ok(mtime(sftp, path)?
            .is_some_and(|t| t.saturating_add(STALE_LOCK_AGE.as_secs()) < server_now))
    }

    /// Renames the stale lock away to a name of our own, so that of two processes breaking it
    /// only one succeeds; if what we renamed turns out fresh (someone broke the stale one and
    /// took the lock meanwhile), it goes back.
    fn break_stale(&self, sftp: &Sftp, lock: &str, nonce: &str, server_now: u64) -> OpResult<()> {
        let aside = format!("{lock}.{nonce}.stale");
        if sftp
            .rename(
                Path::new(lock),
                Path::new(&aside),
                Some(RenameFlags::ATOMIC),
            )
            .is_err()
        {
            // Gone already, or taken aside by another process.
            return Ok(());
        }
        if self.is_stale(sftp, &aside, server_now)? {
            tracing::warn!(
                lock = %self.location(lock),
                "removed a stale lease lock (a process died while writing the lease)"
            );
            let _ = sftp.unlink(Path::new(&aside));
        } else if let Err(e) = sftp.rename(
            Path::new(&aside),
            Path::new(lock),
            Some(RenameFlags::ATOMIC),
        ) {
            tracing::warn!(lock = %self.location(lock), error = %e,
                "could not put back a lease lock taken for stale");
        }
        Ok(())
    }

    /// Removes the lock if it is still ours.
    fn unlock(&self, sftp: &Sftp, lock: &str, nonce: &str) {
        match read_file(sftp, lock) {
            Ok(Some(holder)) if holder == nonce.as_bytes() => {
                if let Err(e) = sftp.unlink(Path::new(lock)) {
                    tracing::warn!(lock = %self.location(lock), error = %e,
                        "could not remove the lease lock; it goes stale in {STALE_LOCK_AGE:?}");
                }
            }
            Ok(_) => tracing::warn!(
                lock = %self.location(lock),
                "the lease lock was broken as stale while held"
            ),
            Err(_) => {}
        }
    }

    /// Removes upload temp files ([`upload_temp::is_temp_name`]) from the level directories,
    /// except those this process is writing; returns how many went.
    pub(super) fn remove_stale_uploads(&self, sftp: &Sftp) -> OpResult<usize> {
        let mut removed = 0;
        for level in 0..=SNAPSHOT_LEVEL {
            let dir = self.level_dir(level);
            let entries = match sftp.readdir(Path::new(&dir)) {
                Ok(e) => e,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(OpError::Remote(e, "readdir", dir)),
            };
            for (path, st) in entries {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    continue;
                };
                if !upload_temp::is_temp_name(name) || !st.is_file() {
                    continue;
                }
                let p = format!("{dir}/{name}");
                if upload_temp::is_in_flight(&self.in_flight_key(&p)) {
                    continue;
                }
                match sftp.unlink(Path::new(&p)) {
                    Ok(()) => {
                        tracing::info!(path = %self.location(&p), "removed a stale upload temp file");
                        removed += 1;
                    }
                    Err(e) if is_missing(&e) => {}
                    Err(e) => return Err(OpError::Remote(e, "remove stale upload", p)),
                }
            }
        }
        Ok(removed)
    }

    pub(super) fn in_flight_key(&self, tmp: &str) -> String {
        format!("sftp:{}", self.location(tmp))
    }
}
