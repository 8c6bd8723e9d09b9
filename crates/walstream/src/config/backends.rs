//! From a replica config to a store. Each backend in `storage` takes its own typed options; this
//! module fills them from a [`ReplicaConfig`]'s keys (the URL is passed along: each backend reads
//! its own URL form), and holds the table of backends by `type`. `storage` knows nothing of the
//! config.
//!
//! Adding a backend: its module in `storage` (with its options and `open`), one line in
//! `storage::BACKENDS` (its URL scheme), one line in [`BACKENDS`] here with a function that fills
//! its options, and its test-server script under `scripts/servers/`.
use crate::storage::{self, azure, gcs, s3, sftp, DynStore, StorageError};

use super::ReplicaConfig;

/// How a replica config opens a store of one type.
type Open = fn(&ReplicaConfig) -> Result<DynStore, StorageError>;

/// Backends by `type` (lower case; a URL's scheme when there is no `type`). `file` (and no type
/// at all) is handled by [`open_replica`] itself.
const BACKENDS: &[(&[&str], Open)] = &[
    (&["s3"], open_s3),
    (&["gs", "gcs"], open_gcs),
    (&["abs"], open_azure),
    (&["sftp"], open_sftp),
];

/// Builds the store for a replica config: the type comes from `type:` or the URL's scheme; a
/// plain `path` (or a URL without a scheme) is a file replica.
pub fn open_replica(cfg: &ReplicaConfig) -> Result<DynStore, StorageError> {
    let store = open_backend(cfg)?;
    // `age:` keys: the LTX files are encrypted to the recipients and decrypted with the
    // identities (storage::encrypted).
    match &cfg.age {
        Some(age) if !age.identities.is_empty() || !age.recipients.is_empty() => {
            let keys = crate::age_keys::parse(age).map_err(|e| StorageError::Permanent {
                backend: "config",
                key: store.describe(),
                message: format!("age: {e}"),
            })?;
            Ok(storage::encrypted::EncryptedStore::wrap(store, keys))
        }
        _ => Ok(store),
    }
}

/// The backend's store, without the decorators the config adds.
fn open_backend(cfg: &ReplicaConfig) -> Result<DynStore, StorageError> {
    let scheme = cfg
        .url
        .as_deref()
        .and_then(crate::paths::split_url)
        .map(|(s, _)| s.to_ascii_lowercase());
    let kind = cfg
        .kind
        .clone()
        .map(|k| k.to_ascii_lowercase())
        .or(scheme.clone());
    match kind.as_deref() {
        Some("file") | None => match (&cfg.url, &cfg.path) {
            (Some(u), _) if scheme.as_deref() != Some("s3") => storage::open_url(u),
            (None, Some(p)) => storage::open_url(p),
            _ => Err(StorageError::Permanent {
                backend: "file",
                key: String::new(),
                message: "replica needs a `url` or a `path`".to_string(),
            }),
        },
        Some(kind) => match BACKENDS.iter().find(|(kinds, _)| kinds.contains(&kind)) {
            Some((_, open)) => open(cfg),
            None => Err(StorageError::Permanent {
                backend: "config",
                key: String::new(),
                message: format!("unknown replica type {kind:?}"),
            }),
        },
    }
}

impl ReplicaConfig {
    /// Opens the store this replica config names (see [`open_replica`]).
    pub fn open_store(&self) -> Result<DynStore, StorageError> {
        open_replica(self)
    }

    /// The s3 backend's options from this config's keys. `part-size` must be a size.
    pub fn s3_options(&self) -> Result<s3::S3Options, StorageError> {
        let part_size = match &self.part_size {
            None => None,
            Some(v) => Some(self.part_size_bytes().ok_or_else(|| {
                StorageError::Permanent {
                    backend: "s3",
                    key: self
                        .url
                        .as_deref()
                        .map(crate::paths::redact_url)
                        .or_else(|| self.bucket.clone().map(|b| format!("s3://{b}")))
                        .unwrap_or_default(),
                    message: format!("part-size: invalid size {v:?}"),
                }
            })?),
        };
        Ok(s3::S3Options {
            url: self.url.clone(),
            bucket: self.bucket.clone(),
            path: self.path.clone(),
            region: self.region.clone(),
            endpoint: self.endpoint.clone(),
            force_path_style: self.force_path_style,
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            sign_payload: self.sign_payload,
            skip_verify: self.skip_verify,
            storage_class: self.storage_class.clone(),
            part_size,
            concurrency: self.concurrency,
            sse_customer_algorithm: self.sse_customer_algorithm.clone(),
            sse_customer_key: self.sse_customer_key.clone(),
            sse_customer_key_path: self.sse_customer_key_path.clone(),
            sse_kms_key_id: self.sse_kms_key_id.clone(),
        })
    }

    /// The gs backend's options from this config's keys.
    pub fn gcs_options(&self) -> gcs::GcsOptions {
        gcs::GcsOptions {
            url: self.url.clone(),
            bucket: self.bucket.clone(),
            path: self.path.clone(),
            endpoint: self.endpoint.clone(),
        }
    }

