//! From a replica config (its `url` and its keys) and the environment to [`Settings`], and from
//! [`Settings`] to an object_store client.
//!
//! Precedence, per setting: the config's own keys, then the URL's query (`endpoint`, `region`,
//! `forcePathStyle`, `skipVerify`, `signPayload`/`sign-payload`,
//! `requireContentMD5`/`require-content-md5`), then what the URL's host says (Litestream's
//! `ParseHost`: `bucket.localhost:9000`, `bucket.s3.REGION.amazonaws.com`, DigitalOcean,
//! Backblaze B2, Filebase, Scaleway), then the environment (`LITESTREAM_S3_ENDPOINT`,
//! `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`; `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's
//! region).
//!
//! - Addressing: path-style when an endpoint is set (unless `forcePathStyle=false` /
//!   `force-path-style: false`) or when asked for; virtual-host otherwise.
//! - Region: as above; with a custom endpoint and none given, `us-east-1`; on AWS with none
//!   given, looked up from the bucket (`x-amz-bucket-region` of a HEAD) when the store is first
//!   used.
//! - An endpoint without a scheme gets `http://` in the URL query (as Litestream does there) and
//!   `https://` elsewhere.
//! - `AWS_CA_BUNDLE` adds root certificates for https only, so a plain-http endpoint keeps
//!   working with it set (Litestream 0.5.17 fails there).
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, Certificate, ClientOptions, RetryConfig};

use super::credential::{self, Credentials, Env};
use super::url::{litestream_url_path, normalize_prefix, parse_bool, parse_url, with_scheme};

/// Litestream's (and the AWS SDK's) default part size: 5 MiB, also S3's minimum.
pub const DEFAULT_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's smallest allowed part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Parts uploaded at once, as the AWS SDK's uploader.
pub const DEFAULT_CONCURRENCY: usize = 5;
/// Region for custom endpoints that name none, and Litestream's default.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The s3 replica's own settings as configured (the config layer fills them from a replica's
/// keys; a bare URL fills `url` only). Resolved against the URL and the environment by
/// [`settings`]. `Debug` shows no secret.
#[derive(Clone, Default, PartialEq)]
pub struct S3Options {
    /// `s3://bucket/path?query` (its query may set endpoint, region and flags).
    pub url: Option<String>,
    /// Bucket, when there is no URL.
    pub bucket: Option<String>,
    /// Path in the bucket, when there is no URL.
    pub path: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store.
    pub endpoint: Option<String>,
    /// Path-style addressing.
    pub force_path_style: Option<bool>,
    /// Access key ID.
    pub access_key_id: Option<String>,
    /// Secret access key. Secret.
    pub secret_access_key: Option<String>,
    /// Sign the payload.
    pub sign_payload: Option<bool>,
    /// Skip TLS verification.
    pub skip_verify: Option<bool>,
    /// Storage class for new objects.
    pub storage_class: Option<String>,
    /// Multipart part size in bytes.
    pub part_size: Option<u64>,
    /// Parts uploaded at once.
    pub concurrency: Option<u32>,
    /// SSE-C algorithm (only `AES256`).
    pub sse_customer_algorithm: Option<String>,
    /// SSE-C key. Secret.
    pub sse_customer_key: Option<String>,
    /// SSE-C key file.
    pub sse_customer_key_path: Option<String>,
    /// SSE-KMS key ID.
    pub sse_kms_key_id: Option<String>,
}

impl S3Options {
    /// Options for a bare `s3://` URL.
    pub fn from_url(url: &str) -> S3Options {
        S3Options {
            url: Some(url.to_string()),
            ..Default::default()
        }
    }
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "REDACTED");
        f.debug_struct("S3Options")
            .field("url", &self.url.as_deref().map(crate::paths::redact_url))
            .field("bucket", &self.bucket)
            .field("path", &self.path)
            .field("region", &self.region)
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(crate::paths::redact_url),
            )
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("sse_customer_key", &hidden(&self.sse_customer_key))
            .finish_non_exhaustive()
    }
}

