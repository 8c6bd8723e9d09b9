//! Azure Blob Storage replicas: `abs://[account@]container/path`, or `type: abs` with
//! `account-name`, `account-key` (or `$LITESTREAM_AZURE_ACCOUNT_KEY`), `sas-token` (or
//! `$LITESTREAM_AZURE_SAS_TOKEN`), `bucket` (the container), `path` and `endpoint`.
//!
//! Layout, as Litestream 0.5: `<path>/ltx/<level>/<min>-<max>.ltx`, with the LTX timestamp also
//! in blob metadata `litestreamtimestamp` (RFC 3339, UTC; Azure metadata names cannot hold a
//! hyphen). Either tool reads the other's blobs, timestamps included.
//!
//! Uploads, downloads and deletes go through object_store's `MicrosoftAzure`: its retries,
//! block-list uploads for large files (a blob appears whole on commit), and its credential chain
//! (shared key, SAS, or Azure AD from the environment, managed or workload identity). Listing is
//! a hand-made List Blobs with `include=metadata` ([`rest`]), authorized by the same credential
//! provider, since object_store's listing drops metadata and a HEAD per blob would cost a
//! request per file; deletes are plain Delete Blob calls there too (object_store's go through
//! the Blob Batch API).
//!
//! Credentials, as Litestream: an account key with an account name is a shared key; else a SAS
//! token; else the default chain. `endpoint` (config key, or `?endpoint=` on the URL as a
//! walstream extension) points at Azurite or another cloud, e.g.
//! `http://127.0.0.1:10000/devstoreaccount1`; by default it is
//! `https://<account>.blob.core.windows.net`.
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use ltx::TxId;
use object_store::azure::{AzureConfigKey, MicrosoftAzure, MicrosoftAzureBuilder};
use object_store::client::HttpError;
use object_store::path::Path as ObjPath;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use super::{ByteStream, DynStore, LtxFileInfo, ReplicaStore, StorageError};

mod lease;
mod rest;

const BACKEND: &str = "abs";
/// Blob metadata holding the LTX timestamp (Litestream's name).
pub const TIMESTAMP_METADATA: &str = "litestreamtimestamp";
/// Files up to this size go up in one Put Blob; larger ones as blocks of [`BLOCK_SIZE`].
const SINGLE_PUT_MAX: u64 = 32 * 1024 * 1024;
const BLOCK_SIZE: usize = 8 * 1024 * 1024;
/// Blocks in flight per upload.
const BLOCK_CONCURRENCY: usize = 4;

/// Where and how to reach a container, resolved from a replica config.
#[derive(Clone, PartialEq, Eq)]
struct Settings {
    account: Option<String>,
    container: String,
    /// The path inside the container, cleaned, without leading or trailing `/`; "" is the root.
    prefix: String,
    endpoint: Option<String>,
    account_key: Option<String>,
    sas_token: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field(
                "account_key",
                &self.account_key.as_ref().map(|_| "<redacted>"),
            )
            .field("sas_token", &self.sas_token.as_ref().map(|_| "<redacted>"))
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

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn env_non_empty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.trim().is_empty())
}

/// RFC 3339 in UTC with nanoseconds, as Go's `time.RFC3339Nano` (which either tool parses).
pub(crate) fn rfc3339_nanos(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t.max(SystemTime::UNIX_EPOCH)).to_string()
}

/// Parses an RFC 3339 time (any fraction; `Z` or a numeric offset).
pub(crate) fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s.trim()).ok()
}

/// Litestream's cleaning of a path inside a bucket: `path.Clean`, without the leading `/`.
pub(crate) fn clean_prefix(p: &str) -> String {
    crate::paths::clean_path(p)
        .trim_start_matches('/')
        .to_string()
}

