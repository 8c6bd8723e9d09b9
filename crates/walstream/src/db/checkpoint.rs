//! The checkpoint policy: PASSIVE checkpoints that restart the WAL, the emergency TRUNCATE, and
//! stepping aside for an app's blocking checkpoint.
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{Db, DbError};
use crate::sqlite::conn::CheckpointMode;
use crate::sqlite::locks::ShmProbe;
use crate::sqlite::wal_reader::{WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE};

impl Db {
    /// Whether another process is running a blocking checkpoint (FULL, RESTART or TRUNCATE: it
    /// holds the checkpointer and writer locks) that walstream's guard may be holding up: the
    /// cue to call [`Db::yield_to_app_checkpoint`]. Two `F_GETLK` calls on the `-shm` probe;
    /// opens nothing, and is `false` while the database is closed.
    pub fn has_blocking_checkpointer(&self) -> bool {
        self.conn.is_some()
            && self
                .probe
                .as_ref()
                .is_some_and(|p| p.blocking_checkpointer().is_some())
    }

    /// If another process is running a blocking checkpoint (it holds the write and checkpoint
    /// locks) and is waiting for our guard: copy what is committed (nobody can commit meanwhile),
    /// let the guard go, wait until the checkpoint is over, and take the guard back. Returns
    /// whether it stepped aside. Does nothing while the database is closed ([`Db::is_open`]).
    pub fn yield_to_app_checkpoint(&mut self) -> Result<bool, DbError> {
        if self.conn.is_none() {
            return Ok(false);
        }
        let Some(probe) = &self.probe else {
            self.probe = ShmProbe::open(&self.path);
            return Ok(false);
        };
        let Some(pid) = probe.blocking_checkpointer() else {
            return Ok(false);
        };
        debug!(db = %self.path.display(), pid, "app checkpoint waiting; copying the WAL tail and stepping aside");
        self.sync()?;
        // Re-check: the checkpointer still holds the write lock, so nothing was committed after
        // the scan above.
        let still = self.probe.as_ref().and_then(|p| p.blocking_checkpointer()) == Some(pid);
        if !still {
            return Ok(false);
        }
        // The checkpointer's write lock has been held since before that scan.
        self.conn().release_guard();
        self.guard.released_under_write_lock();
        self.foreign_checkpoint_at = Some(Instant::now());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let busy = self
                .probe
                .as_ref()
                .map(|p| p.checkpoint_in_progress())
                .unwrap_or(false);
            if !busy {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        self.renew_guard()?;
        Ok(true)
    }

    /// Checkpoint policy, run after syncs: PASSIVE at `min-checkpoint-page-count` WAL pages or
    /// every `checkpoint-interval` if anything was synced; TRUNCATE plus a snapshot at
    /// `truncate-page-n`.
    pub fn maybe_checkpoint(&mut self) -> Result<(), DbError> {
        if self.conn.is_none() || self.page_size == 0 {
            return Ok(());
        }
        let frame = WAL_FRAME_HEADER_SIZE + self.page_size as u64;
        // The file only shrinks on TRUNCATE: its size is the disk the WAL takes.
        let wal_len = std::fs::metadata(&self.wal_path)
            .map(|m| m.len())
            .unwrap_or(0);
        let file_frames = wal_len.saturating_sub(WAL_HEADER_SIZE) / frame;
        if file_frames >= self.opts.truncate_page_n {
            return self.emergency_truncate(file_frames);
        }
        // Frames in use: the current generation up to the replicated position (after a restart
        // the file keeps its size, but its old frames are dead).
        let live = self.live_frames(frame);
        // SQLite refuses a checkpoint, busy handler or not, while another connection runs one,
        // so each checkpoint of ours can make an app's explicit checkpoint fail. When the app
        // checkpoints the WAL itself, walstream stays out of its way until the WAL is far past
        // the threshold.
        let app_manages = self.foreign_checkpoint_at.is_some_and(|t| {
            t.elapsed() < self.opts.checkpoint_interval.max(Duration::from_secs(1))
        });
        let threshold = if app_manages {
            self.opts.min_checkpoint_page_count.saturating_mul(8)
        } else {
            self.opts.min_checkpoint_page_count
        };
        let interval_due = !app_manages
            && self.synced_since_checkpoint
            && self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval;
        if live >= threshold || interval_due {
            if self
                .probe
                .as_ref()
                .is_some_and(|p| p.checkpoint_in_progress())
            {
                return Ok(());
            }
            self.checkpoint_passive()?;
        }
        Ok(())
    }

    /// Whether the WAL-index counts at least `min-checkpoint-page-count` committed frames: a
    /// sync now lets the checkpoint after it keep the WAL bounded, so commits are not held back
    /// for coalescing. Reads 96 bytes of the `-shm`; `false` while cold.
    pub fn wal_at_checkpoint_threshold(&self) -> bool {
        self.probe
            .as_ref()
            .and_then(|p| p.committed_frames())
            .is_some_and(|(_, _, mx)| u64::from(mx) >= self.opts.min_checkpoint_page_count)
    }

    pub(super) fn live_frames(&self, frame: u64) -> u64 {
        let Some(pos) = self.pos else { return 0 };
        let Ok(Some((_, Some(h)))) = self.open_wal() else {
            return 0;
        };
        if (h.salt1, h.salt2) != pos.salts {
            return 0;
        }
        pos.offset.saturating_sub(WAL_HEADER_SIZE) / frame
    }

    /// PASSIVE checkpoint with the guard at the newest snapshot (so it copies everything), then,
    /// holding the write lock so nobody commits, a scan to the end, the guard let go, and one
    /// write to `_litestream_seq` so the WAL restarts from its beginning.
    pub fn checkpoint_passive(&mut self) -> Result<(), DbError> {
        self.ensure_open()?;
        self.sync()?;
        let started = Instant::now();
        let r = self.conn().checkpoint(CheckpointMode::Passive);
        crate::metrics::db::checkpoint(&self.path, "PASSIVE", started, r.is_ok());
        let r = r?;
        crate::failpoint::hit("checkpoint.after_passive");
        debug!(db = %self.path.display(), busy = r.busy, log = r.log, checkpointed = r.checkpointed, "PASSIVE checkpoint");
        self.last_checkpoint = Instant::now();
        self.synced_since_checkpoint = false;
        if r.busy != 0 || r.log != r.checkpointed {
            return Ok(());
        }
        // Restart the WAL. The spare connection takes the write lock first.
        let locked = self.conn().begin_immediate_spare();
        if let Err(e) = locked {
            debug!(error = %e, "could not take the write lock to restart the WAL");
            return Ok(());
        }
        let inner = (|| -> Result<(), DbError> {
            self.sync_inner()?;
            // Our own write lock has been held since before that scan.
            self.conn().release_guard_keep_writer();
            self.guard.released_under_write_lock();
            self.own_restart = true;
            self.conn().bump_seq_in_writer()?;
            Ok(())
        })();
        let commit = self.conn().commit_writer();
        inner?;
        commit?;
        crate::failpoint::hit("checkpoint.after_restart");
        self.renew_guard()?;
        Ok(())
    }

    pub(super) fn emergency_truncate(&mut self, frames: u64) -> Result<(), DbError> {
        warn!(db = %self.path.display(), frames, limit = self.opts.truncate_page_n, "WAL over truncate-page-n; emergency TRUNCATE checkpoint");
        self.sync()?;
        self.conn().release_guard();
        self.guard.released();
        let started = Instant::now();
        let r = self.conn().checkpoint(CheckpointMode::Truncate);
        crate::metrics::db::checkpoint(&self.path, "TRUNCATE", started, r.is_ok());
        crate::failpoint::hit("checkpoint.after_truncate");
        self.last_checkpoint = Instant::now();
        self.renew_guard()?;
        let r = r?;
        debug!(busy = r.busy, "TRUNCATE checkpoint");
        self.force_snapshot = Some("after emergency TRUNCATE checkpoint");
        self.sync()?;
        Ok(())
    }
}
