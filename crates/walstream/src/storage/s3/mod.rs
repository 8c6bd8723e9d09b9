//! S3 and S3-compatible replicas, on object_store's S3 client.
//!
//! Layout, as Litestream 0.5 writes it: `<path>/<level as %04x>/<min>-<max>.ltx` (for example
//! `app/0000/0000000000000001-0000000000000001.ltx`; snapshots in `app/0009/`), each object with
//! the metadata `litestream-timestamp` holding the LTX timestamp in Go's RFC3339Nano form.
//!
//! - **Listing** is one paginated ListObjectsV2 per level (object_store follows continuation
//!   tokens, so levels past 1,000 keys list whole). `created_at` is the `litestream-timestamp`
//!   metadata, which a listing does not return: it is read with one HEAD per object the store
//!   has not seen yet (32 at a time) and remembered by key and ETag, so a long-running replicator
//!   asks once per file. Objects without the metadata report their LastModified. The LTX
//!   header's own timestamp remains the ground truth.
//! - **Reads** are ranged GETs from the requested offset (none for offset 0); object_store also
//!   resumes a body cut mid-stream by range.
//! - **Writes** upload the local file: one PUT up to `part-size` (default 5 MiB), a multipart
//!   upload of `part-size` parts above it, `concurrency` parts (default 5) in flight; a failed
//!   multipart upload is aborted. No checksum headers besides the SigV4 payload hash (which
//!   `sign-payload: false` turns into `UNSIGNED-PAYLOAD`), so S3-compatibles that reject the
//!   AWS SDK's CRC headers accept these requests.
//! - **Deletes** are DeleteObjects batches of up to 1,000 keys (with the Content-MD5 S3
//!   requires); missing keys are not an error.
//! - **Errors**: 404 is [`StorageError::NotFound`], except a missing bucket (`NoSuchBucket`),
//!   which is permanent; 5xx, 429, `SlowDown`, timeouts and connection errors are transient;
//!   other 4xx (403, 400, ...) are permanent. Each names the bucket and key; secrets (the secret
//!   key, session token, SSE-C key) are scrubbed from every message. object_store retries each
//!   request a few times itself ([`builder::retry_config`]); longer outages are the caller's
//!   retry policy's business.
//!
//! Where the config's path has empty or `.` segments (for example `s3://bucket` with no path),
//! Litestream 0.5 writes keys such as `./0000/...` or `/0000/...`; object_store cannot address
//! those, so walstream uses the cleaned prefix and warns that the two tools would not see each
//! other's files there.
use std::collections::HashMap;
use std::path::Path as FsPath;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use ltx::TxId;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, GetRange, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload,
};
use tokio::io::AsyncReadExt;
use tracing::{debug, warn, Instrument};

use super::retry::RetryPolicy;
use super::{ByteStream, DynStore, LtxFileInfo, ReplicaStore, StorageError};

pub mod builder;
pub(crate) mod credential;
mod error;
#[cfg(test)]
mod moto_tests;
mod url;

pub use builder::{S3Options, Settings};

const BACKEND: &str = "s3";
/// Object metadata key holding the LTX timestamp, as Litestream names it.
pub const METADATA_TIMESTAMP: &str = "litestream-timestamp";
/// HEAD requests in flight while listing.
const HEAD_CONCURRENCY: usize = 32;

/// A listing's HEADs (for each object's `created_at`) retry transient failures a little on
/// their own, so that a listing of many objects on a flaky network rarely fails as a whole.
const HEAD_RETRY: RetryPolicy = RetryPolicy {
    initial_backoff: std::time::Duration::from_millis(50),
    max_backoff: std::time::Duration::from_millis(400),
    multiplier: 2.0,
    max_attempts: Some(3),
    max_elapsed: None,
    attempt_timeout: None,
};

/// Opens a bare `s3://` URL.
pub fn open_url(url: &str) -> Result<DynStore, StorageError> {
    open(&S3Options::from_url(url))
}

/// Builds the store from its options (a `url` and/or explicit keys) and the environment.
/// Nothing is sent until the first call; a region to look up is looked up then.
pub fn open(cfg: &S3Options) -> Result<DynStore, StorageError> {
    let settings = builder::settings(cfg).map_err(|message| StorageError::Permanent {
        backend: BACKEND,
        key: cfg
            .url
            .as_deref()
            .map(crate::paths::redact_url)
            .or_else(|| cfg.bucket.clone().map(|b| format!("s3://{b}")))
            .unwrap_or_default(),
        message,
    })?;
    Ok(Arc::new(S3Store::new(settings)?))
}

