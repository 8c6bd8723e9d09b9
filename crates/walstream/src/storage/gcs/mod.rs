//! Google Cloud Storage replicas: `gs://bucket/path`, or `type: gs` with `bucket` and `path`.
//!
//! Layout, as Litestream 0.5: `<path>/ltx/<level>/<min>-<max>.ltx`, with the LTX timestamp also
//! in custom metadata `litestream-timestamp` (RFC 3339, UTC), which the JSON API lists at no
//! extra cost. Either tool reads the other's objects, timestamps included.
//!
//! The calls are the JSON API's ([`api`]), over reqwest. Credentials come from object_store's
//! GCP credential chain: the file in `$GOOGLE_APPLICATION_CREDENTIALS` (a service account key,
//! signed into a self-signed JWT, or an authorized user's refresh token), else gcloud's
//! application default credentials, else the instance metadata server. With
//! `$STORAGE_EMULATOR_HOST` set (the variable Google's clients honour), requests go there,
//! unauthenticated, as Google's clients do. As a walstream extension, `endpoint` sends
//! authenticated requests to another address.
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use ltx::TxId;
use object_store::gcp::{GcpCredentialProvider, GoogleCloudStorageBuilder};
use tokio::io::AsyncReadExt;

use super::azure::{clean_prefix, parse_rfc3339, rfc3339_nanos};
use super::{ByteStream, DynStore, LtxFileInfo, ReplicaStore, StorageError};

mod api;
mod lease;

use api::{Api, ApiFailure, Bearer};

const BACKEND: &str = "gs";
/// Custom metadata holding the LTX timestamp (Litestream's name).
pub const TIMESTAMP_METADATA: &str = "litestream-timestamp";
/// The public endpoint.
const DEFAULT_BASE: &str = "https://storage.googleapis.com";
/// Files up to this size go up in one multipart request; larger ones resumably, in chunks.
const SINGLE_UPLOAD_MAX: u64 = api::CHUNK_SIZE as u64;

/// The gs replica's own settings as configured: a `gs://bucket/path` URL, or a bucket and a
/// path (the URL's parts win). Credentials come from the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcsOptions {
    /// `gs://bucket/path`.
    pub url: Option<String>,
    /// Bucket, when there is no URL.
    pub bucket: Option<String>,
    /// Path in the bucket, when there is no URL.
    pub path: Option<String>,
    /// Endpoint for an authenticated client (a walstream extension); `$STORAGE_EMULATOR_HOST`
    /// wins over it.
    pub endpoint: Option<String>,
}

/// Opens a bare `gs://` URL.
pub fn open_url(url: &str) -> Result<DynStore, StorageError> {
    open(&GcsOptions {
        url: Some(url.to_string()),
        ..Default::default()
    })
}

/// Builds the store from its options (a `url` and/or explicit keys). Nothing is contacted
/// until the first call.
pub fn open(cfg: &GcsOptions) -> Result<DynStore, StorageError> {
    Ok(Arc::new(GcsStore::new(cfg)?))
}

/// A Google Cloud Storage bucket (and a path in it) as a replica.
pub struct GcsStore {
    api: Api,
    prefix: String,
    /// `None` against an emulator.
    credentials: Option<GcpCredentialProvider>,
}

impl std::fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsStore")
            .field("location", &self.describe())
            .field("endpoint", &self.api.base)
            .finish()
    }
}

fn config_error(key: String, message: impl Into<String>) -> StorageError {
    StorageError::Permanent {
        backend: BACKEND,
        key,
        message: message.into(),
    }
}

/// How requests are authorized.
enum Auth {
    /// Not at all (an emulator).
    Anonymous,
    /// object_store's GCP chain, from this credentials file if given.
    Google { credentials_file: Option<String> },
}

