//! Per-tenant data keys: created wrapped under the active master key, unwrapped on first use
//! and kept unwrapped in memory (so the hot path needs no database), wiped when evicted.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{KeyError, MasterKeyring};
use crate::crypto::{envelope, DataKey};
use crate::domain::{DataKeyId, TenantId};
use crate::store;

/// Unwrapped keys stay in memory this long after their last use.
const UNWRAPPED_KEY_IDLE: Duration = Duration::from_secs(15 * 60);

pub struct DataKeyring {
    pool: PgPool,
    masters: Arc<MasterKeyring>,
    /// Unwrapped keys by id. `DataKey` wipes its bytes on drop, so eviction wipes them.
    unwrapped: Cache<DataKeyId, Arc<DataKey>>,
    /// Which key each tenant writes with.
    active: Cache<TenantId, DataKeyId>,
}

impl DataKeyring {
    pub fn new(pool: PgPool, masters: Arc<MasterKeyring>, max_entries: u64) -> Self {
        Self {
            pool,
            masters,
            unwrapped: Cache::builder()
                .max_capacity(max_entries)
                .time_to_idle(UNWRAPPED_KEY_IDLE)
                .build(),
            active: Cache::builder()
                .max_capacity(max_entries)
                .time_to_idle(UNWRAPPED_KEY_IDLE)
                .build(),
        }
    }

    pub fn masters(&self) -> &Arc<MasterKeyring> {
        &self.masters
    }

    /// Makes a tenant's first (or next) data key and stores it wrapped, in the caller's
    /// transaction.
    pub async fn create(
        &self,
        conn: &mut PgConnection,
        tenant: TenantId,
        version: i32,
    ) -> Result<DataKeyId, KeyError> {
        let id = DataKeyId(Uuid::new_v4());
        let key = DataKey::generate(id);
        // Wrap under the version the database says is active, and keep a rotation from
        // retiring it until this transaction ends.
        store::master_keys::lock_wrap_shared(conn).await?;
        let master = match store::master_keys::active_master_version(&mut *conn).await? {
            Some(v) => self.masters.get_or_refresh(&self.pool, v).await?,
            None => self.masters.active().ok_or(KeyError::MasterVersionMissing(
                self.masters.active_version(),
            ))?,
        };
        let wrapped = envelope::wrap_data_key(&master, tenant, version, &key);
        store::data_keys::insert(conn, id, tenant, version, &wrapped, master.version).await?;
        Ok(id)
    }

    /// The key a tenant's new writes use.
    pub async fn active(&self, tenant: TenantId) -> Result<Arc<DataKey>, KeyError> {
        let id = self
            .active
            .try_get_with(tenant, async {
                store::data_keys::active_for_tenant(&self.pool, tenant)
                    .await?
                    .map(|row| DataKeyId(row.id))
                    .ok_or(KeyError::NoActiveKey)
            })
            .await
            .map_err(unshare)?;
        self.get(tenant, id).await
    }

    /// Forgets which key is active for a tenant (after a rotation or a failed count).
    pub async fn forget_active(&self, tenant: TenantId) {
        self.active.invalidate(&tenant).await;
    }

    /// A tenant's key by id, unwrapped. Fails if the key belongs to another tenant, was
    /// destroyed, or does not authenticate under its master key.
    pub async fn get(&self, tenant: TenantId, id: DataKeyId) -> Result<Arc<DataKey>, KeyError> {
        let key = self
            .unwrapped
            .try_get_with(id, self.load(tenant, id))
            .await
            .map_err(unshare)?;
        Ok(key)
    }

    async fn load(&self, tenant: TenantId, id: DataKeyId) -> Result<Arc<DataKey>, KeyError> {
        let row = store::data_keys::by_id(&self.pool, id)
            .await?
            .ok_or(KeyError::Integrity(id))?;
        if row.tenant_id != tenant.0 {
            return Err(KeyError::Integrity(id));
        }
        let wrapped = row.wrapped_key.ok_or(KeyError::Destroyed(id))?;
        // A version recorded by a rotation on another replica is fetched on first need.
        let master = self
            .masters
            .get_or_refresh(&self.pool, row.master_key_version)
            .await?;
        let key = envelope::unwrap_data_key(&master, tenant, id, row.version, &wrapped)
            .map_err(|_| KeyError::Integrity(id))?;
        Ok(Arc::new(key))
    }

    /// Drops every key from memory (after notifications may have been missed).
    pub fn forget_everything(&self) {
        self.unwrapped.invalidate_all();
        self.active.invalidate_all();
    }

    /// Drops keys from memory at once (crypto-shredding, rotation).
    pub async fn forget(&self, tenant: TenantId, ids: &[DataKeyId]) {
        for id in ids {
            self.unwrapped.invalidate(id).await;
        }
        self.active.invalidate(&tenant).await;
    }
}

/// moka shares one loader's error among all waiters: keep the variants callers act on, and
/// carry the rest shared, cause intact.
fn unshare(err: Arc<KeyError>) -> KeyError {
    match &*err {
        KeyError::Integrity(id) => KeyError::Integrity(*id),
        KeyError::Destroyed(id) => KeyError::Destroyed(*id),
        KeyError::NoActiveKey => KeyError::NoActiveKey,
        KeyError::MasterVersionMissing(v) => KeyError::MasterVersionMissing(*v),
        _ => KeyError::Shared(err),
    }
}
