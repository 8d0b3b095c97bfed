//! Secret envelopes: the one place a secret value is sealed under a tenant's data key and
//! opened again. Callers hand over the secret's place (tenant, key, version) and the bytes;
//! the header check, the key lookup and the retry after a concurrent re-encryption live here.

use std::future::Future;

use super::{DataKeyring, KeyError};
use crate::crypto::{envelope, DataKey, SecretValue};
use crate::domain::{DataKeyId, SecretKey, TenantId};

pub use crate::crypto::SecretPlace;

/// Reads of a row whose data key was destroyed meanwhile, before the read gives up.
const READ_ATTEMPTS: usize = 3;

/// A secret ciphertext as its row stores it.
pub struct StoredSecret {
    pub version: i32,
    /// The secret row's id (bound into new envelopes' associated data).
    pub secret_id: uuid::Uuid,
    pub envelope: Vec<u8>,
    /// The data key the row says it is under; the envelope's header must agree.
    pub data_key_id: DataKeyId,
}

impl DataKeyring {
    /// Encrypts a value for one place under `key` (the tenant's active key, whose encryption
    /// the caller counts).
    pub fn seal_secret(
        &self,
        key: &DataKey,
        place: SecretPlace<'_>,
        value: &SecretValue,
    ) -> Vec<u8> {
        envelope::seal_secret(key, place, value)
    }

    /// Opens a stored ciphertext with the data key its header names, which must be the key
    /// its row names (`data_key_id`) and belong to the place's tenant.
    pub async fn open_secret(
        &self,
        place: SecretPlace<'_>,
        data_key_id: DataKeyId,
        sealed: &[u8],
    ) -> Result<SecretValue, KeyError> {
        let header_key =
            envelope::secret_data_key_id(sealed).map_err(|_| KeyError::SecretIntegrity)?;
        if header_key != data_key_id {
            return Err(KeyError::SecretIntegrity);
        }
        let key = self.get(place.tenant, header_key).await?;
        envelope::open_secret(&key, place, sealed).map_err(|_| KeyError::SecretIntegrity)
    }

    /// Reads a secret's row with `read` and opens it. The re-encryption job may move the row
    /// to a new data key and destroy the old one between the read and the key lookup: then
    /// the row is read again. `read` answers None when there is no such secret, and carries
    /// along whatever else of the row its caller needs (`T`).
    pub async fn read_secret<T, E, R, Fut>(
        &self,
        tenant: TenantId,
        key: &SecretKey,
        mut read: R,
    ) -> Result<Option<(SecretValue, T)>, E>
    where
        R: FnMut() -> Fut,
        Fut: Future<Output = Result<Option<(StoredSecret, T)>, E>>,
        E: From<KeyError>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let Some((stored, carried)) = read().await? else {
                return Ok(None);
            };
            let place = SecretPlace {
                tenant,
                key,
                version: stored.version,
                secret_id: stored.secret_id,
            };
            match self
                .open_secret(place, stored.data_key_id, &stored.envelope)
                .await
            {
                Ok(value) => return Ok(Some((value, carried))),
                Err(KeyError::Destroyed(_)) if attempts < READ_ATTEMPTS => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