/// `$STORAGE_EMULATOR_HOST` as a base URL (`host:port` gets `http://`).
fn emulator_base() -> Option<String> {
    let host = std::env::var("STORAGE_EMULATOR_HOST").ok()?;
    let host = host.trim().trim_end_matches('/');
    if host.is_empty() {
        return None;
    }
    Some(if crate::paths::is_url(host) {
        host.to_string()
    } else {
        format!("http://{host}")
    })
}

/// Bucket and path from the URL (`gs://bucket/path`), else from `bucket` and `path`.
fn bucket_and_prefix(cfg: &GcsOptions) -> Result<(String, String), StorageError> {
    let non_empty = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut bucket = non_empty(&cfg.bucket);
    let mut prefix = non_empty(&cfg.path).map(|p| clean_prefix(&p));
    if let Some(raw) = cfg.url.as_deref().filter(|u| !u.trim().is_empty()) {
        let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
            config_error(
                crate::paths::redact_url(raw),
                format!("invalid replica URL: {e}"),
            )
        })?;
        if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
            bucket = Some(host.to_string());
        }
        let path = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
        let path = clean_prefix(&path);
        if !path.is_empty() {
            prefix = Some(path);
        }
    }
    let bucket =
        bucket.ok_or_else(|| config_error(String::new(), "bucket required for gs replica"))?;
    Ok((bucket, prefix.unwrap_or_default()))
}

