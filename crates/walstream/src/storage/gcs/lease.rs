//! The lease object ([`LEASE_KEY`] under the replica's path) with GCS preconditions: an upload
//! with `ifGenerationMatch=0` creates it only if absent, `ifGenerationMatch=<generation>`
//! replaces it only if unchanged; a failed precondition (412) is a [`StorageError::Conflict`].
//! The version is the object's generation. A read takes the generation from the object's
//! metadata, then the bytes of exactly that generation, so data and version always agree.
use bytes::Bytes;

use super::api::ApiFailure;
use super::{GcsStore, BACKEND};
use crate::storage::{LeaseObject, LeaseVersion, StorageError, LEASE_KEY};

/// Reads that lose a race with a replacement (the generation changed between the two requests)
/// try again this many times.
const READ_ATTEMPTS: usize = 5;

impl GcsStore {
    /// `<path>/.walstream/lease`.
    fn lease_name(&self) -> String {
        if self.prefix.is_empty() {
            LEASE_KEY.to_string()
        } else {
            format!("{}/{LEASE_KEY}", self.prefix)
        }
    }

    pub(super) async fn lease_read(&self) -> Result<Option<LeaseObject>, StorageError> {
        let name = self.lease_name();
        let bearer = self.bearer("read lease", &name).await?;
        for _ in 0..READ_ATTEMPTS {
            let Some(generation) = self
                .api
                .generation(&name, &bearer)
                .await
                .map_err(|f| self.map("read lease", &name, f))?
            else {
                return Ok(None);
            };
            if let Some(data) = self
                .api
                .download_generation(&name, generation, &bearer)
                .await
                .map_err(|f| self.map("read lease", &name, f))?
            {
                return Ok(Some(LeaseObject {
                    data,
                    version: LeaseVersion(generation.to_string()),
                }));
            }
        }
        Err(StorageError::Transient {
            backend: BACKEND,
            key: self.key(&name),
            message: format!("read lease: the object changed under each of {READ_ATTEMPTS} reads"),
        })
    }

    pub(super) async fn lease_write(
        &self,
        data: Bytes,
        expected: Option<&LeaseVersion>,
    ) -> Result<LeaseVersion, StorageError> {
        let name = self.lease_name();
        let conflict = |what: &str| StorageError::Conflict {
            backend: BACKEND,
            key: self.key(&name),
            message: format!("conditional write refused: {what}"),
        };
        let generation = match expected {
            None => 0,
            // Generations are positive integers: anything else cannot be the current one.
            Some(v) => match v.0.parse::<u64>() {
                Ok(g) if g > 0 => g,
                _ => return Err(conflict("the lease is not at that version")),
            },
        };
        let bearer = self.bearer("write lease", &name).await?;
        match self
            .api
            .upload_if_generation(&name, data.to_vec(), generation, &bearer)
            .await
        {
            Ok(g) => Ok(LeaseVersion(g.to_string())),
            Err(ApiFailure::Status { status: 412, .. }) => Err(conflict(match expected {
                None => "the lease exists already (HTTP 412)",
                Some(_) => "the lease was changed or removed by someone else (HTTP 412)",
            })),
            Err(f) => Err(self.map("write lease", &name, f)),
        }
    }
}
