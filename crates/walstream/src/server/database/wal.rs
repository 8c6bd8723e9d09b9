//! The WAL task of one database: syncs on file events, holds commits while an upload is in
//! flight, probes for app checkpoints while warm, and goes cold when quiet (see the parent
//! module for warm and cold).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{backlog, Ctx};
use crate::db::DbError;

/// The WAL side: sync on events, probe for app checkpoints while warm, go cold when quiet.
pub(super) async fn wal_task(
    ctx: Arc<Ctx>,
    wrote: watch::Sender<u64>,
    mut ready: watch::Receiver<bool>,
) {
    // Wait for the replica's position (or its first failure) before the first sync, so that a
    // fresh meta directory numbers its files after the replica's. The uploader always answers
    // (connected, failed once, failed for good, or shut down while the store was away).
    while !*ready.borrow_and_update() {
        if ready.changed().await.is_err() {
            break;
        }
    }
    let opts = ctx.shared.opts.clone();
    let monitor = {
        let db = ctx.db.lock().unwrap_or_else(|e| e.into_inner());
        db.options().monitor_interval
    };
    let mut warm = false;
    let mut need = true;
    let mut last_event = Instant::now();
    let mut last_sync = Instant::now();
    let mut next_probe = Instant::now();
    let mut fast_until = Instant::now();
    let mut backoff_until: Option<Instant> = None;
    let mut err_delay = Duration::from_millis(100);
    let mut publish_wait = Duration::from_millis(1);
    let mut publish_idle = 0u32;
    let mut last_err: Option<String> = None;
    let mut polled: Option<(u64, std::time::SystemTime)> = None;
    let wal_path = {
        let db = ctx.db.lock().unwrap_or_else(|e| e.into_inner());
        db.wal_path().to_path_buf()
    };
    while !ctx.cancel.is_cancelled() {
        let now = Instant::now();
        let cold_after = if ctx.shared.over_open_limit() {
            opts.cold_after.min(Duration::from_millis(200))
        } else {
            opts.cold_after
        };
        let mut deadline: Option<Instant> = None;
        let mut at = |t: Instant| deadline = Some(deadline.map_or(t, |d: Instant| d.min(t)));
        if let Some(b) = backoff_until {
            at(b);
        } else if need {
            if warm && ctx.uploading() {
                at(last_sync + opts.coalesce_for);
            } else {
                at(now);
            }
        }
        if warm {
            at(next_probe);
            at(last_sync + monitor);
            at(last_event + cold_after);
        } else if !ctx.watched {
            at(last_sync + monitor);
        }
        if deadline.is_none_or(|d| d > now) {
            tokio::select! {
                _ = ctx.cancel.cancelled() => break,
                _ = ctx.signal.notified() => {}
                _ = ctx.drained.notified(), if need => {}
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
        let ev = ctx.signal.take();
        let now = Instant::now();
        if ev.any() {
            tracing::trace!(db = %ctx.path.display(), ?ev, "file event");
            last_event = now;
            need = true;
            if ev.wal {
                publish_wait = Duration::from_millis(1);
                publish_idle = 0;
            }
            if ev.db {
                fast_until = now + opts.probe_fast_for;
                next_probe = now;
            }
        }
        let l9 = ctx.want_l9.swap(false, Ordering::SeqCst);
        if l9 {
            need = true;
        }
        if !warm && !ctx.watched && !need && now >= last_sync + monitor {
            // No watcher: a cheap look at the WAL's size and time instead of a sync.
            last_sync = now;
            let seen = std::fs::metadata(&wal_path)
                .ok()
                .and_then(|m| Some((m.len(), m.modified().ok()?)));
            if seen != polled {
                polled = seen;
                need = true;
                last_event = now;
            }
        }
        if backoff_until.is_some_and(|b| now < b) {
            if l9 {
                ctx.want_l9.store(true, Ordering::SeqCst);
            }
            continue;
        }
        backoff_until = None;
        // Commits wait while an upload is in flight (at most `coalesce_for`), then go up as one
        // file. Never while cold (the guard is not held), nor for a requested snapshot.
        // Nor once the WAL reaches the checkpoint threshold: the sync lets the checkpoint run.
        let hold = need
            && warm
            && !l9
            && ctx.uploading()
            && now < last_sync + opts.coalesce_for
            && !ctx
                .db
                .try_lock()
                .is_ok_and(|db| db.wal_at_checkpoint_threshold());
        let due = (need && !hold) || (warm && now >= last_sync + monitor);
        // A cold database opens (about 8 descriptors) only while the warm ones leave room: at
        // start every database syncs once, and 3,000 of them under a 6,000 limit ran out of
        // descriptors in 3 s. It waits its turn instead (the others go cold after 200 ms).
        if due && !warm && ctx.shared.over_open_limit() {
            if l9 {
                ctx.want_l9.store(true, Ordering::SeqCst);
            }
            backoff_until = Some(now + Duration::from_millis(20));
            continue;
        }
        if due {
            need = false;
            last_sync = now;
            // Hook for `Server::sync`: requests made before this pass starts are served by it.
            let sync_req = ctx.state.sync_req.load(Ordering::SeqCst);
            let r = ctx
                .with_db(move |db| -> Result<(bool, bool, bool), DbError> {
                    if l9 {
                        db.request_l9_snapshot();
                    }
                    let before = db.local_txid();
                    let mut wrote_any = l9;
                    for _ in 0..10_000 {
                        match db.sync()? {
                            Some(_) => wrote_any = true,
                            None => break,
                        }
                    }
                    let unpublished = db.saw_unpublished_frames();
                    let writing = unpublished && db.writer_active();
                    db.maybe_checkpoint()?;
                    db.yield_to_app_checkpoint()?;
                    // A checkpoint syncs too (the tail before it, and a commit that landed
                    // between that sync and its write lock): the uploader must hear of those
                    // files as well. Missing them held the next commit back for the whole
                    // coalescing window (fleet lag of 1.0 s at 3,000 databases).
                    wrote_any |= db.local_txid() != before;
                    Ok((wrote_any, unpublished, writing))
                })
                .await;
            match r {
                Some(Ok((wrote_any, unpublished, writing))) => {
                    if wrote_any {
                        wrote.send_modify(|g| *g += 1);
                        backlog::after_sync(&ctx).await;
                    }
                    ctx.state.sync_done.fetch_max(sync_req, Ordering::SeqCst);
                    // A commit written but not yet published in the WAL-index (its writer
                    // may be in fsync between the two): look again soon, every 1, 2, 4 ... 16
                    // ms for as long as a writer holds the lock; without one (a writer killed
                    // mid-commit, a rolled-back spill) such frames stay for good, so twice more
                    // at most.
                    if !unpublished || wrote_any {
                        publish_wait = Duration::from_millis(1);
                        publish_idle = 0;
                    }
                    if unpublished && (writing || publish_idle < 2) {
                        if !writing {
                            publish_idle += 1;
                        }
                        need = true;
                        backoff_until = Some(now + publish_wait);
                        publish_wait = (publish_wait * 2).min(Duration::from_millis(16));
                    }
                    if last_err.take().is_some() {
                        info!(db = %ctx.path.display(), "syncing again");
                    }
                    err_delay = Duration::from_millis(100);
                    if !warm {
                        warm = true;
                        last_event = now;
                    }
                    next_probe = now + opts.probe_slow;
                }
                Some(Err(e)) => {
                    let missing = matches!(e, DbError::Missing(_));
                    let msg = e.to_string();
                    let out_of_fds = msg.contains("Too many open files");
                    if last_err.as_deref() != Some(&msg) {
                        warn!(db = %ctx.path.display(), "sync failed: {msg}");
                    }
                    last_err = Some(msg);
                    if l9 {
                        ctx.want_l9.store(true, Ordering::SeqCst);
                    }
                    if missing {
                        // Wait for the watcher to see it again (or poll without one).
                        warm = false;
                    } else if warm && (ctx.shared.over_open_limit() || out_of_fds) {
                        // Out of descriptors: let go of this database's while it waits, or
                        // every warm database keeps its own and retries into the same wall.
                        let _ = ctx.with_db(|db| db.close_idle()).await;
                        warm = false;
                        need = true;
                        backoff_until = Some(now + err_delay);
                        err_delay = (err_delay * 2).min(Duration::from_secs(5));
                    } else {
                        need = true;
                        backoff_until = Some(now + err_delay);
                        err_delay = (err_delay * 2).min(Duration::from_secs(5));
                    }
                }
                None => break,
            }
        } else if warm && now >= next_probe {
            let interval = if now < fast_until {
                opts.probe_fast
            } else {
                opts.probe_slow
            };
            next_probe = now + interval;
            let blocking = ctx
                .db
                .try_lock()
                .map(|db| db.has_blocking_checkpointer())
                .unwrap_or(false);
            if blocking {
                let r = ctx
                    .with_db(|db| db.yield_to_app_checkpoint().map(|_| db.local_txid()))
                    .await;
                if let Some(Ok(_)) = r {
                    wrote.send_modify(|g| *g += 1);
                }
                last_event = Instant::now();
            }
        }
        let now = Instant::now();
        if warm && now >= last_event + cold_after && !need {
            debug!(db = %ctx.path.display(), "quiet; going cold");
            let r = ctx
                .with_db(|db| -> Result<(), DbError> { db.close_idle() })
                .await;
            match r {
                Some(Ok(())) => {
                    warm = false;
                    ctx.shared.trim.notify_one();
                    wrote.send_modify(|g| *g += 1);
                }
                Some(Err(e)) => {
                    warn!(db = %ctx.path.display(), "sync before going cold failed: {e}");
                    need = true;
                    backoff_until = Some(now + err_delay);
                }
                None => break,
            }
        }
    }
    // Shutdown: one last sync (a cold database synced when it went cold), then let go of it.
    // A database whose replica failed for good at start is left untouched.
    if ctx.doomed.load(Ordering::SeqCst)
        || (!warm && !need && ctx.signal.take() == Default::default())
    {
        return;
    }
    let r = ctx
        .with_db(|db| {
            let mut n = 0;
            let r = (|| -> Result<(), DbError> {
                for _ in 0..10_000 {
                    match db.sync()? {
                        Some(_) => n += 1,
                        None => break,
                    }
                }
                Ok(())
            })();
            db.shutdown();
            r.map(|_| n)
        })
        .await;
    match r {
        Some(Ok(n)) if n > 0 => {
            wrote.send_modify(|g| *g += 1);
        }
        Some(Err(DbError::Missing(_))) | Some(Ok(_)) | None => {}
        Some(Err(e)) => warn!(db = %ctx.path.display(), "final sync failed: {e}"),
    }
}