impl GcsStore {
    /// A store for the bucket and path a replica config names.
    pub fn new(cfg: &GcsOptions) -> Result<GcsStore, StorageError> {
        let (bucket, prefix) = bucket_and_prefix(cfg)?;
        let credentials_file = std::env::var("GOOGLE_APPLICATION_CREDENTIALS")
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty());
        match emulator_base() {
            Some(base) => Self::build(bucket, prefix, base, Auth::Anonymous),
            None => {
                // `endpoint` (a walstream extension) points an authenticated client elsewhere.
                let base = cfg
                    .endpoint
                    .as_deref()
                    .map(|e| e.trim().trim_end_matches('/').to_string())
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| DEFAULT_BASE.to_string());
                Self::build(bucket, prefix, base, Auth::Google { credentials_file })
            }
        }
    }

    fn build(
        bucket: String,
        prefix: String,
        base: String,
        auth: Auth,
    ) -> Result<GcsStore, StorageError> {
        let credentials = match auth {
            Auth::Anonymous => None,
            Auth::Google { credentials_file } => {
                let mut b = GoogleCloudStorageBuilder::new().with_bucket_name(bucket.clone());
                if let Some(path) = credentials_file {
                    b = b.with_application_credentials(path);
                }
                let gcs = b.build().map_err(|e| {
                    config_error(
                        bucket.clone(),
                        format!("cannot set up Google credentials: {}", root_cause(&e)),
                    )
                })?;
                Some(gcs.credentials().clone())
            }
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Per read, not per request: a large snapshot may take minutes to stream.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| config_error(bucket.clone(), format!("cannot build HTTP client: {e}")))?;
        Ok(GcsStore {
            api: Api { http, base, bucket },
            prefix,
            credentials,
        })
    }

    /// `<path>/ltx/<level>/`.
    fn level_prefix(&self, level: u8) -> String {
        if self.prefix.is_empty() {
            format!("ltx/{level}/")
        } else {
            format!("{}/ltx/{level}/", self.prefix)
        }
    }

    /// `<path>/ltx/<level>/<min>-<max>.ltx`.
    fn object_name(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}{}", self.level_prefix(level), ltx::file_name(min, max))
    }

    /// `<path>/`, or nothing at the bucket's root.
    fn root_slash(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// Streams the object `name` from `offset`.
    async fn download_from(&self, name: String, offset: u64) -> Result<ByteStream, StorageError> {
        let bearer = self.bearer("download", &name).await?;
        let stream = self
            .api
            .download(&name, offset, &bearer)
            .await
            .map_err(|f| self.map("download", &name, f))?;
        let Some(stream) = stream else {
            return Ok(futures::stream::empty().boxed());
        };
        let key = self.key(&name);
        let base = self.api.base.clone();
        Ok(stream
            .map_err(move |e| StorageError::Transient {
                backend: BACKEND,
                key: key.clone(),
                message: format!(
                    "download: reading from {base}: {}",
                    root_cause(&e.without_url())
                ),
            })
            .boxed())
    }

    fn key(&self, name: &str) -> String {
        format!("{}/{name}", self.api.bucket)
    }

    async fn bearer(&self, op: &str, name: &str) -> Result<Bearer, StorageError> {
        let Some(provider) = &self.credentials else {
            return Ok(None);
        };
        match provider.get_credential().await {
            Ok(c) => Ok(Some(c.bearer.clone())),
            Err(e) => Err(self.map(
                op,
                name,
                ApiFailure::Other {
                    message: format!("cannot get a Google credential: {}", root_cause(&e)),
                    // A token endpoint that did not answer may answer later.
                    transient: has_http_error(&e),
                },
            )),
        }
    }

    /// Maps a failed call. `op` is "list", "upload", "download" or "delete". A 404 on a list or
    /// an upload is the bucket's; on a download, the object's.
    fn map(&self, op: &str, name: &str, f: ApiFailure) -> StorageError {
        let key = self.key(name);
        let bucket = &self.api.bucket;
        match f {
            ApiFailure::Status { status: 404, .. } if op == "download" => StorageError::NotFound {
                backend: BACKEND,
                key,
            },
            ApiFailure::Status { status: 404, .. } => StorageError::Permanent {
                backend: BACKEND,
                key,
                message: format!("{op}: bucket {bucket:?} not found at {}", self.api.base),
            },
            ApiFailure::Status {
                status: status @ (401 | 403),
                message,
            } => StorageError::Permanent {
                backend: BACKEND,
                key,
                message: format!(
                    "{op}: HTTP {status}: access denied to bucket {bucket:?}: {message}; check the \
                     credentials ($GOOGLE_APPLICATION_CREDENTIALS)"
                ),
            },
            ApiFailure::Status { status, message } => {
                let message = format!("{op}: HTTP {status}: {message}");
                if matches!(status, 408 | 429 | 500..=599) {
                    StorageError::Transient {
                        backend: BACKEND,
                        key,
                        message,
                    }
                } else {
                    StorageError::Permanent {
                        backend: BACKEND,
                        key,
                        message,
                    }
                }
            }
            ApiFailure::Transport(e) => StorageError::Transient {
                backend: BACKEND,
                key,
                message: format!(
                    "{op}: cannot reach {}: {}",
                    self.api.base,
                    root_cause(&e.without_url())
                ),
            },
            ApiFailure::Other { message, transient } => {
                let message = format!("{op}: {message}");
                if transient {
                    StorageError::Transient {
                        backend: BACKEND,
                        key,
                        message,
                    }
                } else {
                    StorageError::Permanent {
                        backend: BACKEND,
                        key,
                        message,
                    }
                }
            }
        }
    }

    async fn upload(
        &self,
        name: &str,
        src: &std::path::Path,
        created_at: SystemTime,
    ) -> Result<u64, StorageError> {
        let io_err = |source: std::io::Error| StorageError::Io {
            backend: BACKEND,
            path: src.to_path_buf(),
            source,
        };
        let metadata = serde_json::json!({ TIMESTAMP_METADATA: rfc3339_nanos(created_at) });
        let mut file = tokio::fs::File::open(src).await.map_err(io_err)?;
        let len = file.metadata().await.map_err(io_err)?.len();
        let bearer = self.bearer("upload", name).await?;
        if len <= SINGLE_UPLOAD_MAX {
            let mut data = Vec::with_capacity(len as usize);
            file.read_to_end(&mut data).await.map_err(io_err)?;
            let size = data.len() as u64;
            self.api
                .upload_multipart(name, &metadata, data, &bearer)
                .await
                .map_err(|f| self.map("upload", name, f))?;
            return Ok(size);
        }
        // The object appears when the last chunk lands; until then readers see nothing.
        let session = self
            .api
            .start_resumable(name, &metadata, len, &bearer)
            .await
            .map_err(|f| self.map("upload", name, f))?;
        let mut sent = 0u64;
        while sent < len {
            let want = ((len - sent) as usize).min(api::CHUNK_SIZE);
            let mut chunk = vec![0u8; want];
            file.read_exact(&mut chunk).await.map_err(io_err)?;
            self.api
                .put_chunk(&session, sent, chunk, len, &bearer)
                .await
                .map_err(|f| self.map("upload", name, f))?;
            sent += want as u64;
        }
        Ok(len)
    }
}