impl Settings {
    fn from_config(cfg: &AzureOptions) -> Result<Settings, StorageError> {
        let mut account = non_empty(&cfg.account_name);
        let mut container = non_empty(&cfg.bucket);
        let mut prefix = non_empty(&cfg.path).map(|p| clean_prefix(&p));
        let mut endpoint = non_empty(&cfg.endpoint);
        if let Some(raw) = cfg.url.as_deref().filter(|u| !u.trim().is_empty()) {
            let url = reqwest::Url::parse(raw.trim()).map_err(|e| {
                config_error(
                    crate::paths::redact_url(raw),
                    format!("invalid replica URL: {e}"),
                )
            })?;
            let user = percent_encoding::percent_decode_str(url.username())
                .decode_utf8_lossy()
                .into_owned();
            if account.is_none() && !user.is_empty() {
                account = Some(user);
            }
            if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
                container = Some(host.to_string());
            }
            let path = percent_encoding::percent_decode_str(url.path()).decode_utf8_lossy();
            let path = clean_prefix(&path);
            if !path.is_empty() {
                prefix = Some(path);
            }
            for (k, v) in url.query_pairs() {
                if k == "endpoint" && !v.is_empty() && endpoint.is_none() {
                    endpoint = Some(v.into_owned());
                }
            }
        }
        let container = container.ok_or_else(|| {
            config_error(
                String::new(),
                "container required for abs replica (`bucket`)",
            )
        })?;
        let endpoint = endpoint.map(|e| e.trim_end_matches('/').to_string());
        if account.is_none() && endpoint.is_none() {
            return Err(config_error(
                container,
                "account name required for abs replica (`account-name` or abs://ACCOUNT@container/path)",
            ));
        }
        Ok(Settings {
            account,
            container,
            prefix: prefix.unwrap_or_default(),
            endpoint,
            account_key: non_empty(&cfg.account_key)
                .or_else(|| env_non_empty("LITESTREAM_AZURE_ACCOUNT_KEY")),
            sas_token: non_empty(&cfg.sas_token)
                .or_else(|| env_non_empty("LITESTREAM_AZURE_SAS_TOKEN")),
        })
    }

    /// The account endpoint: configured, or the public cloud's.
    fn endpoint(&self) -> String {
        match (&self.endpoint, &self.account) {
            (Some(e), _) => e.clone(),
            (None, Some(a)) => format!("https://{a}.blob.core.windows.net"),
            // from_config refuses this combination.
            (None, None) => String::new(),
        }
    }

    /// The account name: configured, or (for an emulator-style endpoint
    /// `http://host:port/<account>`) the endpoint's first path segment.
    fn account(&self) -> Option<String> {
        self.account.clone().or_else(|| {
            let url = reqwest::Url::parse(self.endpoint.as_deref()?).ok()?;
            let first = url.path_segments()?.next()?.to_string();
            (!first.is_empty()).then_some(first)
        })
    }

    fn secrets(&self) -> Vec<String> {
        self.account_key
            .iter()
            .chain(self.sas_token.iter())
            .filter(|s| s.len() >= 4)
            .cloned()
            .collect()
    }
}

/// The abs replica's own settings as configured: an `abs://[ACCOUNT@]container/path?endpoint=`
/// URL and/or the keys (the URL's container and path win; the keys' account and endpoint win).
/// `Debug` shows no secret.
#[derive(Clone, Default, PartialEq)]
pub struct AzureOptions {
    /// `abs://[ACCOUNT@]container/path`.
    pub url: Option<String>,
    /// Storage account name.
    pub account_name: Option<String>,
    /// Container, when there is no URL.
    pub bucket: Option<String>,
    /// Path in the container, when there is no URL.
    pub path: Option<String>,
    /// Account endpoint (an emulator's, say).
    pub endpoint: Option<String>,
    /// Account key. Secret.
    pub account_key: Option<String>,
    /// SAS token. Secret.
    pub sas_token: Option<String>,
}

