//! Internal keys: 32-byte keys the service uses for itself (the token verifier key, the audit
//! key), wrapped under a master key version like data keys, so a database dump alone cannot
//! forge what they protect. Created on first use (race-safe: insert or nothing, then read),
//! unwrapped once and kept in memory (wiped on drop), and re-wrapped by the master key
//! rotation in its own transaction (see `rotation.rs`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{PgConnection, PgPool};
use zeroize::Zeroizing;

use super::{KeyError, MasterKeyring};
use crate::crypto::envelope;
use crate::crypto::MasterKey;
use crate::store::{self, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InternalKeyPurpose {
    /// Token verifiers: HMAC-SHA256 over the token's SHA-256.
    Token,
    /// The audit trail's keyed chain (issue 10).
    Audit,
}

impl InternalKeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            InternalKeyPurpose::Token => "token",
            InternalKeyPurpose::Audit => "audit",
        }
    }
}

/// An unwrapped internal key. Prints as `[redacted]`; its bytes are wiped on drop.
pub struct InternalKey {
    purpose: InternalKeyPurpose,
    bytes: Zeroizing<[u8; 32]>,
    /// HMAC-SHA256 with the key already absorbed (the inner and outer pads hashed once, not
    /// on every tag: the audit chain tags every event). As secret as the key: overwritten on
    /// drop, see `Drop`.
    keyed: Hmac<Sha256>,
}

impl Drop for InternalKey {
    fn drop(&mut self) {
        // Hmac's state has no `Zeroize`: overwrite it in place with the state of an all-zero
        // key (a volatile write, so it is not optimised away as a dead store).
        let blank = <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).expect("any key length");
        // SAFETY: `self.keyed` is a valid, aligned, initialised place; the old value is
        // plain data (no heap, no Drop), so overwriting it without dropping it leaks nothing.
        unsafe { std::ptr::write_volatile(&mut self.keyed, blank) };
    }
}

impl std::fmt::Debug for InternalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InternalKey({}, [redacted])", self.purpose.as_str())
    }
}

impl InternalKey {
    fn generate(purpose: InternalKeyPurpose) -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, bytes.as_mut());
        Self::from_bytes(purpose, bytes)
    }

    fn from_bytes(purpose: InternalKeyPurpose, bytes: Zeroizing<[u8; 32]>) -> Self {
        let keyed = <Hmac<Sha256> as Mac>::new_from_slice(bytes.as_ref()).expect("any key length");
        Self {
            purpose,
            bytes,
            keyed,
        }
    }

    /// HMAC-SHA256 of `data` under this key.
    pub fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// Checks a tag made by `mac`, in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.keyed.clone();
        mac.update(data);
        mac.verify_slice(tag).is_ok()
    }

    fn wrap(&self, master: &MasterKey) -> Vec<u8> {
        envelope::wrap_internal_key(master, self.purpose.as_str(), &self.bytes)
    }
}

pub struct InternalKeys {
    pool: PgPool,
    masters: Arc<MasterKeyring>,
    loaded: RwLock<HashMap<InternalKeyPurpose, Arc<InternalKey>>>,
}

impl InternalKeys {
    pub fn new(pool: PgPool, masters: Arc<MasterKeyring>) -> Self {
        Self {
            pool,
            masters,
            loaded: RwLock::new(HashMap::new()),
        }
    }

    /// The key if this process has it in memory already (the hot path).
    pub fn cached(&self, purpose: InternalKeyPurpose) -> Option<Arc<InternalKey>> {
        self.loaded.read().unwrap().get(&purpose).cloned()
    }

    /// The key, created on first use.
    pub async fn get(&self, purpose: InternalKeyPurpose) -> Result<Arc<InternalKey>, KeyError> {
        self.get_or_create_with(purpose, async |_, _| Ok(())).await
    }