/// What the store remembers of an object it wrote or HEADed.
#[derive(Debug, Clone)]
struct Known {
    e_tag: Option<String>,
    size: u64,
    created_at: SystemTime,
}

/// An S3 (or S3-compatible) replica.
pub struct S3Store {
    settings: Arc<Settings>,
    client: tokio::sync::OnceCell<Arc<AmazonS3>>,
    known: Mutex<HashMap<String, Known>>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// A store for resolved settings. Fails only on settings object_store refuses.
    pub fn new(settings: Settings) -> Result<S3Store, StorageError> {
        for w in &settings.warnings {
            warn!(bucket = %settings.bucket, "s3: {w}");
        }
        if let Some(lp) = &settings.litestream_prefix {
            warn!(
                bucket = %settings.bucket,
                "s3: the replica path {lp:?} has empty or '.' segments: Litestream 0.5 stores files under {:?}, walstream under {:?}, so neither sees the other's files there",
                format!("{lp}/0000/"),
                format!("{}0000/", prefix_slash(&settings.prefix)),
            );
        }
        ObjPath::parse(&settings.prefix).map_err(|e| StorageError::Permanent {
            backend: BACKEND,
            key: format!("s3://{}/{}", settings.bucket, settings.prefix),
            message: format!("invalid path: {e}"),
        })?;
        let store = S3Store {
            settings: Arc::new(settings),
            client: tokio::sync::OnceCell::new(),
            known: Mutex::new(HashMap::new()),
        };
        // With a known region, build now so that bad settings fail at open.
        if let Some(region) = store.settings.region.clone() {
            let c = builder::build(&store.settings, &region).map_err(|m| store.permanent("", m))?;
            let _ = store.client.set(Arc::new(c));
        }
        Ok(store)
    }

    /// The resolved settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// `<prefix>/<level %04x>`.
    pub fn level_prefix(&self, level: u8) -> String {
        format!("{}{level:04x}", prefix_slash(&self.settings.prefix))
    }

