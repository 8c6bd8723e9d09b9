//! A replica's config: every key Litestream 0.5 reads for any replica type, top-level defaults,
//! and the checks Litestream makes before it builds the replica client.
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::values::{self, opt_bool, opt_duration, opt_size};
use crate::paths::{redact_url, split_url};

/// A replica: every key Litestream 0.5.17 reads for any replica type. Top-level replica keys
/// (everything but `type`, `name`, `path` and `url`) are defaults for every database's replica;
/// [`super::Config`] has already merged them in. Backends read the keys of their type from here.
///
/// `Debug` redacts every secret (and the password in a URL), so a replica config may be logged.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct ReplicaConfig {
    /// `type` (file, s3, gs, abs, sftp, ...). A `url`'s scheme wins over it, as in Litestream.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `name`: deprecated, no effect.
    pub name: Option<String>,
    /// URL form, e.g. `s3://bucket/path?endpoint=...&region=...&forcePathStyle=true`.
    pub url: Option<String>,
    /// Path (file replicas), or the path inside a bucket/container/server.
    pub path: Option<String>,
    /// `sync-interval` (default 1 s): how often the replica uploads new files.
    #[serde(default, deserialize_with = "opt_duration")]
    pub sync_interval: Option<Duration>,
    /// `validation-interval` (not supported by walstream yet).
    #[serde(default, deserialize_with = "opt_duration")]
    pub validation_interval: Option<Duration>,
    /// `auto-recover` (not supported by walstream yet).
    #[serde(default, deserialize_with = "opt_bool")]
    pub auto_recover: Option<bool>,
    /// s3/gs/abs/oss/nats: bucket (container for abs).
    pub bucket: Option<String>,
    /// s3: region.
    pub region: Option<String>,
    /// s3/abs: endpoint URL for S3-compatibles or an Azure endpoint.
    pub endpoint: Option<String>,
    /// s3: path-style addressing.
    #[serde(default, deserialize_with = "opt_bool")]
    pub force_path_style: Option<bool>,
    /// s3: access key ID.
    pub access_key_id: Option<String>,
    /// s3: secret access key. Secret.
    pub secret_access_key: Option<String>,
    /// s3: sign the payload.
    #[serde(default, deserialize_with = "opt_bool")]
    pub sign_payload: Option<bool>,
    /// s3: send Content-MD5.
    #[serde(default, deserialize_with = "opt_bool")]
    pub require_content_md5: Option<bool>,
    /// s3: skip TLS verification.
    #[serde(default, deserialize_with = "opt_bool")]
    pub skip_verify: Option<bool>,
    /// s3: storage class.
    pub storage_class: Option<String>,
    /// s3: multipart part size as written (bytes, or a size like `5MB`); checked at load, read
    /// with [`ReplicaConfig::part_size_bytes`].
    #[serde(default, deserialize_with = "opt_size")]
    pub part_size: Option<serde_norway::Value>,
    /// s3: multipart concurrency.
    pub concurrency: Option<u32>,
    /// s3: SSE-C algorithm.
    pub sse_customer_algorithm: Option<String>,
    /// s3: SSE-C key. Secret.
    pub sse_customer_key: Option<String>,
    /// s3: SSE-C key file.
    pub sse_customer_key_path: Option<String>,
    /// s3: SSE-KMS key ID.
    pub sse_kms_key_id: Option<String>,
    /// abs: storage account name.
    pub account_name: Option<String>,
    /// abs: account key. Secret.
    pub account_key: Option<String>,
    /// abs: SAS token. Secret.
    pub sas_token: Option<String>,
    /// sftp: `host[:port]`.
    pub host: Option<String>,
    /// sftp: user.
    pub user: Option<String>,
    /// sftp/nats: password. Secret.
    pub password: Option<String>,
    /// sftp: private key file.
    pub key_path: Option<String>,
    /// sftp: write files concurrently.
    #[serde(default, deserialize_with = "opt_bool")]
    pub concurrent_writes: Option<bool>,
    /// sftp: expected host key (authorized_keys format).
    pub host_key: Option<String>,
    /// webdav: server URL.
    pub webdav_url: Option<String>,
    /// webdav: user name.
    pub webdav_username: Option<String>,
    /// webdav: password. Secret.
    pub webdav_password: Option<String>,
    /// nats: JWT. Secret.
    pub jwt: Option<String>,
    /// nats: NKey seed. Secret.
    pub seed: Option<String>,
    /// nats: credentials file.
    pub creds: Option<String>,
    /// nats: NKey. Secret.
    pub nkey: Option<String>,
    /// nats: user name.
    pub username: Option<String>,
    /// nats: token. Secret.
    pub token: Option<String>,
    /// nats: TLS.
    #[serde(default, deserialize_with = "opt_bool")]
    pub tls: Option<bool>,
    /// nats: CA files.
    pub root_cas: Option<Vec<String>>,
    /// nats: client certificate file.
    pub client_cert: Option<String>,
    /// nats: client key file.
    pub client_key: Option<String>,
    /// nats: reconnect attempts.
    pub max_reconnects: Option<i64>,
    /// nats: wait between reconnects.
    #[serde(default, deserialize_with = "opt_duration")]
    pub reconnect_wait: Option<Duration>,
    /// nats: timeout.
    #[serde(default, deserialize_with = "opt_duration")]
    pub timeout: Option<Duration>,
    /// age encryption, as Litestream 0.3 configured it: its identities decrypt 0.3 backups on
    /// restore; `replicate` refuses it, as Litestream 0.5 does.
    pub age: Option<AgeConfig>,
    /// walstream extension: `lease` (default true) guards the replica against a second writer
    /// with a lease object (`.walstream/lease`) where the store has conditional writes.
    #[serde(default, deserialize_with = "opt_bool")]
    pub lease: Option<bool>,
    /// walstream extension: `lease-ttl` (default 30 s), renewed every third of it.
    #[serde(default, deserialize_with = "opt_duration")]
    pub lease_ttl: Option<Duration>,
}

