//! `replicate -once`: one sync and upload of one database, then exit.

use tracing::info;

use super::{DbSpec, ServerError};
use crate::db::Db;
use crate::history;
use crate::replica::{self, Replica};
use crate::storage::retry::RetryPolicy;

/// What `-once` does beyond the sync.
#[derive(Debug, Clone, Copy, Default)]
pub struct OnceOptions {
    /// `-force-snapshot`: write an L9 snapshot.
    pub force_snapshot: bool,
    /// `-enforce-retention`: apply retention afterwards.
    pub enforce_retention: bool,
}

/// Syncs `spec`'s database once and uploads the result, retrying failures within the restore
/// policy's bound.
pub async fn replicate_once(spec: DbSpec, opts: OnceOptions) -> Result<(), ServerError> {
    let path = std::path::absolute(&spec.path).unwrap_or_else(|_| spec.path.clone());
    let db_err = |source| ServerError::Db {
        db: path.clone(),
        source: Box::new(source),
    };
    let rep_err = |source| ServerError::Replica {
        db: path.clone(),
        source,
    };
    let meta_dir = crate::meta::MetaDir::for_db(&path, spec.opts.meta_path.as_deref());
    let (store, lease) =
        crate::lease::start(spec.store.clone(), &path, meta_dir.root(), spec.lease)
            .await
            .map_err(|source| ServerError::Lease {
                db: path.clone(),
                source,
            })?;
    let r = async {
        let remote = replica::remote_max_txid(&store).await.map_err(rep_err)?;
        let upload_from = replica::remote_upload_position(&store)
            .await
            .map_err(rep_err)?;
        let p = path.clone();
        let db_opts = spec.opts.clone();
        let force = opts.force_snapshot;
        let db = tokio::task::spawn_blocking(move || -> Result<Db, crate::db::DbError> {
            let mut db = Db::new(&p, db_opts)?;
            let complete = replica::local_chain_complete(db.meta(), remote)?;
            db.reconcile(remote, complete)?;
            if force {
                db.request_l9_snapshot();
            }
            db.sync()?;
            db.shutdown();
            Ok(db)
        })
        .await
        .map_err(|e| {
            db_err(crate::db::DbError::Io {
                path: path.clone(),
                source: std::io::Error::other(e),
            })
        })?
        .map_err(db_err)?;
        let mut rep = Replica::new(store.clone(), db.meta().clone(), upload_from)
            .with_retry(RetryPolicy::restore());
        rep.sync().await.map_err(rep_err)?;
        drop(db);
        if opts.enforce_retention {
            let n = history::enforce_retention(
                rep.store(),
                &spec.opts.history.retention,
                std::time::SystemTime::now(),
            )
            .await
            .map_err(|e| {
                rep_err(crate::replica::ReplicaError::Storage {
                    replica: store.describe(),
                    source: crate::storage::StorageError::Permanent {
                        backend: "retention",
                        key: String::new(),
                        message: e.to_string(),
                    },
                })
            })?;
            info!(files = n, "retention enforced");
        }
        Ok::<(), ServerError>(())
    }
    .await;
    if let Some(l) = lease {
        l.finish().await;
    }
    r
}
