//! The local backlog cap (`max-local-backlog`): while the replica is unreachable, L0 files
//! pile up in the meta directory. Past the cap they are dropped (the newest, which records the
//! WAL position, stays), and once the replica is back one full snapshot replaces them.
use ltx::TxId;
use tracing::debug;

use super::{Db, DbError};

impl Db {
    /// Deletes the local L0 files after `remote` (all of them, or all but the newest when
    /// `keep_newest`). Returns (files, bytes) deleted.
    pub fn drop_l0_backlog(
        &mut self,
        remote: Option<TxId>,
        keep_newest: bool,
    ) -> Result<(u64, u64), DbError> {
        let files = self.meta.list(0)?;
        let newest = files.last().map(|f| f.max_txid);
        let (mut n, mut bytes) = (0, 0);
        for f in &files {
            if Some(f.max_txid) <= remote || (keep_newest && Some(f.max_txid) == newest) {
                continue;
            }
            let len = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(&f.path) {
                Ok(()) => {
                    n += 1;
                    bytes += len;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(DbError::Io {
                        path: f.path.clone(),
                        source,
                    })
                }
            }
        }
        debug!(db = %self.path.display(), files = n, bytes, "dropped local L0 backlog");
        Ok((n, bytes))
    }

    /// The next sync takes a full snapshot after `remote`, written as L9 too, so that the
    /// replica continues from it across the dropped files.
    pub fn snapshot_over_dropped_backlog(&mut self, remote: Option<TxId>) {
        self.force_snapshot = Some("local backlog over max-local-backlog was dropped");
        self.snapshot_to_l9 = true;
        if let Some(r) = remote {
            self.min_next_txid = self.min_next_txid.max(TxId(r.0 + 1));
        }
    }
}
