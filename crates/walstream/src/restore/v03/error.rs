//! The errors of a 0.3 restore.
use super::*;

/// Everything that can go wrong restoring a 0.3 backup. Each names the generation, object or
/// WAL index involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum V03Error {
    /// Listing the replica failed.
    #[error("list {replica}/{GENERATIONS_PREFIX}")]
    List {
        /// The replica.
        replica: String,
        /// The cause.
        #[source]
        source: StorageError,
    },
    /// No generation holds anything to restore (as 0.3: "no matching backups found").
    #[error("no matching backups found: no Litestream 0.3 generation in {replica}")]
    NoGenerations {
        /// The replica.
        replica: String,
    },
    /// `-generation` names none of the replica's generations.
    #[error("no matching backups found: generation {generation} is not in {replica} (it has {})", list_or_none(.available))]
    GenerationNotFound {
        /// The requested generation.
        generation: String,
        /// The replica.
        replica: String,
        /// Generations present.
        available: Vec<String>,
    },
    /// No generation's span contains the `-timestamp`.
    #[error(
        "no matching backups found: {} is outside every generation in {replica} ({})",
        humantime::format_rfc3339_millis(*.timestamp),
        spans_text(.spans)
    )]
    TimestampNotAvailable {
        /// The requested time.
        timestamp: SystemTime,
        /// The replica.
        replica: String,
        /// Each candidate generation's span.
        spans: Vec<(String, SystemTime, SystemTime)>,
    },
    /// The generation has no snapshot at or before the target.
    #[error("generation {generation}: no snapshot{}", .timestamp.map(|t| format!(" at or before {}", humantime::format_rfc3339_millis(t))).unwrap_or_default())]
    NoSnapshot {
        /// The generation.
        generation: String,
        /// The `-timestamp`, if any.
        timestamp: Option<SystemTime>,
    },
    /// The WAL segments of an index do not form a whole WAL file.
    #[error("generation {generation} WAL index {index:08x}: {message}")]
    Segments {
        /// The generation.
        generation: String,
        /// The WAL index.
        index: u64,
        /// What is wrong.
        message: String,
    },
    /// Downloading an object failed.
    #[error("download {key} from {replica}")]
    Download {
        /// The replica.
        replica: String,
        /// The object key.
        key: String,
        /// The cause.
        #[source]
        source: StorageError,
    },
    /// A download's length differs from the listing.
    #[error("{key}: downloaded {got} bytes but the listing says {want}")]
    SizeMismatch {
        /// The object key.
        key: String,
        /// Bytes received.
        got: u64,
        /// Bytes listed.
        want: u64,
    },
    /// An encrypted object could not be opened.
    #[error("{key}: {source}")]
    Decrypt {
        /// The object key.
        key: String,
        /// The cause.
        #[source]
        source: age_keys::DecryptError,
    },
    /// An object does not decode: damaged ciphertext, a bad LZ4 frame, or not what it should be.
    #[error("{key}: {message}")]
    Decode {
        /// The object key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A WAL frame fails SQLite's checks.
    #[error("generation {generation} WAL index {index:08x}: {message}")]
    Wal {
        /// The generation.
        generation: String,
        /// The WAL index.
        index: u64,
        /// What is wrong.
        message: String,
    },
    /// Output checks, local I/O, the integrity check.
    #[error(transparent)]
    Restore(#[from] RestoreError),
}

impl V03Error {
    /// Whether the replica has no 0.3 backup at all (`-if-replica-exists` treats it as success).
    pub fn is_no_backups(&self) -> bool {
        matches!(self, V03Error::NoGenerations { .. })
    }
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

fn spans_text(spans: &[(String, SystemTime, SystemTime)]) -> String {
    if spans.is_empty() {
        return "none".to_string();
    }
    spans
        .iter()
        .map(|(g, a, b)| {
            format!(
                "{g}: {} to {}",
                humantime::format_rfc3339_millis(*a),
                humantime::format_rfc3339_millis(*b)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