impl std::fmt::Debug for AzureOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureOptions")
            .field("url", &self.url.as_deref().map(crate::paths::redact_url))
            .field("account_name", &self.account_name)
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .field(
                "account_key",
                &self.account_key.as_ref().map(|_| "<redacted>"),
            )
            .field("sas_token", &self.sas_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Opens a bare `abs://` URL.
pub fn open_url(url: &str) -> Result<DynStore, StorageError> {
    open(&AzureOptions {
        url: Some(url.to_string()),
        ..Default::default()
    })
}

/// Builds the store from its options (a `url` and/or explicit keys). Nothing is contacted
/// until the first call.
pub fn open(cfg: &AzureOptions) -> Result<DynStore, StorageError> {
    Ok(Arc::new(AzureStore::new(cfg)?))
}

/// Turns object_store and HTTP failures into [`StorageError`]s that name the container and blob
/// and never hold a secret.
#[derive(Debug, Clone)]
struct ErrorContext {
    container: String,
    endpoint: String,
    secrets: Arc<Vec<String>>,
}

/// What a failed call looked like on the wire.
enum Failure<'a> {
    /// The service answered with an HTTP status; `code` is Azure's error code, if any.
    Status { status: u16, code: Option<String> },
    /// The request never got an answer (connect, timeout, reset).
    Http(&'a HttpError),
    /// Anything else (credential set-up, configuration), with its message.
    Other(String),
    /// An answer that did not parse (a garbled or cut-short body): worth another try.
    Garbled(String),
}

/// Azure's `<Code>…</Code>` from an error body.
fn error_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = body[start..].find("</Code>")? + start;
    Some(body[start..end].trim().to_string()).filter(|c| !c.is_empty())
}

/// The HTTP status object_store quotes in a message: "… status code: 503 Service Unavailable …".
fn status_in_message(text: &str) -> Option<u16> {
    let i = text.find("status code: ")? + "status code: ".len();
    text.get(i..i + 3)?.parse().ok()
}

/// The innermost message of an error chain: usually the one that says what happened
/// ("Connection refused (os error 111)").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl ErrorContext {
    fn key(&self, blob: &str) -> String {
        format!("{}/{blob}", self.container)
    }

    /// Removes secrets and URL query strings (a SAS signature travels in one) from a message.
    fn scrub(&self, msg: &str) -> String {
        let mut out = msg.to_string();
        for s in self.secrets.iter() {
            out = out.replace(s.as_str(), "<redacted>");
        }
        out.split(' ')
            .map(|w| match w.find('?') {
                Some(i) if w.contains("://") => &w[..i],
                _ => w,
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// What an object_store error was on the wire. object_store keeps its retry error (which has
    /// the status) private, so the status comes from the variant, or else from its message
    /// ("… status code: 503 …"); Azure's error code travels in the body it quotes.
    fn classify(e: &object_store::Error) -> Failure<'_> {
        let text = e.to_string();
        let status = match e {
            object_store::Error::NotFound { .. } => Some(404),
            object_store::Error::PermissionDenied { .. } => Some(403),
            object_store::Error::Unauthenticated { .. } => Some(401),
            object_store::Error::AlreadyExists { .. } => Some(409),
            object_store::Error::Precondition { .. } => Some(412),
            _ => None,
        };
        if let Some(status) = status {
            return Failure::Status {
                status,
                code: error_code(&text),
            };
        }
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(h) = err.downcast_ref::<HttpError>() {
                return Failure::Http(h);
            }
            cur = err.source();
        }
        if let Some(status) = status_in_message(&text) {
            return Failure::Status {
                status,
                code: error_code(&text),
            };
        }
        use object_store::Error as E;
        match e {
            E::NotSupported { .. }
            | E::NotImplemented { .. }
            | E::InvalidPath { .. }
            | E::UnknownConfigurationKey { .. }
            | E::NotModified { .. } => Failure::Other(text),
            // A response that did not decode (a list body cut short or garbled), a join error.
            _ => Failure::Garbled(text),
        }
    }

    /// Maps a failure of object_store's `op` on `blob`.
    fn map_os(&self, op: &str, blob: &str, e: object_store::Error) -> StorageError {
        let key = self.key(blob);
        let failure = Self::classify(&e);
        self.map_failure(op, key, failure, &e)
    }

    fn map_failure(
        &self,
        op: &str,
        key: String,
        failure: Failure<'_>,
        e: &(dyn std::error::Error + 'static),
    ) -> StorageError {
        let permanent = |message: String| StorageError::Permanent {
            backend: BACKEND,
            key: key.clone(),
            message: self.scrub(&message),
        };
        let transient = |message: String| StorageError::Transient {
            backend: BACKEND,
            key: key.clone(),
            message: self.scrub(&message),
        };
        match failure {
            Failure::Status { status, code } => {
                let code_s = code.clone().unwrap_or_default();
                let what = format!("{op}: HTTP {status} {code_s}")
                    .trim_end()
                    .to_string();
                match status {
                    404 if code_s == "ContainerNotFound" => permanent(format!(
                        "{op}: container {:?} not found at {}",
                        self.container, self.endpoint
                    )),
                    404 => StorageError::NotFound {
                        backend: BACKEND,
                        key,
                    },
                    401 | 403 => permanent(format!(
                        "{what}: access denied to container {:?}; check account-name, account-key or sas-token",
                        self.container
                    )),
                    408 | 429 | 500..=599 => transient(what),
                    _ => permanent(what),
                }
            }
            Failure::Http(h) => {
                let cause = root_cause(e);
                if crate::storage::http_failure_is_transient(h.kind(), &cause) {
                    transient(format!("{op}: cannot reach {}: {cause}", self.endpoint))
                } else {
                    permanent(format!("{op}: {cause}"))
                }
            }
            Failure::Other(msg) => permanent(format!("{op}: {msg}")),
            Failure::Garbled(msg) => transient(format!("{op}: {msg}")),
        }
    }
}

/// An Azure Blob Storage container (and a path in it) as a replica.
pub struct AzureStore {
    store: Arc<MicrosoftAzure>,
    rest: rest::RestClient,
    settings: Settings,
    errors: ErrorContext,
}

impl std::fmt::Debug for AzureStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureStore")
            .field("location", &self.describe())
            .finish()
    }
}

