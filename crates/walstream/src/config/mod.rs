//! The YAML config file (Litestream 0.5's format). This first cut reads `dbs[].path`,
//! `meta-path`, the per-database timing keys, and a `replica` (or one-element `replicas`) given
//! as `url` or `type: file` + `path`. The rest of Litestream's keys arrive with the storage work.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::db::DbOptions;

/// Errors loading a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The YAML is invalid (the message has line and column).
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
    /// A value is invalid.
    #[error("config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Databases.
    #[serde(default)]
    pub dbs: Vec<DbConfig>,
}

/// One `dbs[]` entry.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct DbConfig {
    /// Database path.
    pub path: Option<PathBuf>,
    /// Meta directory.
    pub meta_path: Option<PathBuf>,
    /// `monitor-interval`.
    pub monitor_interval: Option<String>,
    /// `checkpoint-interval`.
    pub checkpoint_interval: Option<String>,
    /// `busy-timeout`.
    pub busy_timeout: Option<String>,
    /// `min-checkpoint-page-count`.
    pub min_checkpoint_page_count: Option<u64>,
    /// `truncate-page-n`.
    pub truncate_page_n: Option<u64>,
    /// `max-sync-wal-bytes`.
    pub max_sync_wal_bytes: Option<u64>,
    /// The replica.
    pub replica: Option<ReplicaConfig>,
    /// Deprecated list form; one element only.
    pub replicas: Option<Vec<ReplicaConfig>>,
}

/// A replica: every key Litestream 0.5 reads for any replica type. Top-level replica keys are
/// defaults for every database's replica. Backends read the keys of their type from here.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct ReplicaConfig {
    /// `type` (file, s3, gs, abs, sftp, ...). Inferred from `url` when absent.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// URL form, e.g. `s3://bucket/path?endpoint=...&region=...&forcePathStyle=true`.
    pub url: Option<String>,
    /// Path (file replicas), or the path inside a bucket/container/server.
    pub path: Option<String>,
    /// `sync-interval`.
    pub sync_interval: Option<String>,
    /// s3/gs/abs: bucket (container for abs).
    pub bucket: Option<String>,
    /// s3: region.
    pub region: Option<String>,
    /// s3: endpoint URL for S3-compatibles.
    pub endpoint: Option<String>,
    /// s3: path-style addressing.
    pub force_path_style: Option<bool>,
    /// s3: access key ID.
    pub access_key_id: Option<String>,
    /// s3: secret access key. Never logged.
    pub secret_access_key: Option<String>,
    /// s3: sign the payload.
    pub sign_payload: Option<bool>,
    /// s3: send Content-MD5.
    pub require_content_md5: Option<bool>,
    /// s3: skip TLS verification.
    pub skip_verify: Option<bool>,
    /// s3: storage class.
    pub storage_class: Option<String>,
    /// s3: multipart part size (bytes, or a size like `5MB`).
    pub part_size: Option<serde_norway::Value>,
    /// s3: multipart concurrency.
    pub concurrency: Option<u32>,
    /// s3: SSE-C algorithm.
    pub sse_customer_algorithm: Option<String>,
    /// s3: SSE-C key. Never logged.
    pub sse_customer_key: Option<String>,
    /// s3: SSE-C key file.
    pub sse_customer_key_path: Option<String>,
    /// s3: SSE-KMS key ID.
    pub sse_kms_key_id: Option<String>,
    /// abs: storage account name.
    pub account_name: Option<String>,
    /// abs: account key. Never logged.
    pub account_key: Option<String>,
    /// abs: SAS token. Never logged.
    pub sas_token: Option<String>,
    /// sftp: `host[:port]`.
    pub host: Option<String>,
    /// sftp: user.
    pub user: Option<String>,
    /// sftp: password. Never logged.
    pub password: Option<String>,
    /// sftp: private key file.
    pub key_path: Option<String>,
    /// sftp: expected host key (authorized_keys format).
    pub host_key: Option<String>,
}

/// Parses Go-style durations: `500ms`, `1s`, `5m`, `24h`, `1h30m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_end);
        let v: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let secs = match unit {
            "ns" => v / 1e9,
            "us" | "µs" => v / 1e6,
            "ms" => v / 1e3,
            "s" => v,
            "m" => v * 60.0,
            "h" => v * 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(secs);
        rest = tail;
    }
    Some(total)
}