/// The innermost message of an error chain.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn has_http_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err
            .downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[async_trait]
impl ReplicaStore for GcsStore {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("gs://{}", self.api.bucket)
        } else {
            format!("gs://{}/{}", self.api.bucket, self.prefix)
        }
    }

    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        let prefix = self.level_prefix(level);
        let bearer = self.bearer("list", &prefix).await?;
        let objects = self
            .api
            .list(&prefix, &bearer)
            .await
            .map_err(|f| self.map("list", &prefix, f))?;
        let mut out = Vec::with_capacity(objects.len());
        for o in objects {
            let Some(name) = o.name.strip_prefix(&prefix) else {
                continue;
            };
            // Only direct children; temp files and strangers don't parse.
            let Some((min_txid, max_txid)) = ltx::parse_file_name(name) else {
                continue;
            };
            let created_at = o
                .metadata
                .as_ref()
                .and_then(|m| m.get(TIMESTAMP_METADATA))
                .and_then(|t| parse_rfc3339(t))
                .or_else(|| o.time_created.as_deref().and_then(parse_rfc3339))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(LtxFileInfo {
                level,
                min_txid,
                max_txid,
                size: o.size,
                created_at,
            });
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        Ok(out)
    }

    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        self.download_from(self.object_name(level, min, max), offset)
            .await
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<super::ObjectInfo>, StorageError> {
        let root = self.root_slash();
        let full = format!("{root}{prefix}");
        let bearer = self.bearer("list", &full).await?;
        let objects = self
            .api
            .list(&full, &bearer)
            .await
            .map_err(|f| self.map("list", &full, f))?;
        Ok(objects
            .into_iter()
            .filter_map(|o| {
                let key = o.name.strip_prefix(&root)?.to_string();
                let modified = o
                    .time_created
                    .as_deref()
                    .and_then(parse_rfc3339)
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                Some(super::ObjectInfo {
                    key,
                    size: o.size,
                    modified,
                })
            })
            .collect())
    }

    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        self.download_from(format!("{}{key}", self.root_slash()), offset)
            .await
    }

    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &std::path::Path,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        let name = self.object_name(level, min, max);
        let size = self.upload(&name, src, created_at).await?;
        Ok(LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at,
        })
    }

    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError> {
        if files.is_empty() {
            return Ok(());
        }
        let bearer = self.bearer("delete", "").await?;
        let names: Vec<String> = files
            .iter()
            .map(|f| self.object_name(f.level, f.min_txid, f.max_txid))
            .collect();
        let bearer = &bearer;
        futures::stream::iter(names)
            .map(|name| async move {
                self.api
                    .delete(&name, bearer)
                    .await
                    .map(drop)
                    .map_err(|f| self.map("delete", &name, f))
            })
            .buffer_unordered(8)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    fn supports_lease(&self) -> bool {
        true
    }

    async fn read_lease(&self) -> Result<Option<super::LeaseObject>, StorageError> {
        self.lease_read().await
    }

    async fn write_lease(
        &self,
        data: bytes::Bytes,
        expected: Option<&super::LeaseVersion>,
    ) -> Result<super::LeaseVersion, StorageError> {
        self.lease_write(data, expected).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