    /// The key, created on first use; `on_create` runs in the creating transaction, only in
    /// the one process that creates it (e.g. to fill in what the key protects).
    pub async fn get_or_create_with(
        &self,
        purpose: InternalKeyPurpose,
        on_create: impl AsyncFnOnce(&mut PgConnection, &InternalKey) -> Result<(), KeyError>,
    ) -> Result<Arc<InternalKey>, KeyError> {
        if let Some(key) = self.cached(purpose) {
            return Ok(key);
        }
        if let Some(key) = self.load(purpose).await? {
            return Ok(key);
        }
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        // A master key rotation must not re-wrap the table while we insert under the old key.
        store::master_keys::lock_wrap_shared(&mut tx).await?;
        let master = match store::master_keys::active_master_version(&mut *tx).await? {
            Some(v) => self.masters.get_or_refresh(&self.pool, v).await?,
            None => self.masters.active().ok_or(KeyError::MasterVersionMissing(
                self.masters.active_version(),
            ))?,
        };
        let key = InternalKey::generate(purpose);
        let inserted = store::internal_keys::insert_if_missing(
            &mut *tx,
            purpose.as_str(),
            master.version,
            &key.wrap(&master),
        )
        .await?;
        if inserted {
            on_create(&mut tx, &key).await?;
            tracing::info!(purpose = purpose.as_str(), "created internal key");
        }
        tx.commit().await.map_err(StoreError::from)?;
        self.load(purpose)
            .await?
            .ok_or(KeyError::InternalKeyMissing(purpose.as_str()))
    }

    /// Reads and unwraps the stored key, if there is one, and keeps it in memory.
    async fn load(
        &self,
        purpose: InternalKeyPurpose,
    ) -> Result<Option<Arc<InternalKey>>, KeyError> {
        let Some(row) = store::internal_keys::by_purpose(&self.pool, purpose.as_str()).await?
        else {
            return Ok(None);
        };
        let master = self
            .masters
            .get_or_refresh(&self.pool, row.master_key_version)
            .await?;
        let bytes = envelope::unwrap_internal_key(&master, purpose.as_str(), &row.wrapped)
            .map_err(|_| KeyError::InternalKeyIntegrity(purpose.as_str()))?;
        let key = Arc::new(InternalKey::from_bytes(purpose, bytes));
        self.loaded
            .write()
            .unwrap()
            .entry(purpose)
            .or_insert(key.clone());
        Ok(Some(self.cached(purpose).unwrap_or(key)))
    }
}

/// Re-wraps every internal key under `new`, in the master key rotation's transaction.
pub(crate) async fn rewrap_all(
    pool: &PgPool,
    tx: &mut PgConnection,
    masters: &MasterKeyring,
    new: &MasterKey,
) -> Result<u64, KeyError> {
    let rows = store::internal_keys::all_for_update(&mut *tx).await?;
    for row in &rows {
        let old = masters.get_or_refresh(pool, row.master_key_version).await?;
        let bytes = envelope::unwrap_internal_key(&old, &row.purpose, &row.wrapped)
            .map_err(|_| KeyError::InternalKeyIntegrity("stored"))?;
        let wrapped = envelope::wrap_internal_key(new, &row.purpose, &bytes);
        store::internal_keys::rewrap(&mut *tx, &row.purpose, new.version, &wrapped).await?;
    }
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prepared_mac_is_hmac_sha256_under_the_key() {
        let key = InternalKey::generate(InternalKeyPurpose::Audit);
        for data in [&b""[..], b"one event", &[7u8; 300][..]] {
            let mut fresh = <Hmac<Sha256> as Mac>::new_from_slice(key.bytes.as_ref()).unwrap();
            fresh.update(data);
            let expected: [u8; 32] = fresh.finalize().into_bytes().into();
            // Twice: the prepared state must not be consumed by a tag.
            assert_eq!(key.mac(data), expected);
            assert_eq!(key.mac(data), expected);
            assert!(key.verify(data, &expected));
            assert!(!key.verify(data, &[0u8; 32]));
        }
    }
}
