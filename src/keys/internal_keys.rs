//! Internal keys: the service's own 32-byte keys (the audit chain's HMAC key, the token key),
//! one per purpose, stored in `internal_keys` wrapped by the master key. Created on first use
//! (race-safe: insert if absent, then read whichever won), unwrapped with the master key
//! version that wrapped it, cached in memory (wiped on drop). The master key rotation
//! re-wraps them in its transaction (`rewrap_all`), so they survive it unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::{PgConnection, PgPool};

use super::{KeyError, MasterKeyring};
use crate::crypto::{envelope, InternalKey, MasterKey};
use crate::store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InternalKeyPurpose {
    Token,
    Audit,
}

impl InternalKeyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            InternalKeyPurpose::Token => "token",
            InternalKeyPurpose::Audit => "audit",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "token" => Some(InternalKeyPurpose::Token),
            "audit" => Some(InternalKeyPurpose::Audit),
            _ => None,
        }
    }
}

pub struct InternalKeyring {
    pool: PgPool,
    masters: Arc<MasterKeyring>,
    unwrapped: Mutex<HashMap<InternalKeyPurpose, Arc<InternalKey>>>,
}

impl InternalKeyring {
    pub fn new(pool: PgPool, masters: Arc<MasterKeyring>) -> Self {
        Self {
            pool,
            masters,
            unwrapped: Mutex::new(HashMap::new()),
        }
    }

    /// The key for `purpose`, created (wrapped under the active master key) on first use.
    pub async fn get(&self, purpose: InternalKeyPurpose) -> Result<Arc<InternalKey>, KeyError> {
        if let Some(key) = self.cached(purpose) {
            return Ok(key);
        }
        let row = match store::internal_keys::get(&self.pool, purpose.as_str()).await? {
            Some(row) => row,
            None => {
                self.create(purpose).await?;
                store::internal_keys::get(&self.pool, purpose.as_str())
                    .await?
                    .ok_or(KeyError::InternalKeyIntegrity(purpose.as_str()))?
            }
        };
        let master = self
            .masters
            .get_or_refresh(&self.pool, row.master_key_version)
            .await?;
        let key = envelope::unwrap_internal_key(&master, purpose.as_str(), &row.wrapped)
            .map_err(|_| KeyError::InternalKeyIntegrity(purpose.as_str()))?;
        let key = Arc::new(key);
        self.unwrapped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(purpose, key.clone());
        Ok(key)
    }

    fn cached(&self, purpose: InternalKeyPurpose) -> Option<Arc<InternalKey>> {
        self.unwrapped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&purpose)
            .cloned()
    }

    /// Inserts a new key unless one exists; under the shared wrap lock, so a rotation cannot
    /// retire the master key version it is wrapped under meanwhile.
    async fn create(&self, purpose: InternalKeyPurpose) -> Result<(), KeyError> {
        let mut tx = self.pool.begin().await.map_err(store::StoreError::from)?;
        store::master_keys::lock_wrap_shared(&mut tx).await?;
        let master = match store::master_keys::active_master_version(&mut *tx).await? {
            Some(v) => self.masters.get_or_refresh(&self.pool, v).await?,
            None => self.masters.active().ok_or(KeyError::MasterVersionMissing(
                self.masters.active_version(),
            ))?,
        };
        let wrapped =
            envelope::wrap_internal_key(&master, purpose.as_str(), &InternalKey::generate());
        store::internal_keys::insert_if_absent(
            &mut *tx,
            purpose.as_str(),
            master.version,
            &wrapped,
        )
        .await?;
        tx.commit().await.map_err(store::StoreError::from)?;
        Ok(())
    }
}

/// Re-wraps every internal key under `new`, in the master key rotation's transaction.
pub async fn rewrap_all(
    pool: &PgPool,
    tx: &mut PgConnection,
    masters: &MasterKeyring,
    new: &MasterKey,
) -> Result<u64, KeyError> {
    let rows = store::internal_keys::lock_all(&mut *tx).await?;
    for row in &rows {
        let old = masters.get_or_refresh(pool, row.master_key_version).await?;
        let purpose = InternalKeyPurpose::parse(&row.purpose)
            .ok_or(KeyError::InternalKeyIntegrity("unknown"))?
            .as_str();
        let key = envelope::unwrap_internal_key(&old, purpose, &row.wrapped)
            .map_err(|_| KeyError::InternalKeyIntegrity(purpose))?;
        let wrapped = envelope::wrap_internal_key(new, &row.purpose, &key);
        store::internal_keys::rewrap(&mut *tx, &row.purpose, new.version, &wrapped).await?;
    }
    Ok(rows.len() as u64)
}