/// Everything the S3 store needs, resolved. `Debug` shows no secret.
#[derive(Clone)]
pub struct Settings {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// The prefix Litestream 0.5 would use for the same config, when it differs from ours.
    pub litestream_prefix: Option<String>,
    /// Region, if known before the first request.
    pub region: Option<String>,
    /// Custom endpoint (`scheme://host[:port]`), if any.
    pub endpoint: Option<String>,
    /// Path-style addressing.
    pub path_style: bool,
    /// Credentials.
    pub(crate) credentials: Credentials,
    /// Skip TLS certificate checks.
    pub skip_verify: bool,
    /// Sign the payload (SigV4 `x-amz-content-sha256` of the body) rather than `UNSIGNED-PAYLOAD`.
    pub sign_payload: bool,
    /// Storage class for new objects.
    pub storage_class: Option<String>,
    /// Files larger than this go up as multipart uploads of this part size.
    pub part_size: u64,
    /// Parts in flight at once.
    pub concurrency: usize,
    /// SSE-KMS key ID.
    pub sse_kms_key_id: Option<String>,
    /// SSE-C key, base64 of 32 bytes.
    pub(crate) sse_customer_key_b64: Option<String>,
    /// PEM bundle from `AWS_CA_BUNDLE` (path), applied to https endpoints only.
    pub ca_bundle: Option<String>,
    /// Extra object_store settings for the credential chain (web identity, containers, IMDS).
    pub(crate) chain_config: Vec<(AmazonS3ConfigKey, String)>,
    /// Per-read timeout (a stalled response fails after this long).
    pub read_timeout: Duration,
    /// Things to warn about once the store is opened.
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .field("credentials", &self.credentials)
            .field("part_size", &self.part_size)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Values that must never appear in a message: the secret, the session token, the SSE-C key.
    pub fn secrets(&self) -> Vec<String> {
        let mut v = self.credentials.secrets();
        v.extend(self.sse_customer_key_b64.clone());
        v.retain(|s| !s.is_empty());
        v
    }

    /// Where to send requests (for messages): the endpoint, or AWS's for the region.
    pub fn endpoint_for_messages(&self) -> String {
        match &self.endpoint {
            Some(e) => e.clone(),
            None => "AWS S3".to_string(),
        }
    }
}

/// Resolves a replica config against the process environment.
pub fn settings(cfg: &S3Options) -> Result<Settings, String> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(std::path::PathBuf::from);
    let var = credential::process_var;
    settings_with_env(cfg, &Env::new(&var, home))
}

