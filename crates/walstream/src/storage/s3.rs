//! S3 replica backend.
use crate::config::ReplicaConfig;
use crate::storage::{DynStore, StorageError};

/// Builds the store from a replica config (its `url` and/or explicit keys).
pub fn open(cfg: &ReplicaConfig) -> Result<DynStore, StorageError> {
    let _ = cfg;
    Err(StorageError::Permanent {
        backend: "s3",
        key: String::new(),
        message: "S3 replicas are not supported yet".to_string(),
    })
}
