//! A [`ReplicaStore`] decorator that records Litestream's `litestream_replica_operation_*`
//! families for any backend: PUT (uploads and lease writes), GET (downloads and lease reads),
//! DELETE and LIST, each with `replica_type` and `operation` labels; errors also with `code`.
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use ltx::TxId;

use super::registry;
use crate::storage::{
    ByteStream, DynStore, LeaseObject, LeaseVersion, LtxFileInfo, LtxLayout, ObjectInfo,
    ReplicaStore, StorageError,
};

/// Wraps a store so that every operation is counted.
#[derive(Debug)]
pub struct Instrumented {
    inner: DynStore,
}

impl Instrumented {
    /// `inner`, instrumented.
    pub fn wrap(inner: DynStore) -> DynStore {
        Arc::new(Instrumented { inner })
    }
}

/// The `code` label of an error.
fn code(e: &StorageError) -> &'static str {
    match e {
        StorageError::NotFound { .. } => "NotFound",
        StorageError::Transient { .. } => "Transient",
        StorageError::Permanent { .. } => "Permanent",
        StorageError::Conflict { .. } => "Conflict",
        StorageError::Io { .. } => "Io",
        #[allow(unreachable_patterns)]
        _ => "Other",
    }
}

fn record<T>(
    kind: &str,
    op: &'static str,
    started: Instant,
    bytes: u64,
    r: &Result<T, StorageError>,
) {
    let reg = registry();
    let l = [("replica_type", kind), ("operation", op)];
    reg.add("litestream_replica_operation_total", &l, 1.0);
    reg.observe(
        "litestream_replica_operation_duration_seconds",
        &l,
        started.elapsed().as_secs_f64(),
    );
    match r {
        Ok(_) => {
            if bytes > 0 {
                reg.add("litestream_replica_operation_bytes", &l, bytes as f64);
            }
        }
        Err(e) => reg.add(
            "litestream_replica_operation_errors_total",
            &[("replica_type", kind), ("operation", op), ("code", code(e))],
            1.0,
        ),
    }
}

#[async_trait]
impl ReplicaStore for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        let t = Instant::now();
        let r = self.inner.ltx_files(level).await;
        record(self.kind(), "LIST", t, 0, &r);
        r
    }
    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        let t = Instant::now();
        let r = self.inner.open_ltx_file(level, min, max, offset).await;
        record(self.kind(), "GET", t, 0, &r);
        let kind = self.kind();
        // Bytes are counted as they arrive.
        r.map(|s| {
            s.inspect(move |chunk| {
                if let Ok(b) = chunk {
                    registry().add(
                        "litestream_replica_operation_bytes",
                        &[("replica_type", kind), ("operation", "GET")],
                        b.len() as f64,
                    );
                }
            })
            .boxed()
        })
    }
    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        let t = Instant::now();
        let r = self
            .inner
            .write_ltx_file(level, min, max, src, created_at)
            .await;
        let bytes = r.as_ref().map(|f| f.size).unwrap_or(0);
        record(self.kind(), "PUT", t, bytes, &r);
        r
    }
    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError> {
        let t = Instant::now();
        let r = self.inner.delete_ltx_files(files).await;
        record(self.kind(), "DELETE", t, 0, &r);
        r
    }
    fn encryption(&self) -> Option<std::sync::Arc<crate::storage::encrypted::Encryption>> {
        self.inner.encryption()
    }
    fn supports_lease(&self) -> bool {
        self.inner.supports_lease()
    }
    async fn read_lease(&self) -> Result<Option<LeaseObject>, StorageError> {
        let t = Instant::now();
        let r = self.inner.read_lease().await;
        record(self.kind(), "GET", t, 0, &r);
        r
    }
    async fn write_lease(
        &self,
        data: Bytes,
        expected: Option<&LeaseVersion>,
    ) -> Result<LeaseVersion, StorageError> {
        let t = Instant::now();
        let n = data.len() as u64;
        let r = self.inner.write_lease(data, expected).await;
        record(self.kind(), "PUT", t, n, &r);
        r
    }
    async fn remove_stale_uploads(&self) -> Result<usize, StorageError> {
        self.inner.remove_stale_uploads().await
    }
    async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let t = Instant::now();
        let r = self.inner.list_objects(prefix).await;
        record(self.kind(), "LIST", t, 0, &r);
        r
    }
    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        let t = Instant::now();
        let r = self.inner.open_object(key, offset).await;
        record(self.kind(), "GET", t, 0, &r);
        r
    }
    fn ltx_layout(&self) -> LtxLayout {
        self.inner.ltx_layout()
    }
    async fn list_databases(&self, recursive: bool) -> Result<Vec<String>, StorageError> {
        let t = Instant::now();
        let r = self.inner.list_databases(recursive).await;
        record(self.kind(), "LIST", t, 0, &r);
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::storage::contract;
    use crate::storage::file::FileStore;

    #[tokio::test]
    async fn instrumented_store_passes_contract_listing() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("replica");
        let root = Instrumented::wrap(Arc::new(FileStore::new(base.clone())));
        contract::run_listing(root, |rel| {
            Instrumented::wrap(Arc::new(FileStore::new(base.join(rel))))
        })
        .await;
    }
}