/// Resolves a replica config against `env`. Errors name the key at fault, never a secret.
pub(crate) fn settings_with_env(cfg: &S3Options, env: &Env<'_>) -> Result<Settings, String> {
    let url = cfg
        .url
        .as_deref()
        .filter(|u| !u.is_empty())
        .map(parse_url)
        .transpose()?;
    let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());

    // Bucket and path: from the URL or the keys (not both: config validation says so).
    let (bucket, path_litestream, prefix) = match &url {
        Some(u) => {
            let lp = litestream_url_path(&u.path);
            (u.host.bucket.clone(), lp.clone(), normalize_prefix(&lp))
        }
        None => {
            let p = cfg.path.clone().unwrap_or_default();
            (
                non_empty(&cfg.bucket).unwrap_or_default(),
                p.clone(),
                normalize_prefix(&p),
            )
        }
    };
    if bucket.is_empty() {
        return Err("bucket required for s3 replica".to_string());
    }
    // Litestream's keys are `<path>/<level>/...` even for an empty path; ours skip an empty one.
    let ours = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    let litestream_prefix = (format!("{path_litestream}/") != ours).then_some(path_litestream);

    let query = |names: &[&str]| -> Option<String> {
        url.as_ref().and_then(|u| {
            names
                .iter()
                .find_map(|n| u.query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
                .filter(|v| !v.is_empty())
        })
    };
    let query_bool = |names: &[&str]| -> Result<Option<bool>, String> {
        query(names)
            .map(|v| parse_bool(&v).ok_or_else(|| format!("{}: invalid boolean {v:?}", names[0])))
            .transpose()
    };

    // Endpoint and addressing.
    let endpoint = if let Some(e) = non_empty(&cfg.endpoint) {
        Some(with_scheme(&e, "https"))
    } else if let Some(e) = query(&["endpoint"]) {
        Some(with_scheme(&e, "http"))
    } else if let Some(e) = url.as_ref().and_then(|u| u.host.endpoint.clone()) {
        Some(with_scheme(&e, "https"))
    } else {
        env.var("LITESTREAM_S3_ENDPOINT")
            .or_else(|| env.var("AWS_ENDPOINT_URL_S3"))
            .or_else(|| env.var("AWS_ENDPOINT_URL"))
            .map(|e| with_scheme(&e, "https"))
    };
    // User info in an endpoint is never used to sign, and HTTP clients print it in logs and
    // errors: it is dropped.
    let endpoint = endpoint.map(|e| without_userinfo(e.trim_end_matches('/')));
    let explicit_path_style = match cfg.force_path_style {
        Some(v) => Some(v),
        None => query_bool(&["forcePathStyle", "force-path-style"])?,
    };
    let host_path_style = url.as_ref().is_some_and(|u| u.host.force_path_style);
    let path_style = explicit_path_style.unwrap_or(endpoint.is_some() || host_path_style);

    // Credentials (may also give a region).
    let resolved = credential::resolve(
        cfg.access_key_id.as_deref(),
        cfg.secret_access_key.as_deref(),
        env,
    )?;

    let region = non_empty(&cfg.region)
        .or_else(|| query(&["region"]))
        .or_else(|| url.as_ref().and_then(|u| u.host.region.clone()))
        .or_else(|| env.var("AWS_REGION"))
        .or_else(|| env.var("AWS_DEFAULT_REGION"))
        .or(resolved.profile_region.clone())
        .or_else(|| endpoint.as_ref().map(|_| DEFAULT_REGION.to_string()));

    let skip_verify = match cfg.skip_verify {
        Some(v) => v,
        None => query_bool(&["skipVerify", "skip-verify"])?.unwrap_or(false),
    };
    let sign_payload = match cfg.sign_payload {
        Some(v) => v,
        None => query_bool(&["signPayload", "sign-payload"])?.unwrap_or(true),
    };
    // Accepted for compatibility: object_store always sends Content-MD5 where S3 needs it
    // (DeleteObjects) and no other checksum header.
    query_bool(&["requireContentMD5", "require-content-md5"])?;

    let mut warnings = resolved.warnings.clone();
    let part_size = match cfg.part_size {
        None => DEFAULT_PART_SIZE,
        Some(n) => {
            if n < MIN_PART_SIZE {
                warnings.push(format!(
                    "part-size {n} is below S3's minimum part size; using {MIN_PART_SIZE}"
                ));
                MIN_PART_SIZE
            } else {
                n
            }
        }
    };
    let concurrency = match cfg.concurrency {
        None | Some(0) => DEFAULT_CONCURRENCY,
        Some(n) => n as usize,
    };

    let sse_customer_key_b64 = sse_customer_key(cfg)?;
    let sse_kms_key_id = non_empty(&cfg.sse_kms_key_id);
    if sse_kms_key_id.is_some() && sse_customer_key_b64.is_some() {
        return Err("sse-kms-key-id and sse-customer-key cannot be used together".to_string());
    }

    let mut chain_config = Vec::new();
    if resolved.credentials == Credentials::Chain {
        for (var, key) in [
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                AmazonS3ConfigKey::WebIdentityTokenFile,
            ),
            ("AWS_ROLE_ARN", AmazonS3ConfigKey::RoleArn),
            ("AWS_ROLE_SESSION_NAME", AmazonS3ConfigKey::RoleSessionName),
            ("AWS_ENDPOINT_URL_STS", AmazonS3ConfigKey::StsEndpoint),
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                AmazonS3ConfigKey::ContainerCredentialsRelativeUri,
            ),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                AmazonS3ConfigKey::ContainerCredentialsFullUri,
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                AmazonS3ConfigKey::ContainerAuthorizationTokenFile,
            ),
            (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                AmazonS3ConfigKey::MetadataEndpoint,
            ),
            ("AWS_IMDSV1_FALLBACK", AmazonS3ConfigKey::ImdsV1Fallback),
        ] {
            if let Some(v) = env.var(var) {
                chain_config.push((key, v));
            }
        }
    }

    let read_timeout = env
        .var("WALSTREAM_S3_READ_TIMEOUT")
        .map(|v| {
            humantime::parse_duration(&v)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| format!("WALSTREAM_S3_READ_TIMEOUT: invalid duration {v:?}"))
        })
        .transpose()?
        .unwrap_or(Duration::from_secs(30));

    Ok(Settings {
        bucket,
        prefix,
        litestream_prefix,
        region,
        endpoint,
        path_style,
        credentials: resolved.credentials,
        skip_verify,
        sign_payload,
        storage_class: non_empty(&cfg.storage_class),
        part_size,
        concurrency,
        sse_kms_key_id,
        sse_customer_key_b64,
        ca_bundle: env.var("AWS_CA_BUNDLE"),
        chain_config,
        read_timeout,
        warnings,
    })
}

