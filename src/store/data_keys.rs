//! `data_keys`: per-tenant keys, stored wrapped under a master key version: creation and
//! lookup, encryption counts, rotation (re-wrap, demotion) and destruction.

use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{DataKeyId, DataKeyState, TenantId};

#[derive(Debug, Clone)]
pub struct DataKeyRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub version: i32,
    pub wrapped_key: Option<Vec<u8>>,
    pub master_key_version: i32,
    pub state: DataKeyState,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    id: DataKeyId,
    tenant: TenantId,
    version: i32,
    wrapped_key: &[u8],
    master_key_version: i32,
) -> StoreResult<()> {
    sqlx::query!(
        "insert into data_keys (id, tenant_id, version, wrapped_key, master_key_version)
         values ($1, $2, $3, $4, $5)",
        id.0,
        tenant.0,
        version,
        wrapped_key,
        master_key_version
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn by_id(db: impl PgExecutor<'_>, id: DataKeyId) -> StoreResult<Option<DataKeyRow>> {
    Ok(sqlx::query_as!(
        DataKeyRow,
        r#"select id, tenant_id, version, wrapped_key, master_key_version,
                  state as "state: DataKeyState"
           from data_keys where id = $1"#,
        id.0
    )
    .fetch_optional(db)
    .await?)
}

pub async fn active_for_tenant(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<Option<DataKeyRow>> {
    Ok(sqlx::query_as!(
        DataKeyRow,
        r#"select id, tenant_id, version, wrapped_key, master_key_version,
                  state as "state: DataKeyState"
           from data_keys where tenant_id = $1 and state = 'active'"#,
        tenant.0
    )
    .fetch_optional(db)
    .await?)
}

/// Crypto-shredding: forgets the wrapped bytes of every key of the tenant. Returns their ids.
pub async fn destroy_for_tenant(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<Vec<DataKeyId>> {
    let ids = sqlx::query_scalar!(
        "update data_keys set state = 'destroyed', wrapped_key = null, destroyed_at = now()
         where tenant_id = $1 and state <> 'destroyed' returning id",
        tenant.0
    )
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(DataKeyId).collect())
}

/// How many data keys still hold bytes wrapped under this master key version.
pub async fn wrapped_under_master(db: impl PgExecutor<'_>, version: i32) -> StoreResult<i64> {
    Ok(sqlx::query_scalar!(
        r#"select count(*) as "n!" from data_keys
           where master_key_version = $1 and wrapped_key is not null"#,
        version
    )
    .fetch_one(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct WrappedKeyRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub version: i32,
    pub wrapped_key: Vec<u8>,
    pub master_key_version: i32,
}

/// The next batch of live (not destroyed) data keys after `after`, in id order.
pub async fn wrapped_keys_after(
    db: impl PgExecutor<'_>,
    after: Uuid,
    limit: i64,
) -> StoreResult<Vec<WrappedKeyRow>> {
    Ok(sqlx::query_as!(
        WrappedKeyRow,
        r#"select id, tenant_id, version, wrapped_key as "wrapped_key!", master_key_version
           from data_keys where wrapped_key is not null and id > $1
           order by id limit $2"#,
        after,
        limit
    )
    .fetch_all(db)
    .await?)
}

/// One statement re-wraps a whole batch. Keys destroyed meanwhile stay destroyed.
pub async fn rewrap_batch(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    wrapped: &[Vec<u8>],
    master_version: i32,
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update data_keys d set wrapped_key = u.wrapped, master_key_version = $3
         from unnest($1::uuid[], $2::bytea[]) as u(id, wrapped)
         where d.id = u.id and d.wrapped_key is not null",
        ids,
        wrapped,
        master_version
    )
    .execute(db)
    .await?
    .rows_affected())
}

#[derive(Debug, Clone)]
pub struct KeyStateRow {
    pub id: Uuid,
    pub version: i32,
    pub state: DataKeyState,
}

/// Every key of a tenant, locked until the transaction ends (rotations of one tenant take
/// turns, and writers counting an encryption finish first).
pub async fn lock_tenant_keys(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<Vec<KeyStateRow>> {
    Ok(sqlx::query_as!(
        KeyStateRow,
        r#"select id, version, state as "state: DataKeyState"
           from data_keys where tenant_id = $1 order by version for update"#,
        tenant.0
    )
    .fetch_all(db)
    .await?)
}

pub async fn demote_key(db: impl PgExecutor<'_>, id: DataKeyId) -> StoreResult<()> {
    sqlx::query!(
        "update data_keys set state = 'decrypt_only' where id = $1 and state = 'active'",
        id.0
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Counts `n` encryptions under an active key, in the caller's transaction so every replica's
/// writes are counted. Returns the new count; None when the key is no longer active (rotated
/// or destroyed meanwhile).
pub async fn count_encryptions(
    db: impl PgExecutor<'_>,
    id: DataKeyId,
    n: i64,
) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "update data_keys set encryption_count = encryption_count + $2
         where id = $1 and state = 'active' returning encryption_count",
        id.0,
        n
    )
    .fetch_optional(db)
    .await?)
}

/// A key's encryption count.
pub async fn encryption_count(db: impl PgExecutor<'_>, id: DataKeyId) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar!("select encryption_count from data_keys where id = $1", id.0)
            .fetch_optional(db)
            .await?,
    )
}

/// Tenants with keys waiting to be emptied and destroyed.
pub async fn tenants_with_old_keys(db: impl PgExecutor<'_>) -> StoreResult<Vec<TenantId>> {
    let ids = sqlx::query_scalar!(
        r#"select distinct tenant_id as "tenant_id!" from data_keys where state = 'decrypt_only'"#
    )
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(TenantId).collect())
}

/// Ciphertexts (current and kept) of a tenant still under decrypt-only keys.
pub async fn remaining_under_old_keys(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar!(
        r#"with old as (select id from data_keys where tenant_id = $1 and state = 'decrypt_only')
           select (select count(*) from company_secrets where data_key_id in (select id from old))
                + (select count(*) from company_secret_versions where data_key_id in (select id from old))
           as "n!""#,
        tenant.0
    )
    .fetch_one(db)
    .await?)
}

/// Destroys the tenant's decrypt-only keys that no ciphertext refers to any more (versions
/// waiting for the archive included: the archiver decrypts them, so their key waits).
pub async fn destroy_unreferenced_old_keys(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<Vec<DataKeyId>> {
    let ids = sqlx::query_scalar!(
        "update data_keys d set state = 'destroyed', wrapped_key = null, destroyed_at = now()
         where d.tenant_id = $1 and d.state = 'decrypt_only'
           and not exists (select 1 from company_secrets c where c.data_key_id = d.id)
           and not exists (select 1 from company_secret_versions v where v.data_key_id = d.id)
           and not exists (select 1 from archive_outbox o where o.data_key_id = d.id)
         returning d.id",
        tenant.0
    )
    .fetch_all(db)
    .await?;
    Ok(ids.into_iter().map(DataKeyId).collect())
}