/// object_store's own retries stay short: the callers ([`super::retry`]) retry transient errors
/// with their own policy, and a dead endpoint must fail within seconds, not minutes.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 2,
        retry_timeout: Duration::from_secs(20),
    }
}

fn client_options(endpoint: &str) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(endpoint.starts_with("http://"))
        .with_connect_timeout(Duration::from_secs(10))
        // Whole requests, bodies included: a large snapshot must have time to stream.
        .with_timeout(Duration::from_secs(600))
}

impl AzureStore {
    /// A store for the container and path a replica config names.
    pub fn new(cfg: &AzureOptions) -> Result<AzureStore, StorageError> {
        let settings = Settings::from_config(cfg)?;
        let endpoint = settings.endpoint();
        let account = settings.account().ok_or_else(|| {
            config_error(
                settings.container.clone(),
                "account name required for abs replica (`account-name`)",
            )
        })?;
        let errors = ErrorContext {
            container: settings.container.clone(),
            endpoint: endpoint.clone(),
            secrets: Arc::new(settings.secrets()),
        };
        let explicit = settings.account_key.is_some() || settings.sas_token.is_some();
        let mut b = if explicit {
            MicrosoftAzureBuilder::new()
        } else {
            // The default chain: AZURE_* variables, workload or managed identity.
            MicrosoftAzureBuilder::from_env()
        };
        b = b
            .with_account(account.clone())
            .with_container_name(settings.container.clone())
            .with_endpoint(endpoint.clone())
            .with_allow_http(endpoint.starts_with("http://"))
            .with_retry(retry_config())
            .with_client_options(client_options(&endpoint));
        if let Some(key) = &settings.account_key {
            object_store::azure::AzureAccessKey::try_new(key).map_err(|_| {
                config_error(
                    settings.container.clone(),
                    "account-key is not valid base64 (check account-key or LITESTREAM_AZURE_ACCOUNT_KEY)",
                )
            })?;
            b = b.with_access_key(key.clone());
        } else if let Some(sas) = &settings.sas_token {
            b = b.with_config(AzureConfigKey::SasKey, sas.clone());
        }
        let store = b.build().map_err(|e| {
            let msg = errors.scrub(&e.to_string());
            config_error(
                settings.container.clone(),
                format!("cannot set up client: {msg}"),
            )
        })?;
        let rest = rest::RestClient::new(
            &endpoint,
            &settings.container,
            account,
            store.credentials().clone(),
            &client_options(&endpoint),
        )
        .map_err(|msg| config_error(settings.container.clone(), errors.scrub(&msg)))?;
        Ok(AzureStore {
            store: Arc::new(store),
            rest,
            settings,
            errors,
        })
    }