/// The retry object_store applies to each request (5xx, 429, connection errors, timeouts of
/// safe requests), before any walstream-level retry: a few quick tries so a blip costs little,
/// short enough that the caller's policy stays in charge of long outages.
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(60),
    }
}

/// `scheme://user:pass@host/...` without `user:pass@`.
fn without_userinfo(endpoint: &str) -> String {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return endpoint.to_string();
    };
    let (host, path) = crate::paths::host_and_path(rest);
    format!("{scheme}://{host}{path}")
}

/// Client options: http allowed for http endpoints, the CA bundle for https only, no total
/// request timeout beyond a generous backstop (large files stream for long), but a read timeout
/// so that a stalled response fails.
pub fn client_options(s: &Settings) -> Result<ClientOptions, String> {
    let https = s
        .endpoint
        .as_ref()
        .is_none_or(|e| e.starts_with("https://"));
    let mut o = ClientOptions::new()
        .with_allow_http(!https)
        .with_allow_invalid_certificates(s.skip_verify)
        .with_connect_timeout(Duration::from_secs(10))
        .with_timeout(Duration::from_secs(15 * 60))
        .with_read_timeout(s.read_timeout)
        .with_user_agent(object_store::HeaderValue::from_static(concat!(
            "walstream/",
            env!("CARGO_PKG_VERSION")
        )));
    if let (true, Some(bundle)) = (https, &s.ca_bundle) {
        let pem = std::fs::read(bundle).map_err(|e| format!("AWS_CA_BUNDLE {bundle}: {e}"))?;
        let certs = Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("AWS_CA_BUNDLE {bundle}: {e}"))?;
        for c in certs {
            o = o.with_root_certificate(c);
        }
    }
    Ok(o)
}

/// Builds the object_store client for `region`.
pub fn build(s: &Settings, region: &str) -> Result<AmazonS3, String> {
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&s.bucket)
        .with_region(region)
        .with_client_options(client_options(s)?)
        .with_retry(retry_config())
        .with_virtual_hosted_style_request(!s.path_style)
        .with_unsigned_payload(!s.sign_payload);
    if let Some(e) = &s.endpoint {
        let e = if s.path_style {
            e.clone()
        } else {
            // object_store expects a virtual-hosted endpoint to include the bucket already.
            match e.split_once("://") {
                Some((scheme, host)) => format!("{scheme}://{}.{host}", s.bucket),
                None => format!("https://{}.{e}", s.bucket),
            }
        };
        b = b.with_endpoint(e);
    }
    match &s.credentials {
        Credentials::Static {
            key_id,
            secret,
            token,
            ..
        } => {
            b = b.with_access_key_id(key_id).with_secret_access_key(secret);
            if let Some(t) = token {
                b = b.with_token(t);
            }
        }
        Credentials::Chain => {
            for (k, v) in &s.chain_config {
                b = b.with_config(*k, v);
            }
        }
    }
    if let Some(k) = &s.sse_kms_key_id {
        b = b.with_sse_kms_encryption(k);
    }
    if let Some(k) = &s.sse_customer_key_b64 {
        b = b.with_ssec_encryption(k);
    }
    b.build().map_err(|e| e.to_string())
}

