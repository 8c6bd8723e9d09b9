//! Azure Blob Storage replica backend.
use crate::config::ReplicaConfig;
use crate::storage::{DynStore, StorageError};

/// Builds the store from a replica config (its `url` and/or explicit keys).
pub fn open(cfg: &ReplicaConfig) -> Result<DynStore, StorageError> {
    let _ = cfg;
    Err(StorageError::Permanent {
        backend: "azure",
        key: String::new(),
        message: "Azure Blob Storage replicas are not supported yet".to_string(),
    })
}
