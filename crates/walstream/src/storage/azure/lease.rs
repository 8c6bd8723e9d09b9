//! The lease object ([`super::super::LEASE_KEY`] under the replica's path) with Azure's
//! conditional writes: `If-None-Match: *` creates it only if absent, `If-Match: <etag>` replaces
//! it only if unchanged (object_store's `PutMode::Create` / `PutMode::Update`). Azure answers a
//! failed condition with 412 (Azurite with 409); either is a [`StorageError::Conflict`]. The
//! version is the blob's ETag.
use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{GetOptions, ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{AzureStore, BACKEND};
use crate::storage::{LeaseObject, LeaseVersion, StorageError, LEASE_KEY};

impl AzureStore {
    /// `<path>/.walstream/lease`.
    fn lease_blob(&self) -> String {
        if self.settings.prefix.is_empty() {
            LEASE_KEY.to_string()
        } else {
            format!("{}/{LEASE_KEY}", self.settings.prefix)
        }
    }

    fn no_etag(&self, blob: &str) -> StorageError {
        StorageError::Permanent {
            backend: BACKEND,
            key: self.errors.key(blob),
            message: "lease: the service returned no ETag".to_string(),
        }
    }

    pub(super) async fn lease_read(&self) -> Result<Option<LeaseObject>, StorageError> {
        let blob = self.lease_blob();
        let got = match self
            .store
            .get_opts(&ObjPath::from(blob.as_str()), GetOptions::default())
            .await
        {
            Ok(g) => g,
            Err(e) => {
                return match self.errors.map_os("read lease", &blob, e) {
                    StorageError::NotFound { .. } => Ok(None),
                    other => Err(other),
                }
            }
        };
        let e_tag = got.meta.e_tag.clone().ok_or_else(|| self.no_etag(&blob))?;
        let data = got
            .bytes()
            .await
            .map_err(|e| self.errors.map_os("read lease", &blob, e))?;
        Ok(Some(LeaseObject {
            data,
            version: LeaseVersion(e_tag),
        }))
    }

    pub(super) async fn lease_write(
        &self,
        data: Bytes,
        expected: Option<&LeaseVersion>,
    ) -> Result<LeaseVersion, StorageError> {
        let blob = self.lease_blob();
        let mode = match expected {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion {
                e_tag: Some(v.0.clone()),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&ObjPath::from(blob.as_str()), PutPayload::from(data), opts)
            .await
        {
            Ok(r) => r.e_tag.map(LeaseVersion).ok_or_else(|| self.no_etag(&blob)),
            Err(
                e @ (object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }),
            ) => {
                let what = match expected {
                    None => "the lease exists already",
                    Some(_) => "the lease was changed or removed by someone else",
                };
                let code = super::error_code(&e.to_string()).unwrap_or_default();
                Err(StorageError::Conflict {
                    backend: BACKEND,
                    key: self.errors.key(&blob),
                    message: format!("conditional write refused: {what} {code}")
                        .trim_end()
                        .to_string(),
                })
            }
            Err(e) => Err(self.map_write_err(&blob, e)),
        }
    }
}