/// The SSE-C key as object_store wants it (base64 of 32 bytes), from `sse-customer-key` or
/// `sse-customer-key-path`; the value may be the raw 32 bytes or their base64.
fn sse_customer_key(cfg: &S3Options) -> Result<Option<String>, String> {
    if let Some(alg) = cfg
        .sse_customer_algorithm
        .as_deref()
        .filter(|a| !a.is_empty())
    {
        if alg != "AES256" {
            return Err(format!(
                "sse-customer-algorithm: unsupported algorithm {alg:?} (only AES256)"
            ));
        }
    }
    let raw = match (
        cfg.sse_customer_key.as_deref().filter(|k| !k.is_empty()),
        cfg.sse_customer_key_path
            .as_deref()
            .filter(|p| !p.is_empty()),
    ) {
        (Some(k), _) => k.trim().as_bytes().to_vec(),
        (None, Some(p)) => {
            let mut b = std::fs::read(p).map_err(|e| format!("sse-customer-key-path {p}: {e}"))?;
            if b.len() != 32 {
                let trimmed = String::from_utf8_lossy(&b).trim().to_string();
                b = trimmed.into_bytes();
            }
            b
        }
        (None, None) => return Ok(None),
    };
    if raw.len() == 32 {
        return Ok(Some(base64_encode(&raw)));
    }
    if raw.len() == 44 && base64_decoded_len(&raw) == Some(32) {
        return Ok(Some(String::from_utf8_lossy(&raw).into_owned()));
    }
    Err("sse-customer-key must be 32 bytes, or their base64".to_string())
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The decoded length of standard base64, if `s` is well-formed.
fn base64_decoded_len(s: &[u8]) -> Option<usize> {
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let pad = s.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2
        || !s[..s.len() - pad]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
    {
        return None;
    }
    Some(s.len() / 4 * 3 - pad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings_of(cfg: S3Options, vars: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let f = move |k: &str| vars.get(k).cloned();
        settings_with_env(&cfg, &Env::new(&f, None))
    }

    fn url(u: &str) -> S3Options {
        S3Options {
            url: Some(u.to_string()),
            ..Default::default()
        }
    }

    #[test]
    /// Bug: user info in an endpoint (`https://user:pass@host`) reached hyper's trace logs and
    /// the connection errors ("cannot connect to https://user:pass@...").
    fn s3_endpoint_userinfo_is_dropped() {
        assert_eq!(
            without_userinfo("https://u:p@127.0.0.1:1"),
            "https://127.0.0.1:1"
        );
        assert_eq!(without_userinfo("http://h:9000/x"), "http://h:9000/x");
        assert_eq!(without_userinfo("h:9000"), "h:9000");
    }

    #[test]
    fn s3_settings_from_url_with_endpoint_query() {
        let s = settings_of(
            url("s3://bkt/app/db?endpoint=127.0.0.1:9000&region=eu-west-1&forcePathStyle=true"),
            &[("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s")],
        )
        .unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.prefix.as_str(), s.region.as_deref()),
            ("bkt", "app/db", Some("eu-west-1"))
        );
        // A scheme-less endpoint in the query is http, as Litestream reads it.
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.path_style && s.sign_payload && s.litestream_prefix.is_none());
        assert_eq!((s.part_size, s.concurrency), (DEFAULT_PART_SIZE, 5));
        assert_eq!(s.secrets(), vec!["s"]);
        assert!(!format!("{s:?}").contains("\"s\""));
    }

    #[test]
    fn s3_settings_addressing_and_region_defaults() {
        // An endpoint alone: path-style and us-east-1.
        let s = settings_of(url("s3://b/p?endpoint=http%3A%2F%2Fh%3A1"), &[]).unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("http://h:1"));
        assert!(s.path_style);
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        // forcePathStyle=false wins.
        let s = settings_of(
            url("s3://b/p?endpoint=http://h:1&forcePathStyle=false"),
            &[],
        )
        .unwrap();
        assert!(!s.path_style);
        // AWS: virtual-host, region from the environment, else unknown (looked up later).
        let s = settings_of(url("s3://b/p"), &[("AWS_DEFAULT_REGION", "sa-east-1")]).unwrap();
        assert!(!s.path_style && s.endpoint.is_none());
        assert_eq!(s.region.as_deref(), Some("sa-east-1"));
        let s = settings_of(url("s3://b/p"), &[]).unwrap();
        assert_eq!(s.region, None);
        // LITESTREAM_S3_ENDPOINT.
        let s = settings_of(
            url("s3://b/p"),
            &[("LITESTREAM_S3_ENDPOINT", "https://minio.example")],
        )
        .unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("https://minio.example"));
        assert!(s.path_style);
        // Config keys beat the URL.
        let mut c = url("s3://b/p?region=x&endpoint=http://q:1");
        c.region = Some("cfg-region".into());
        c.endpoint = Some("minio.local:9000".into());
        c.force_path_style = Some(false);
        let s = settings_of(c, &[]).unwrap();
        assert_eq!(s.region.as_deref(), Some("cfg-region"));
        assert_eq!(s.endpoint.as_deref(), Some("https://minio.local:9000"));
        assert!(!s.path_style);
    }

    #[test]
    fn s3_settings_from_config_keys() {
        let c = S3Options {
            bucket: Some("bk".into()),
            path: Some("backups/app".into()),
            access_key_id: Some("AK".into()),
            secret_access_key: Some("hunter2".into()),
            part_size: Some(8 * 1024 * 1024),
            concurrency: Some(3),
            storage_class: Some("STANDARD_IA".into()),
            sign_payload: Some(false),
            ..Default::default()
        };
        let s = settings_of(
            c,
            &[
                ("AWS_ACCESS_KEY_ID", "other"),
                ("AWS_SECRET_ACCESS_KEY", "x"),
            ],
        )
        .unwrap();
        assert_eq!(
            (s.bucket.as_str(), s.prefix.as_str()),
            ("bk", "backups/app")
        );
        assert_eq!((s.part_size, s.concurrency), (8 * 1024 * 1024, 3));
        assert_eq!(s.storage_class.as_deref(), Some("STANDARD_IA"));
        assert!(!s.sign_payload);
        assert!(matches!(&s.credentials, Credentials::Static { key_id, .. } if key_id == "AK"));
        // Below S3's minimum: raised, with a warning.
        let c = S3Options {
            bucket: Some("bk".into()),
            part_size: Some(1024),
            ..Default::default()
        };
        let s = settings_of(c, &[]).unwrap();
        assert_eq!(s.part_size, MIN_PART_SIZE);
        assert!(s.warnings[0].contains("part-size"), "{:?}", s.warnings);
    }

    #[test]
    fn s3_settings_missing_bucket_and_bad_values_are_errors() {
        assert!(settings_of(url("s3:///path"), &[])
            .unwrap_err()
            .contains("bucket required"));
        assert!(settings_of(S3Options::default(), &[])
            .unwrap_err()
            .contains("bucket"));
        let e = settings_of(url("s3://b/p?skipVerify=maybe"), &[]).unwrap_err();
        assert!(e.contains("skipVerify"), "{e}");
    }

    #[test]
    fn s3_url_path_matches_litestream_keys_or_says_it_differs() {
        for (u, prefix, litestream) in [
            ("s3://b/app/db", "app/db", None),
            ("s3://b//app/./x/../db/", "app/db", None),
            ("s3://b", "", Some(".")),
            ("s3://b/", "", Some("")),
        ] {
            let s = settings_of(url(u), &[]).unwrap();
            assert_eq!(s.prefix, prefix, "{u}");
            assert_eq!(s.litestream_prefix.as_deref(), litestream, "{u}");
        }
        // A config path is used verbatim by Litestream.
        let c = S3Options {
            bucket: Some("b".into()),
            path: Some("/abs/path/".into()),
            ..Default::default()
        };
        let s = settings_of(c, &[]).unwrap();
        assert_eq!(s.prefix, "abs/path");
        assert_eq!(s.litestream_prefix.as_deref(), Some("/abs/path/"));
    }

    #[test]
    fn s3_sse_customer_key_forms() {
        let mut c = S3Options {
            bucket: Some("b".into()),
            sse_customer_algorithm: Some("AES256".into()),
            sse_customer_key: Some("0123456789abcdef0123456789abcdef".into()),
            ..Default::default()
        };
        let s = settings_of(c.clone(), &[]).unwrap();
        let b64 = s.sse_customer_key_b64.clone().unwrap();
        assert_eq!(b64, "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=");
        assert!(s.secrets().contains(&b64));
        c.sse_customer_key = Some(b64.clone());
        assert_eq!(
            settings_of(c.clone(), &[]).unwrap().sse_customer_key_b64,
            Some(b64)
        );
        c.sse_customer_key = Some("short".into());
        let e = settings_of(c.clone(), &[]).unwrap_err();
        assert!(e.contains("32 bytes") && !e.contains("short"), "{e}");
        c.sse_customer_algorithm = Some("DES".into());
        assert!(settings_of(c, &[]).unwrap_err().contains("DES"));
    }

    #[test]
    fn s3_ca_bundle_only_for_https() {
        let dir = tempfile::tempdir().unwrap();
        let bogus = dir.path().join("bundle.pem");
        std::fs::write(&bogus, b"not a certificate").unwrap();
        let b = bogus.display().to_string();
        let s = settings_of(
            url("s3://b/p?endpoint=http://127.0.0.1:1"),
            &[("AWS_CA_BUNDLE", b.as_str())],
        )
        .unwrap();
        assert!(
            client_options(&s).is_ok(),
            "http endpoint must ignore AWS_CA_BUNDLE"
        );
        assert!(build(&s, "us-east-1").is_ok());
        let s = settings_of(
            url("s3://b/p?endpoint=https://127.0.0.1:1"),
            &[("AWS_CA_BUNDLE", "/nonexistent/bundle.pem")],
        )
        .unwrap();
        let e = client_options(&s).unwrap_err();
        assert!(e.contains("AWS_CA_BUNDLE"), "{e}");
    }
}