    /// `<prefix>/<level %04x>/<min>-<max>.ltx`.
    pub fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}/{}", self.level_prefix(level), ltx::file_name(min, max))
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.settings.bucket)
    }

    fn permanent(&self, key: &str, message: String) -> StorageError {
        StorageError::Permanent {
            backend: BACKEND,
            key: self.location(key),
            message: self.scrub(message),
        }
    }

    /// Removes every secret from a message.
    fn scrub(&self, message: String) -> String {
        error::scrub(message, &self.settings)
    }

    async fn client(&self) -> Result<&Arc<AmazonS3>, StorageError> {
        self.client
            .get_or_try_init(|| async {
                let region = match &self.settings.region {
                    Some(r) => r.clone(),
                    None => self.detect_region().await?,
                };
                let c =
                    builder::build(&self.settings, &region).map_err(|m| self.permanent("", m))?;
                Ok(Arc::new(c))
            })
            .await
    }

    /// The bucket's region from AWS (`x-amz-bucket-region`).
    async fn detect_region(&self) -> Result<String, StorageError> {
        let opts = builder::client_options(&self.settings).map_err(|m| self.permanent("", m))?;
        match object_store::aws::resolve_bucket_region(&self.settings.bucket, &opts).await {
            Ok(r) => {
                debug!(bucket = %self.settings.bucket, region = %r, "s3: detected bucket region");
                Ok(r)
            }
            Err(e) => {
                let (class, msg) = error::classify(&e, &self.settings);
                let message = format!("cannot look up the bucket's region (set `region`): {msg}");
                Err(match class {
                    error::Class::Transient => StorageError::Transient {
                        backend: BACKEND,
                        key: self.location(""),
                        message: self.scrub(message),
                    },
                    _ => self.permanent("", message),
                })
            }
        }
    }

    /// Maps an object_store error for `key` to a [`StorageError`].
    fn map_err(&self, key: &str, e: &object_store::Error) -> StorageError {
        error::to_storage_error(e, key, &self.settings)
    }

    fn remember(&self, key: &str, k: Known) {
        if let Ok(mut m) = self.known.lock() {
            m.insert(key.to_string(), k);
        }
    }

    fn recall(&self, meta: &ObjectMeta) -> Option<SystemTime> {
        let m = self.known.lock().ok()?;
        let k = m.get(meta.location.as_ref())?;
        (k.size == meta.size && same_etag(&k.e_tag, &meta.e_tag)).then_some(k.created_at)
    }

    /// `created_at` of a listed object: remembered, else from a HEAD's metadata, else its
    /// LastModified. `None` when the object vanished in between.
    async fn created_at(
        &self,
        client: &AmazonS3,
        meta: &ObjectMeta,
    ) -> Result<Option<SystemTime>, StorageError> {
        if let Some(t) = self.recall(meta) {
            return Ok(Some(t));
        }
        let opts = GetOptions {
            head: true,
            ..Default::default()
        };
        let head = match client.get_opts(&meta.location, opts).await {
            Ok(h) => h,
            Err(e) => {
                let err = self.map_err(meta.location.as_ref(), &e);
                return if err.is_not_found() {
                    Ok(None)
                } else {
                    Err(err)
                };
            }
        };
        let last_modified: SystemTime = head.meta.last_modified.into();
        let created_at = match head
            .attributes
            .get(&Attribute::Metadata(METADATA_TIMESTAMP.into()))
            .map(|v| v.as_ref())
        {
            Some(ts) => parse_go_rfc3339(ts).unwrap_or_else(|| {
                debug!(key = %meta.location, ts, "s3: unparsable {METADATA_TIMESTAMP}; using LastModified");
                last_modified
            }),
            None => last_modified,
        };
        self.remember(
            meta.location.as_ref(),
            Known {
                e_tag: head.meta.e_tag.clone(),
                size: head.meta.size,
                created_at,
            },
        );
        Ok(Some(created_at))
    }

    async fn put_single(
        &self,
        client: &AmazonS3,
        key: &str,
        src: &FsPath,
        attributes: Attributes,
    ) -> Result<(u64, Option<String>), StorageError> {
        let data = tokio::fs::read(src).await.map_err(|e| io_err(src, e))?;
        let size = data.len() as u64;
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        let loc = obj_path(key).map_err(|m| self.permanent(key, m))?;
        let r = client
            .put_opts(&loc, PutPayload::from(Bytes::from(data)), opts)
            .await
            .map_err(|e| self.map_err(key, &e))?;
        Ok((size, r.e_tag))
    }

    async fn put_multipart(
        &self,
        client: &AmazonS3,
        key: &str,
        src: &FsPath,
        attributes: Attributes,
    ) -> Result<(u64, Option<String>), StorageError> {
        let loc = obj_path(key).map_err(|m| self.permanent(key, m))?;
        let mut file = tokio::fs::File::open(src)
            .await
            .map_err(|e| io_err(src, e))?;
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let mut upload = client
            .put_multipart_opts(&loc, opts)
            .await
            .map_err(|e| self.map_err(key, &e))?;
        let part_size = usize::try_from(self.settings.part_size).unwrap_or(usize::MAX);
        let concurrency = self.settings.concurrency.max(1);
        let result: Result<u64, StorageError> = async {
            let mut in_flight = FuturesUnordered::new();
            let mut total = 0u64;
            let mut parts = 0usize;
            loop {
                let mut buf = Vec::with_capacity(part_size);
                let n = (&mut file)
                    .take(part_size as u64)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(|e| io_err(src, e))?;
                if n == 0 && parts > 0 {
                    break;
                }
                total += n as u64;
                parts += 1;
                in_flight.push(upload.put_part(PutPayload::from(Bytes::from(buf))));
                while in_flight.len() >= concurrency {
                    if let Some(r) = in_flight.next().await {
                        r.map_err(|e| self.map_err(key, &e))?;
                    }
                }
                if n < part_size {
                    break;
                }
            }
            while let Some(r) = in_flight.next().await {
                r.map_err(|e| self.map_err(key, &e))?;
            }
            debug!(key, parts, size = total, "s3: multipart parts uploaded");
            Ok(total)
        }
        .await;
        let size = match result {
            Ok(s) => s,
            Err(e) => {
                if let Err(ae) = upload.abort().await {
                    debug!(key, "s3: aborting the multipart upload failed: {ae}");
                }
                return Err(e);
            }
        };
        match upload.complete().await {
            Ok(r) => Ok((size, r.e_tag)),
            Err(e) => {
                let err = self.map_err(key, &e);
                if let Err(ae) = upload.abort().await {
                    debug!(key, "s3: aborting the multipart upload failed: {ae}");
                }
                Err(err)
            }
        }
    }

    /// A GET of `key` (a full object key) from `offset`: ranged past 0; a range past the end
    /// that equals the object's size is an empty stream.
    async fn get_from(&self, key: String, offset: u64) -> Result<ByteStream, StorageError> {
        let client = self.client().await?;
        let loc = obj_path(&key).map_err(|m| self.permanent(&key, m))?;
        let opts = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..Default::default()
        };
        let result = client.get_opts(&loc, opts).await;
        let got = match result {
            Ok(g) => g,
            Err(e) if offset > 0 && error::is_range_not_satisfiable(&e) => {
                // Past the end: a resume that already had everything.
                let head = client
                    .get_opts(
                        &loc,
                        GetOptions {
                            head: true,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| self.map_err(&key, &e))?;
                if offset == head.meta.size {
                    return Ok(futures::stream::empty().boxed());
                }
                return Err(self.permanent(
                    &key,
                    format!("offset {offset} is past the end ({} bytes)", head.meta.size),
                ));
            }
            Err(e) => return Err(self.map_err(&key, &e)),
        };
        let settings = self.settings.clone();
        Ok(got
            .into_stream()
            .map_err(move |e| error::to_storage_error(&e, &key, &settings))
            .boxed())
    }
}

