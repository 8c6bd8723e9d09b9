//! Where replicas live. One small trait, [`ReplicaStore`], speaks Litestream's domain (levels and
//! TXID ranges), and each backend maps it onto its keys.
//!
//! Layouts: the file backend (and later gs, abs, sftp) uses `<path>/ltx/<level>/<min>-<max>.ltx`;
//! S3 uses `<path>/<level as %04x>/<min>-<max>.ltx`.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use ltx::TxId;

pub mod file;

/// The snapshot level.
pub const SNAPSHOT_LEVEL: u8 = 9;

/// One LTX file on a replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LtxFileInfo {
    /// Compaction level, 0..=9.
    pub level: u8,
    /// First TXID covered.
    pub min_txid: TxId,
    /// Last TXID covered.
    pub max_txid: TxId,
    /// Size in bytes.
    pub size: u64,
    /// When the file's data was synced (its LTX timestamp), as the store records it.
    pub created_at: SystemTime,
}

impl LtxFileInfo {
    /// `<min>-<max>.ltx`.
    pub fn file_name(&self) -> String {
        ltx::file_name(self.min_txid, self.max_txid)
    }
}

/// A stream of a file's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, StorageError>>;

/// Errors from a store. Each carries the key (never a secret).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The object does not exist.
    #[error("{backend}: {key}: not found")]
    NotFound {
        /// Backend name, e.g. "file".
        backend: &'static str,
        /// Object key or path.
        key: String,
    },
    /// Worth retrying: timeouts, 5xx, resets.
    #[error("{backend}: {key}: {message}")]
    Transient {
        /// Backend name.
        backend: &'static str,
        /// Object key or path.
        key: String,
        /// What happened.
        message: String,
    },
    /// Not worth retrying: permissions, missing bucket, bad request.
    #[error("{backend}: {key}: {message}")]
    Permanent {
        /// Backend name.
        backend: &'static str,
        /// Object key or path.
        key: String,
        /// What happened.
        message: String,
    },
    /// Local I/O.
    #[error("{backend}: {path}: {source}")]
    Io {
        /// Backend name.
        backend: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Transient { .. } => true,
            StorageError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }
    /// Whether the object was missing.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

/// A replica's storage.
///
/// # Contract
/// - `write_ltx_file` is atomic: a reader sees the whole file under its final name or nothing.
///   After an error the file may or may not exist; writing it again is safe.
/// - `ltx_files` lists one level sorted by MinTXID (then MaxTXID); a missing level is empty.
/// - `open_ltx_file` starts at `offset` so that a broken download resumes; a missing file is
///   [`StorageError::NotFound`].
/// - `delete_ltx_files` ignores files already gone.
/// - No method logs or returns a secret.
#[async_trait]
pub trait ReplicaStore: Send + Sync + std::fmt::Debug {
    /// Backend name as in config `type:` ("file", "s3", ...).
    fn kind(&self) -> &'static str;
    /// A human-readable location without secrets, e.g. `file:///var/backup`.
    fn describe(&self) -> String;
    /// Files of one level, sorted by MinTXID.
    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError>;
    /// Streams a file's bytes from `offset`.
    async fn open_ltx_file(&self, level: u8, min: TxId, max: TxId, offset: u64) -> Result<ByteStream, StorageError>;
    /// Stores the local file `src` as the given LTX file, recording `created_at` as its timestamp.
    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError>;
    /// Deletes files; missing ones are not an error.
    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError>;
}

/// A shared store handle.
pub type DynStore = Arc<dyn ReplicaStore>;

/// Parses a replica URL or plain path into a store. A plain path (or `file://`) is a file replica.
/// Unknown schemes are an error naming the scheme.
pub fn open_url(url: &str) -> Result<DynStore, StorageError> {
    let _ = url;
    todo!()
}