    /// `<path>/`, or nothing at the container's root.
    fn root_slash(&self) -> String {
        if self.settings.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.settings.prefix)
        }
    }

    /// Streams the blob `blob` from `offset`.
    async fn download_from(&self, blob: String, offset: u64) -> Result<ByteStream, StorageError> {
        let opts = GetOptions {
            range: (offset > 0).then_some(GetRange::Offset(offset)),
            ..Default::default()
        };
        let result = match self
            .store
            .get_opts(&ObjPath::from(blob.as_str()), opts)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Asking for the bytes after the last one: there are none.
                if offset > 0 {
                    if let Failure::Status { status: 416, .. } = ErrorContext::classify(&e) {
                        return Ok(futures::stream::empty().boxed());
                    }
                }
                return Err(self.errors.map_os("download", &blob, e));
            }
        };
        let errors = self.errors.clone();
        Ok(result
            .into_stream()
            .map_err(move |e| errors.map_os("download", &blob, e))
            .boxed())
    }

    /// `<path>/ltx/<level>/`.
    fn level_prefix(&self, level: u8) -> String {
        if self.settings.prefix.is_empty() {
            format!("ltx/{level}/")
        } else {
            format!("{}/ltx/{level}/", self.settings.prefix)
        }
    }

    /// `<path>/ltx/<level>/<min>-<max>.ltx`.
    fn blob_name(&self, level: u8, min: TxId, max: TxId) -> String {
        format!("{}{}", self.level_prefix(level), ltx::file_name(min, max))
    }

    async fn put_file(
        &self,
        blob: &str,
        src: &std::path::Path,
        created_at: SystemTime,
    ) -> Result<u64, StorageError> {
        let io_err = |source: std::io::Error| StorageError::Io {
            backend: BACKEND,
            path: src.to_path_buf(),
            source,
        };
        let path = ObjPath::from(blob);
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, "application/octet-stream".into());
        attributes.insert(
            Attribute::Metadata(TIMESTAMP_METADATA.into()),
            rfc3339_nanos(created_at).into(),
        );
        let mut file = tokio::fs::File::open(src).await.map_err(io_err)?;
        let len = file.metadata().await.map_err(io_err)?.len();
        if len <= SINGLE_PUT_MAX {
            let mut buf = Vec::with_capacity(len as usize);
            file.read_to_end(&mut buf).await.map_err(io_err)?;
            let size = buf.len() as u64;
            let opts = PutOptions {
                attributes,
                ..Default::default()
            };
            self.store
                .put_opts(&path, PutPayload::from(buf), opts)
                .await
                .map_err(|e| self.map_write_err(blob, e))?;
            return Ok(size);
        }
        let opts = PutMultipartOptions {
            attributes,
            ..Default::default()
        };
        let upload = self
            .store
            .put_multipart_opts(&path, opts)
            .await
            .map_err(|e| self.map_write_err(blob, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, BLOCK_SIZE);
        let mut size = 0u64;
        let result: Result<(), StorageError> = async {
            let mut chunk = vec![0u8; BLOCK_SIZE];
            loop {
                let n = file.read(&mut chunk).await.map_err(io_err)?;
                if n == 0 {
                    return Ok(());
                }
                size += n as u64;
                w.wait_for_capacity(BLOCK_CONCURRENCY)
                    .await
                    .map_err(|e| self.map_write_err(blob, e))?;
                w.write(&chunk[..n]);
            }
        }
        .await;
        match result {
            Ok(()) => {
                w.finish().await.map_err(|e| self.map_write_err(blob, e))?;
                Ok(size)
            }
            Err(e) => {
                // Uncommitted blocks are discarded by the service; nothing partial is visible.
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// Maps a failure of a call made without object_store ([`rest`]).
    fn map_rest(&self, op: &str, blob: &str, f: rest::RestFailure) -> StorageError {
        let key = self.errors.key(blob);
        match f {
            rest::RestFailure::Status { status, code } => self.errors.map_failure(
                op,
                key,
                Failure::Status { status, code },
                &std::io::Error::other(op.to_string()),
            ),
            rest::RestFailure::Http(h) => {
                let failure = Failure::Http(&h);
                self.errors.map_failure(op, key, failure, &h)
            }
            rest::RestFailure::Other(msg) => StorageError::Permanent {
                backend: BACKEND,
                key,
                message: self.errors.scrub(&format!("{op}: {msg}")),
            },
            rest::RestFailure::Transient(msg) => StorageError::Transient {
                backend: BACKEND,
                key,
                message: self.errors.scrub(&format!("{op}: {msg}")),
            },
        }
    }

    /// A write that finds nothing (404) means the container is missing, not the blob.
    fn map_write_err(&self, blob: &str, e: object_store::Error) -> StorageError {
        match self.errors.map_os("upload", blob, e) {
            StorageError::NotFound { key, .. } => StorageError::Permanent {
                backend: BACKEND,
                key,
                message: format!(
                    "upload: container {:?} not found at {}",
                    self.settings.container, self.errors.endpoint
                ),
            },
            other => other,
        }
    }
}

#[async_trait]
impl ReplicaStore for AzureStore {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn describe(&self) -> String {
        let account = self.settings.account().unwrap_or_default();
        let mut s = format!("abs://{account}@{}", self.settings.container);
        if !self.settings.prefix.is_empty() {
            s.push('/');
            s.push_str(&self.settings.prefix);
        }
        s
    }

    async fn ltx_files(&self, level: u8) -> Result<Vec<LtxFileInfo>, StorageError> {
        let prefix = self.level_prefix(level);
        let blobs = self
            .rest
            .list(&prefix)
            .await
            .map_err(|f| self.map_rest("list", &prefix, f))?;
        let mut out = Vec::with_capacity(blobs.len());
        for b in blobs {
            let Some(name) = b.name.strip_prefix(&prefix) else {
                continue;
            };
            // Only direct children; temp files and strangers don't parse.
            let Some((min_txid, max_txid)) = ltx::parse_file_name(name) else {
                continue;
            };
            let created_at = b
                .timestamp
                .as_deref()
                .and_then(parse_rfc3339)
                .or(b.created)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push(LtxFileInfo {
                level,
                min_txid,
                max_txid,
                size: b.size,
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
        self.download_from(self.blob_name(level, min, max), offset)
            .await
    }

    async fn list_objects(&self, prefix: &str) -> Result<Vec<super::ObjectInfo>, StorageError> {
        let root = self.root_slash();
        let full = format!("{root}{prefix}");
        let blobs = self
            .rest
            .list(&full)
            .await
            .map_err(|f| self.map_rest("list", &full, f))?;
        Ok(blobs
            .into_iter()
            .filter_map(|b| {
                Some(super::ObjectInfo {
                    key: b.name.strip_prefix(&root)?.to_string(),
                    size: b.size,
                    modified: b.created.unwrap_or(SystemTime::UNIX_EPOCH),
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
        let blob = self.blob_name(level, min, max);
        let size = self.put_file(&blob, src, created_at).await?;
        Ok(LtxFileInfo {
            level,
            min_txid: min,
            max_txid: max,
            size,
            created_at,
        })
    }

    async fn delete_ltx_files(&self, files: &[LtxFileInfo]) -> Result<(), StorageError> {
        let blobs: Vec<String> = files
            .iter()
            .map(|f| self.blob_name(f.level, f.min_txid, f.max_txid))
            .collect();
        futures::stream::iter(blobs)
            .map(|blob| async move {
                self.rest
                    .delete(&blob)
                    .await
                    .map(drop)
                    .map_err(|f| self.map_rest("delete", &blob, f))
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
