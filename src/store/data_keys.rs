//! `data_keys`: per-tenant keys, stored wrapped under a master key version.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct DataKeyRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub version: i32,
    pub wrapped_key: Option<Vec<u8>>,
    pub master_key_version: i32,
    pub state: String,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant_id: Uuid,
    version: i32,
    wrapped_key: &[u8],
    master_key_version: i32,
) -> StoreResult<()> {
    sqlx::query!(
        "insert into data_keys (id, tenant_id, version, wrapped_key, master_key_version)
         values ($1, $2, $3, $4, $5)",
        id,
        tenant_id,
        version,
        wrapped_key,
        master_key_version
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn by_id(db: impl PgExecutor<'_>, id: Uuid) -> StoreResult<Option<DataKeyRow>> {
    Ok(sqlx::query_as!(
        DataKeyRow,
        "select id, tenant_id, version, wrapped_key, master_key_version, state
         from data_keys where id = $1",
        id
    )
    .fetch_optional(db)
    .await?)
}

pub async fn active_for_tenant(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> StoreResult<Option<DataKeyRow>> {
    Ok(sqlx::query_as!(
        DataKeyRow,
        "select id, tenant_id, version, wrapped_key, master_key_version, state
         from data_keys where tenant_id = $1 and state = 'active'",
        tenant_id
    )
    .fetch_optional(db)
    .await?)
}

/// Counts one encryption under an active key, in the caller's transaction so every replica's
/// writes are counted. None when the key is no longer active (rotated or destroyed meanwhile).
pub async fn count_encryption(db: impl PgExecutor<'_>, id: Uuid) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "update data_keys set encryption_count = encryption_count + 1
         where id = $1 and state = 'active' returning encryption_count",
        id
    )
    .fetch_optional(db)
    .await?)
}

/// Crypto-shredding: forgets the wrapped bytes of every key of the tenant. Returns their ids.
pub async fn destroy_for_tenant(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> StoreResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        "update data_keys set state = 'destroyed', wrapped_key = null, destroyed_at = now()
         where tenant_id = $1 and state <> 'destroyed' returning id",
        tenant_id
    )
    .fetch_all(db)
    .await?)
}