impl Config {
    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses text; `path` is for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let c: Config = serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(c)
    }
}

impl DbConfig {
    /// The one replica, from `replica` or a one-element `replicas`.
    pub fn the_replica(&self) -> Option<&ReplicaConfig> {
        self.replica
            .as_ref()
            .or_else(|| self.replicas.as_ref().and_then(|r| r.first()))
    }

    /// The replica as a URL or path `storage::open_url` understands.
    pub fn replica_url(&self, cfg_path: &Path) -> Result<String, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: cfg_path.to_path_buf(),
            message,
        };
        if self.replicas.as_ref().is_some_and(|r| r.len() > 1) {
            return Err(invalid(
                "only one replica per database is supported (`replicas` has more than one)".into(),
            ));
        }
        let r = self
            .the_replica()
            .ok_or_else(|| invalid("database has no replica".into()))?;
        if let Some(u) = &r.url {
            return Ok(u.clone());
        }
        match r.kind.as_deref() {
            None | Some("file") => r
                .path
                .clone()
                .ok_or_else(|| invalid("file replica needs `path` or `url`".into())),
            Some(other) => Err(invalid(format!(
                "replica type {other:?} needs `url` for now"
            ))),
        }
    }

    /// The one replica's config (checked: at most one in `replicas`).
    pub fn replica_config(&self, cfg_path: &Path) -> Result<ReplicaConfig, ConfigError> {
        if self.replicas.as_ref().is_some_and(|r| r.len() > 1) {
            return Err(ConfigError::Invalid {
                path: cfg_path.to_path_buf(),
                message:
                    "only one replica per database is supported (`replicas` has more than one)"
                        .into(),
            });
        }
        self.the_replica()
            .cloned()
            .ok_or_else(|| ConfigError::Invalid {
                path: cfg_path.to_path_buf(),
                message: "database has no replica".into(),
            })
    }

    /// Database options with defaults.
    pub fn db_options(&self, cfg_path: &Path) -> Result<DbOptions, ConfigError> {
        let mut o = DbOptions {
            meta_path: self.meta_path.clone(),
            ..DbOptions::default()
        };
        let dur = |key: &str, v: &Option<String>, slot: &mut Duration| -> Result<(), ConfigError> {
            if let Some(s) = v {
                *slot = parse_duration(s).ok_or_else(|| ConfigError::Invalid {
                    path: cfg_path.to_path_buf(),
                    message: format!("{key}: invalid duration {s:?}"),
                })?;
            }
            Ok(())
        };
        dur(
            "monitor-interval",
            &self.monitor_interval,
            &mut o.monitor_interval,
        )?;
        dur(
            "checkpoint-interval",
            &self.checkpoint_interval,
            &mut o.checkpoint_interval,
        )?;
        dur("busy-timeout", &self.busy_timeout, &mut o.busy_timeout)?;
        if let Some(v) = self.min_checkpoint_page_count {
            o.min_checkpoint_page_count = v;
        }
        if let Some(v) = self.truncate_page_n {
            o.truncate_page_n = v;
        }
        if let Some(v) = self.max_sync_wal_bytes {
            o.max_sync_wal_bytes = v;
        }
        Ok(o)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration_go_forms() {
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("abc"), None);
    }

    #[test]
    fn config_file_replica_forms() {
        let c = Config::parse(
            "dbs:\n  - path: /a.db\n    replica:\n      url: file:///b\n  - path: /c.db\n    replicas:\n      - type: file\n        path: /d\n",
            Path::new("x.yml"),
        )
        .unwrap();
        assert_eq!(c.dbs[0].replica_url(Path::new("x")).unwrap(), "file:///b");
        assert_eq!(c.dbs[1].replica_url(Path::new("x")).unwrap(), "/d");
    }

    #[test]
    fn config_invalid_yaml_names_line() {
        let e = Config::parse("dbs:\n  - path: [\n", Path::new("bad.yml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("bad.yml"), "{e}");
        assert!(e.contains("line"), "{e}");
    }
}