#[async_trait]
impl ReplicaStore for S3Store {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn describe(&self) -> String {
        format!("s3://{}/{}", self.settings.bucket, self.settings.prefix)
    }

    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        let prefix_key = self.level_prefix(level);
        let client = self.client().await?;
        let prefix = obj_path(&prefix_key).map_err(|m| self.permanent(&prefix_key, m))?;
        let listed: Vec<ObjectMeta> = client
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.map_err(&format!("{prefix_key}/"), &e))?;
        let candidates: Vec<(ObjectMeta, TxId, TxId)> = listed
            .into_iter()
            .filter_map(|m| {
                let (min, max) = {
                    let mut rest = m.location.prefix_match(&prefix)?;
                    let name = rest.next()?;
                    if rest.next().is_some() {
                        return None;
                    }
                    ltx::parse_file_name(name.as_ref())?
                };
                Some((m, min, max))
            })
            .collect();
        // Every HEAD runs to its end, even after one failed: what succeeded is remembered, so a
        // retried listing asks only for the rest instead of starting over (one flaky HEAD among
        // hundreds must not fail the listing every time).
        let results: Vec<Result<Option<LtxFileInfo>, StorageError>> =
            futures::stream::iter(candidates)
                .map(|(m, min, max)| async move {
                    let created_at = HEAD_RETRY
                        .run(BACKEND, m.location.as_ref(), |_| {
                            self.created_at(client, &m)
                        })
                        .await?;
                    Ok(created_at.map(|created_at| LtxFileInfo {
                        level,
                        min_txid: min,
                        max_txid: max,
                        size: m.size,
                        created_at,
                    }))
                })
                .buffer_unordered(HEAD_CONCURRENCY)
                .collect()
                .await;
        let mut out = Vec::with_capacity(results.len());
        for r in results {
            if let Some(f) = r? {
                out.push(f);
            }
        }
        out.sort_by_key(|f| (f.min_txid, f.max_txid));
        // Forget what this level no longer holds.
        if let Ok(mut known) = self.known.lock() {
            let names: std::collections::HashSet<String> = out
                .iter()
                .map(|f| self.key(level, f.min_txid, f.max_txid))
                .collect();
            let p = format!("{prefix_key}/");
            known.retain(|k, _| !k.starts_with(&p) || names.contains(k));
        }
        Ok(out)
    }

    async fn open_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        offset: u64,
    ) -> Result<ByteStream, StorageError> {
        let key = self.key(level, min, max);
        let span = tracing::debug_span!("s3_get", level, min_txid = %min, max_txid = %max, offset);
        self.get_from(key, offset).instrument(span).await
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<super::ObjectInfo>, StorageError> {
        let root = prefix_slash(&self.settings.prefix);
        let full = format!("{root}{prefix}");
        let client = self.client().await?;
        // object_store lists by whole path segments: list the directory part, filter the rest.
        let dir = full.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        let listing = if dir.is_empty() {
            None
        } else {
            Some(obj_path(dir).map_err(|m| self.permanent(dir, m))?)
        };
        let listed: Vec<ObjectMeta> = client
            .list(listing.as_ref())
            .try_collect()
            .await
            .map_err(|e| self.map_err(&full, &e))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().strip_prefix(&root)?;
                key.starts_with(prefix).then(|| super::ObjectInfo {
                    key: key.to_string(),
                    size: m.size,
                    modified: m.last_modified.into(),
                })
            })
            .collect())
    }

    fn ltx_layout(&self) -> super::LtxLayout {
        super::LtxLayout::HexLevel
    }

    async fn open_object(&self, key: &str, offset: u64) -> Result<ByteStream, StorageError> {
        let key = format!("{}{key}", prefix_slash(&self.settings.prefix));
        let span = tracing::debug_span!("s3_get", key = %key, offset);
        self.get_from(key, offset).instrument(span).await
    }

    async fn write_ltx_file(
        &self,
        level: u8,
        min: TxId,
        max: TxId,
        src: &FsPath,
        created_at: SystemTime,
    ) -> Result<LtxFileInfo, StorageError> {
        let key = self.key(level, min, max);
        let client = self.client().await?;
        let len = tokio::fs::metadata(src)
            .await
            .map_err(|e| io_err(src, e))?
            .len();
        let mut attributes = Attributes::new();
        attributes.insert(
            Attribute::Metadata(METADATA_TIMESTAMP.into()),
            AttributeValue::from(format_go_rfc3339(created_at)),
        );
        if let Some(class) = &self.settings.storage_class {
            attributes.insert(Attribute::StorageClass, AttributeValue::from(class.clone()));
        }
        let multipart = len > self.settings.part_size;
        let span = tracing::debug_span!("s3_put", level, min_txid = %min, max_txid = %max, size = len, multipart);
        let (size, e_tag) = async {
            if multipart {
                self.put_multipart(client, &key, src, attributes).await
            } else {
                self.put_single(client, &key, src, attributes).await
            }
        }
        .instrument(span)
        .await?;
        self.remember(
            &key,
            Known {
                e_tag,
                size,
                created_at,
            },
        );
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
        let client = self.client().await?;
        let mut paths = Vec::with_capacity(files.len());
        for f in files {
            let key = self.key(f.level, f.min_txid, f.max_txid);
            paths.push(obj_path(&key).map_err(|m| self.permanent(&key, m))?);
        }
        if let Ok(mut known) = self.known.lock() {
            for p in &paths {
                known.remove(p.as_ref());
            }
        }
        let first = paths[0].to_string();
        // object_store sends these as DeleteObjects requests of up to 1,000 keys.
        let results: Vec<object_store::Result<ObjPath>> = client
            .delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed())
            .collect()
            .await;
        for r in results {
            match r {
                Ok(_) => {}
                Err(e) => {
                    let err = self.map_err(&first, &e);
                    if !err.is_not_found() {
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }

    fn supports_lease(&self) -> bool {
        true
    }

    async fn read_lease(&self) -> Result<Option<super::LeaseObject>, StorageError> {
        let key = format!(
            "{}{}",
            prefix_slash(&self.settings.prefix),
            super::LEASE_KEY
        );
        let client = self.client().await?;
        let loc = obj_path(&key).map_err(|m| self.permanent(&key, m))?;
        let got = match client.get_opts(&loc, GetOptions::default()).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.map_err(&key, &e)),
        };
        let e_tag = got.meta.e_tag.clone().ok_or_else(|| {
            self.permanent(&key, "the store returned no ETag for the lease".to_string())
        })?;
        let data = got.bytes().await.map_err(|e| self.map_err(&key, &e))?;
        Ok(Some(super::LeaseObject {
            data,
            version: super::LeaseVersion(e_tag),
        }))
    }

    /// `If-None-Match: *` to create, `If-Match: <etag>` to replace (object_store's
    /// `PutMode::Create` / `PutMode::Update`); a 412 (or 409 after object_store's retries) is a
    /// [`StorageError::Conflict`].
    async fn write_lease(
        &self,
        data: Bytes,
        expected: Option<&super::LeaseVersion>,
    ) -> Result<super::LeaseVersion, StorageError> {
        let key = format!(
            "{}{}",
            prefix_slash(&self.settings.prefix),
            super::LEASE_KEY
        );
        let client = self.client().await?;
        let loc = obj_path(&key).map_err(|m| self.permanent(&key, m))?;
        let mode = match expected {
            None => object_store::PutMode::Create,
            Some(v) => object_store::PutMode::Update(object_store::UpdateVersion {
                e_tag: Some(v.0.clone()),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match client.put_opts(&loc, PutPayload::from(data), opts).await {
            Ok(r) => r.e_tag.map(super::LeaseVersion).ok_or_else(|| {
                self.permanent(&key, "the store returned no ETag for the lease".to_string())
            }),
            Err(
                e @ (object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }),
            ) => Err(StorageError::Conflict {
                backend: BACKEND,
                key: self.location(&key),
                message: self.scrub(format!("conditional write refused: {e}")),
            }),
            Err(e) => Err(self.map_err(&key, &e)),
        }
    }
}

fn prefix_slash(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    }
}

fn obj_path(key: &str) -> Result<ObjPath, String> {
    ObjPath::parse(key).map_err(|e| format!("invalid object key: {e}"))
}

fn io_err(path: &FsPath, source: std::io::Error) -> StorageError {
    StorageError::Io {
        backend: BACKEND,
        path: path.to_path_buf(),
        source,
    }
}

fn same_etag(a: &Option<String>, b: &Option<String>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.trim_matches('"') == b.trim_matches('"'),
        _ => false,
    }
}

