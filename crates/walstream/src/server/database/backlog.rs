//! The local backlog cap (`max-local-backlog`, [`crate::server::ServerOptions::max_local_backlog`]):
//! while the replica is unreachable, L0 files pile up in the meta directory. Past half the cap
//! a warning says so; past the cap they are dropped after every sync (the newest stays: it
//! records the WAL position), so disk use stops growing; once an upload pass goes through
//! again, what is left after the replica's position goes too and one full snapshot (also
//! written as L9, so the replica can jump onto it) replaces it.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ltx::TxId;
use tracing::{info, warn};

use super::{txid_opt, Ctx};
use crate::db::DbError;

/// Per-database backlog state.
#[derive(Debug)]
pub(super) struct Backlog {
    l0_dir: std::path::PathBuf,
    warned: AtomicBool,
    dropped: AtomicBool,
}

impl Backlog {
    pub(super) fn new(l0_dir: std::path::PathBuf) -> Backlog {
        Backlog {
            l0_dir,
            warned: AtomicBool::new(false),
            dropped: AtomicBool::new(false),
        }
    }
}

fn human(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// After a sync: while the replica is unreachable and files wait, warn past half the cap and
/// drop the backlog past it.
pub(super) async fn after_sync(ctx: &Arc<Ctx>) {
    let cap = ctx.shared.opts.max_local_backlog;
    if cap == 0 || !ctx.uploading() {
        return;
    }
    let st = &ctx.state;
    let failing =
        !st.connected.load(Ordering::Relaxed) || st.last_error.lock().is_ok_and(|e| e.is_some());
    if !failing {
        return;
    }
    let b = &ctx.backlog;
    let remote = txid_opt(st.remote.load(Ordering::Relaxed));
    let (files, bytes, _) = crate::metrics::backlog(&b.l0_dir, remote.map_or(0, |t| t.0));
    if bytes > cap / 2 && !b.warned.swap(true, Ordering::Relaxed) {
        warn!(db = %ctx.path.display(), files, bytes, max_local_backlog = cap,
            "replica unreachable: {} of changes wait in the meta directory; past max-local-backlog ({}) they are dropped and one snapshot replaces them when the replica is back",
            human(bytes), human(cap));
    }
    if bytes <= cap && !b.dropped.load(Ordering::Relaxed) {
        return;
    }
    if bytes <= cap / 2 {
        return;
    }
    match ctx
        .with_db(move |db| db.drop_l0_backlog(remote, true))
        .await
    {
        Some(Ok((n, dropped_bytes))) if !b.dropped.swap(true, Ordering::Relaxed) => {
            warn!(db = %ctx.path.display(), files = n, bytes = dropped_bytes, max_local_backlog = cap,
                "local backlog over max-local-backlog: dropped it; one snapshot replaces it when the replica is back");
        }
        Some(Ok(_)) => {}
        Some(Err(e)) => warn!(db = %ctx.path.display(), "dropping the local backlog failed: {e}"),
        None => {}
    }
}

/// After an upload pass went through: if the backlog was dropped, drops what is left after the
/// replica's position and has the WAL task take the snapshot that replaces it.
pub(super) async fn after_upload_ok(ctx: &Arc<Ctx>, remote: Option<TxId>) {
    let b = &ctx.backlog;
    if !b.dropped.load(Ordering::Relaxed) {
        return;
    }
    let r = ctx
        .with_db(move |db| -> Result<(u64, u64), DbError> {
            let dropped = db.drop_l0_backlog(remote, false)?;
            db.snapshot_over_dropped_backlog(remote);
            Ok(dropped)
        })
        .await;
    match r {
        Some(Ok(_)) => {
            b.dropped.store(false, Ordering::Relaxed);
            b.warned.store(false, Ordering::Relaxed);
            info!(db = %ctx.path.display(), "replica reachable again: a snapshot replaces the dropped backlog");
            ctx.signal.poke();
        }
        Some(Err(e)) => {
            warn!(db = %ctx.path.display(), "replacing the dropped backlog failed (retrying after the next upload): {e}")
        }
        None => {}
    }
}