    /// The abs backend's options from this config's keys (`bucket` is the container).
    pub fn azure_options(&self) -> azure::AzureOptions {
        azure::AzureOptions {
            url: self.url.clone(),
            account_name: self.account_name.clone(),
            bucket: self.bucket.clone(),
            path: self.path.clone(),
            endpoint: self.endpoint.clone(),
            account_key: self.account_key.clone(),
            sas_token: self.sas_token.clone(),
        }
    }

    /// The sftp backend's options from this config's keys.
    pub fn sftp_options(&self) -> sftp::SftpOptions {
        sftp::SftpOptions {
            url: self.url.clone(),
            host: self.host.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            key_path: self.key_path.clone(),
            host_key: self.host_key.clone(),
            path: self.path.clone(),
        }
    }
}

fn open_s3(cfg: &ReplicaConfig) -> Result<DynStore, StorageError> {
    s3::open(&cfg.s3_options()?)
}

fn open_gcs(cfg: &ReplicaConfig) -> Result<DynStore, StorageError> {
    gcs::open(&cfg.gcs_options())
}

fn open_azure(cfg: &ReplicaConfig) -> Result<DynStore, StorageError> {
    azure::open(&cfg.azure_options())
}

fn open_sftp(cfg: &ReplicaConfig) -> Result<DynStore, StorageError> {
    sftp::open(&cfg.sftp_options())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rc(yaml: &str) -> ReplicaConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn backends_open_by_type_or_scheme() {
        let s = rc("url: s3://bk/app?endpoint=http://127.0.0.1:9&region=us-east-1")
            .open_store()
            .unwrap();
        assert_eq!((s.kind(), s.describe().as_str()), ("s3", "s3://bk/app"));
        let s = rc("type: file\npath: /var/bk/./x").open_store().unwrap();
        assert_eq!(s.describe(), "file:///var/bk/x");
        let s = rc("path: /var/bk").open_store().unwrap();
        assert_eq!(s.kind(), "file");
        let err = rc("type: webdav\nurl: webdav://h/p")
            .open_store()
            .unwrap_err();
        assert!(err.to_string().contains("unknown replica type"), "{err}");
        let err = rc("type: file").open_store().unwrap_err();
        assert!(err.to_string().contains("`url` or a `path`"), "{err}");
    }

    #[test]
    fn backends_s3_options_carry_every_key() {
        let o = rc("url: s3://b/p\nregion: eu\nendpoint: http://e\nforce-path-style: true\n\
                    access-key-id: AK\nsecret-access-key: sek\nsign-payload: false\nskip-verify: true\n\
                    storage-class: STANDARD_IA\npart-size: 8MiB\nconcurrency: 3\n\
                    sse-kms-key-id: kms\n")
        .s3_options()
        .unwrap();
        assert_eq!(o.url.as_deref(), Some("s3://b/p"));
        assert_eq!(o.region.as_deref(), Some("eu"));
        assert_eq!(o.endpoint.as_deref(), Some("http://e"));
        assert_eq!(o.force_path_style, Some(true));
        assert_eq!(o.secret_access_key.as_deref(), Some("sek"));
        assert_eq!((o.sign_payload, o.skip_verify), (Some(false), Some(true)));
        assert_eq!(o.part_size, Some(8 * 1024 * 1024));
        assert_eq!(o.concurrency, Some(3));
        assert_eq!(o.sse_kms_key_id.as_deref(), Some("kms"));
        assert!(!format!("{o:?}").contains("sek"), "{o:?}");
    }

    #[test]
    fn backends_s3_invalid_part_size_is_an_error_naming_the_key() {
        let c = ReplicaConfig {
            kind: Some("s3".into()),
            bucket: Some("bk".into()),
            part_size: Some(serde_norway::Value::String("lots".into())),
            ..Default::default()
        };
        let err = c.open_store().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("part-size") && msg.contains("s3://bk"),
            "{msg}"
        );
    }

    #[test]
    fn backends_other_options_carry_their_keys() {
        let a = rc(
            "type: abs\naccount-name: acct\nbucket: c\npath: p\nendpoint: http://e\n\
                    account-key: k1\nsas-token: t1",
        )
        .azure_options();
        assert_eq!(
            (
                a.account_name.as_deref(),
                a.bucket.as_deref(),
                a.path.as_deref()
            ),
            (Some("acct"), Some("c"), Some("p"))
        );
        assert_eq!(
            (a.account_key.as_deref(), a.sas_token.as_deref()),
            (Some("k1"), Some("t1"))
        );
        assert!(!format!("{a:?}").contains("k1"), "{a:?}");
        let s = rc(
            "type: sftp\nhost: h:22\nuser: u\npassword: pw1\nkey-path: /k\nhost-key: hk\npath: /p",
        )
        .sftp_options();
        assert_eq!(
            (
                s.host.as_deref(),
                s.user.as_deref(),
                s.key_path.as_deref(),
                s.path.as_deref()
            ),
            (Some("h:22"), Some("u"), Some("/k"), Some("/p"))
        );
        assert!(!format!("{s:?}").contains("pw1"), "{s:?}");
        let g = rc("url: gs://b/p").gcs_options();
        assert_eq!(g.url.as_deref(), Some("gs://b/p"));
    }
}