pub use crate::age_keys::AgeConfig;

/// Default `sync-interval`.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// Keys that hold a secret: never printed.
pub const SECRET_KEYS: &[&str] = &[
    "secret-access-key",
    "sse-customer-key",
    "account-key",
    "sas-token",
    "password",
    "webdav-password",
    "jwt",
    "seed",
    "nkey",
    "token",
];

/// Replica types Litestream 0.5 knows.
pub const KNOWN_TYPES: &[&str] = &["file", "s3", "gs", "abs", "sftp", "webdav", "nats", "oss"];

/// Replica types walstream can open.
pub const SUPPORTED_TYPES: &[&str] = &["file", "s3", "gs", "abs", "sftp"];

macro_rules! merge_fields {
    ($dst:ident, $src:ident, $($f:ident),* $(,)?) => {
        $( if $dst.$f.is_none() { $dst.$f = $src.$f.clone(); } )*
    };
}

impl ReplicaConfig {
    /// Fills every unset key except `type`, `name`, `path` and `url` from `defaults` (the
    /// top-level replica keys), as Litestream's `SetDefaults`.
    pub fn merge_defaults(&mut self, d: &ReplicaConfig) {
        merge_fields!(
            self,
            d,
            sync_interval,
            validation_interval,
            auto_recover,
            bucket,
            region,
            endpoint,
            force_path_style,
            access_key_id,
            secret_access_key,
            sign_payload,
            require_content_md5,
            skip_verify,
            storage_class,
            part_size,
            concurrency,
            sse_customer_algorithm,
            sse_customer_key,
            sse_customer_key_path,
            sse_kms_key_id,
            account_name,
            account_key,
            sas_token,
            host,
            user,
            password,
            key_path,
            concurrent_writes,
            host_key,
            webdav_url,
            webdav_username,
            webdav_password,
            jwt,
            seed,
            creds,
            nkey,
            username,
            token,
            tls,
            root_cas,
            client_cert,
            client_key,
            max_reconnects,
            reconnect_wait,
            timeout,
            age,
            lease,
            lease_ttl,
        );
    }