/// Go's `time.Time.Format(time.RFC3339Nano)` of a UTC time: fractional seconds without
/// trailing zeros, none at all when zero (`2026-11-26T07:13:06.28Z`).
pub fn format_go_rfc3339(t: SystemTime) -> String {
    let secs = humantime::format_rfc3339_seconds(t).to_string();
    let nanos = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    if nanos == 0 {
        return secs;
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    match secs.strip_suffix('Z') {
        Some(base) => format!("{base}.{frac}Z"),
        None => secs,
    }
}

/// Parses Go's RFC3339Nano in UTC (`Z` or `+00:00`).
pub fn parse_go_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = match s.strip_suffix("+00:00") {
        Some(base) => format!("{base}Z"),
        None => s.to_string(),
    };
    humantime::parse_rfc3339(&s).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn s3_timestamp_metadata_is_go_rfc3339nano() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_677_186_280);
        assert_eq!(format_go_rfc3339(t), "2026-11-26T07:13:06.28Z");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_795_677_186);
        assert_eq!(format_go_rfc3339(t0), "2026-11-26T07:13:06Z");
        let tn = UNIX_EPOCH + Duration::new(1_795_677_186, 123_456_789);
        assert_eq!(format_go_rfc3339(tn), "2026-11-26T07:13:06.123456789Z");
        for t in [t, t0, tn] {
            assert_eq!(parse_go_rfc3339(&format_go_rfc3339(t)), Some(t));
        }
        assert_eq!(parse_go_rfc3339("2026-11-26T07:13:06.28+00:00"), Some(t));
        assert_eq!(parse_go_rfc3339("yesterday"), None);
    }

    #[test]
    fn s3_keys_follow_litestream_layout() {
        let mut s = builder::settings_with_env(
            &S3Options::from_url("s3://b/app?endpoint=http://127.0.0.1:1"),
            &credential::Env::new(&|_| None, None),
        )
        .unwrap();
        let st = S3Store::new(s.clone()).unwrap();
        assert_eq!(
            st.key(0, TxId(1), TxId(1)),
            "app/0000/0000000000000001-0000000000000001.ltx"
        );
        assert_eq!(st.level_prefix(9), "app/0009");
        assert_eq!(st.describe(), "s3://b/app");
        s.prefix = String::new();
        let st = S3Store::new(s).unwrap();
        assert_eq!(
            st.key(10, TxId(2), TxId(0x1f)),
            "000a/0000000000000002-000000000000001f.ltx"
        );
    }
}