    /// The replica type: the URL's scheme, else `type`, else `file` (Litestream's rule),
    /// lower-cased.
    pub fn replica_type(&self) -> String {
        if let Some((scheme, _)) = self.url.as_deref().and_then(split_url) {
            return scheme.to_ascii_lowercase();
        }
        match self.kind.as_deref().map(str::trim) {
            Some(k) if !k.is_empty() => k.to_ascii_lowercase(),
            _ => "file".to_string(),
        }
    }

    /// `sync-interval`, or its default (1 s).
    pub fn sync_interval_or_default(&self) -> Duration {
        self.sync_interval.unwrap_or(DEFAULT_SYNC_INTERVAL)
    }

    /// The lease settings, or `None` when `lease: false`.
    pub fn lease_options(&self) -> Option<crate::lease::LeaseOptions> {
        (self.lease != Some(false)).then(|| {
            crate::lease::LeaseOptions::with_ttl(
                self.lease_ttl.unwrap_or(crate::lease::DEFAULT_TTL),
            )
        })
    }

    /// `part-size` in bytes, if set.
    pub fn part_size_bytes(&self) -> Option<u64> {
        self.part_size.as_ref().and_then(values::size_of)
    }

    /// Litestream's checks before it builds the client: what is missing or contradictory.
    /// `Err((key, message))` names the offending key. `from_defaults` lists keys whose value came
    /// from the top-level defaults, for the message.
    pub fn check(&self, from_defaults: &[&str]) -> Result<(), (&'static str, String)> {
        let origin = |key: &str| {
            if from_defaults.contains(&key) {
                format!(" (`{key}` comes from the top-level defaults)")
            } else {
                String::new()
            }
        };
        // `age` is read to restore Litestream 0.3's encrypted backups; `replicate` refuses it
        // (walstream does not write encrypted replicas yet).
        if let Some(age) = &self.age {
            crate::age_keys::check_inline(age).map_err(|m| ("age", m))?;
        }
        if let Some(p) = &self.path {
            if split_url(p).is_some() {
                return Err((
                    "path",
                    "replica path cannot be a url, please use the 'url' field instead".to_string(),
                ));
            }
        }
        if self.sync_interval == Some(Duration::ZERO) {
            return Err((
                "sync-interval",
                format!(
                    "sync interval must be greater than 0{}",
                    origin("sync-interval")
                ),
            ));
        }
        let t = self.replica_type();
        if !KNOWN_TYPES.contains(&t.as_str()) && t != "gcs" {
            let key = if self.url.is_some() { "url" } else { "type" };
            return Err((key, format!("unknown replica type in config: {t:?}")));
        }
        let url = self.url.as_deref().filter(|u| !u.is_empty());
        let parts = url.and_then(split_url).map(|(_, rest)| url_parts(rest));
        let both = |other: &'static str, set: bool| -> Result<(), (&'static str, String)> {
            if url.is_some() && set {
                return Err((
                    other,
                    format!(
                        "cannot specify url & {other} for {t} replica{}",
                        origin(other)
                    ),
                ));
            }
            Ok(())
        };
        let has = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        match t.as_str() {
            "file" => {
                both("path", has(&self.path))?;
                let path = match &parts {
                    Some(p) => p.path_with_host(),
                    None => self.path.clone().unwrap_or_default(),
                };
                if path.is_empty() {
                    return Err(("path", "file replica path required".to_string()));
                }
            }
            "s3" | "gs" | "gcs" | "oss" | "abs" => {
                both("path", has(&self.path))?;
                both("bucket", has(&self.bucket))?;
                let bucket = match &parts {
                    Some(p) => p.host.clone(),
                    None => self.bucket.clone().unwrap_or_default(),
                };
                if bucket.is_empty() {
                    return Err(("bucket", format!("bucket required for {t} replica")));
                }
            }
            "sftp" => {
                both("path", has(&self.path))?;
                both("host", has(&self.host))?;
                let host = parts
                    .as_ref()
                    .map_or_else(|| self.host.clone().unwrap_or_default(), |p| p.host.clone());
                if host.is_empty() {
                    return Err(("host", "host required for sftp replica".to_string()));
                }
                let user = match (&self.user, &parts) {
                    (Some(u), _) if !u.is_empty() => u.clone(),
                    (_, Some(p)) => p.user.clone(),
                    _ => String::new(),
                };
                if user.is_empty() {
                    return Err(("user", "user required for sftp replica".to_string()));
                }
            }
            "webdav" => {
                both("path", has(&self.path))?;
                both("webdav-url", has(&self.webdav_url))?;
                if parts.as_ref().is_none_or(|p| p.host.is_empty()) && !has(&self.webdav_url) {
                    return Err((
                        "webdav-url",
                        "webdav-url required for webdav replica".to_string(),
                    ));
                }
            }
            "nats" => {
                let from_url = parts
                    .as_ref()
                    .is_some_and(|p| !p.path.trim_matches('/').is_empty());
                if !from_url && !has(&self.bucket) {
                    return Err(("bucket", "bucket required for NATS replica".to_string()));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// The parts of a URL after `scheme://`.
struct UrlParts {
    user: String,
    host: String,
    path: String,
}

impl UrlParts {
    /// A `file://` URL's path: the host is its first component (Litestream's reading).
    fn path_with_host(&self) -> String {
        if self.host.is_empty() && self.path.trim_matches('/').is_empty() {
            return String::new();
        }
        format!("/{}{}", self.host, self.path)
    }
}

fn url_parts(rest: &str) -> UrlParts {
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", authority),
    };
    let user = userinfo.split(':').next().unwrap_or("").to_string();
    UrlParts {
        user,
        host: host.to_string(),
        path: path.to_string(),
    }
}

impl fmt::Debug for ReplicaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |v: &Option<String>| v.as_ref().map(|_| "REDACTED");
        let mut d = f.debug_struct("ReplicaConfig");
        macro_rules! plain {
            ($($field:ident),*) => { $( if self.$field.is_some() { d.field(stringify!($field), &self.$field); } )* };
        }
        macro_rules! hidden {
            ($($field:ident),*) => { $( if self.$field.is_some() { d.field(stringify!($field), &secret(&self.$field)); } )* };
        }
        plain!(kind, name);
        if let Some(u) = &self.url {
            d.field("url", &redact_url(u));
        }
        plain!(
            path,
            sync_interval,
            validation_interval,
            auto_recover,
            bucket,
            region,
            endpoint,
            force_path_style,
            access_key_id,
            sign_payload,
            require_content_md5,
            skip_verify,
            storage_class,
            part_size,
            concurrency,
            sse_customer_algorithm,
            sse_customer_key_path,
            sse_kms_key_id,
            account_name,
            host,
            user,
            key_path,
            concurrent_writes,
            host_key,
            webdav_url,
            webdav_username,
            creds,
            username,
            tls,
            root_cas,
            client_cert,
            client_key,
            max_reconnects,
            reconnect_wait,
            timeout,
            lease,
            lease_ttl
        );
        hidden!(
            secret_access_key,
            sse_customer_key,
            account_key,
            sas_token,
            password,
            webdav_password,
            jwt,
            seed,
            nkey,
            token
        );
        if let Some(age) = &self.age {
            d.field(
                "age",
                &format_args!(
                    "{} identities (REDACTED), {} recipients",
                    age.identities.len(),
                    age.recipients.len()
                ),
            );
        }
        d.finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rc(yaml: &str) -> ReplicaConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn replica_type_url_scheme_wins_then_type_then_file() {
        assert_eq!(rc("url: s3://b/p").replica_type(), "s3");
        assert_eq!(rc("type: s3\nurl: file:///x").replica_type(), "file");
        assert_eq!(rc("type: GS\nbucket: b").replica_type(), "gs");
        assert_eq!(rc("path: /x").replica_type(), "file");
    }

    #[test]
    fn replica_debug_redacts_every_secret() {
        let r = rc(
            "url: sftp://u:hunter2@h/p?token=tok1\nsecret-access-key: sek1\n\
                    sse-customer-key: sek2\naccount-key: sek3\nsas-token: sek4\npassword: sek5\n\
                    webdav-password: sek6\njwt: sek7\nseed: sek8\nnkey: sek9\ntoken: sek10\n\
                    age:\n  identities: [AGE-SECRET-KEY-1]\naccess-key-id: AKIDPUBLIC\n",
        );
        let s = format!("{r:?}");
        for secret in [
            "hunter2",
            "tok1",
            "sek1",
            "sek2",
            "sek3",
            "sek4",
            "sek5",
            "sek6",
            "sek7",
            "sek8",
            "sek9",
            "AGE-SECRET",
        ] {
            assert!(!s.contains(secret), "{secret} in {s}");
        }
        assert!(s.contains("AKIDPUBLIC") && s.contains("REDACTED"), "{s}");
        assert!(s.contains("url: \"sftp://h/p\""), "{s}");
    }

    #[test]
    fn replica_merge_defaults_fills_only_unset_settings() {
        let mut r = rc("type: s3\nbucket: mine\n");
        let d = rc("bucket: theirs\nregion: eu\nsecret-access-key: s\npath: nope\nurl: s3://x/y");
        r.merge_defaults(&d);
        assert_eq!(r.bucket.as_deref(), Some("mine"));
        assert_eq!(r.region.as_deref(), Some("eu"));
        assert_eq!(r.secret_access_key.as_deref(), Some("s"));
        assert_eq!(r.path, None);
        assert_eq!(r.url, None);
    }

    #[test]
    fn replica_check_matches_litestream_rules() {
        let err = |y: &str| rc(y).check(&[]).unwrap_err();
        assert_eq!(err("url: s3://b/p\npath: x").0, "path");
        assert!(err("url: s3://b/p\nbucket: x").1.contains("url & bucket"));
        assert!(err("type: s3\npath: x").1.contains("bucket required"));
        assert!(err("type: file").1.contains("file replica path required"));
        assert!(err("path: s3://b/p").1.contains("cannot be a url"));
        assert!(err("url: ftp://x/y").1.contains("unknown replica type"));
        assert!(err("type: sftp\nhost: h").1.contains("user required"));
        assert!(err("url: s3://b/p\nsync-interval: 0s")
            .1
            .contains("greater than 0"));
        assert!(err("url: s3://b/p\nage:\n  recipients: [age1x]")
            .1
            .contains("age.recipients[0]"));
        for ok in [
            "url: s3://b/p",
            "type: s3\nbucket: b\npath: p",
            "path: /x",
            "url: file:///x",
            "url: sftp://u@h:22/p",
            "type: sftp\nhost: h\nuser: u",
            "url: abs://acct@container/p",
            "type: gs\nbucket: b",
        ] {
            assert_eq!(rc(ok).check(&[]), Ok(()), "{ok}");
        }
        let (_, msg) = rc("url: s3://b/p\nbucket: x")
            .check(&["bucket"])
            .unwrap_err();
        assert!(msg.contains("top-level defaults"), "{msg}");
    }

    #[test]
    fn replica_part_size_bytes_and_sync_interval() {
        assert_eq!(rc("part-size: 5MB").part_size_bytes(), Some(5_000_000));
        assert_eq!(rc("part-size: 1024").part_size_bytes(), Some(1024));
        assert!(serde_norway::from_str::<ReplicaConfig>("part-size: lots").is_err());
        assert_eq!(
            rc("sync-interval: 10s").sync_interval_or_default(),
            Duration::from_secs(10)
        );
        assert_eq!(rc("{}").sync_interval_or_default(), DEFAULT_SYNC_INTERVAL);
    }
}
