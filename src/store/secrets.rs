//! `company_secrets`: the current value of each secret (`company_id` is the tenant), and the
//! re-encryption job's side of it.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{DataKeyId, SecretKey, TenantId};

#[derive(Debug, Clone)]
pub struct SecretRow {
    pub id: Uuid,
    pub secret_value_encrypted: Vec<u8>,
    pub data_key_id: Uuid,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
}

pub async fn get(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
) -> StoreResult<Option<SecretRow>> {
    Ok(sqlx::query_as!(
        SecretRow,
        "select id, secret_value_encrypted, data_key_id, version, updated_at
         from company_secrets where company_id = $1 and secret_key = $2",
        tenant.0,
        key.as_str()
    )
    .fetch_optional(db)
    .await?)
}

/// `get` for many keys in one statement (`tenants[i]`, `keys[i]` pairs): the rows found,
/// each with the tenant and key it answers. Used by `SecretReads` to coalesce cache misses.
pub async fn get_many(
    db: impl PgExecutor<'_>,
    tenants: &[Uuid],
    keys: &[&str],
) -> StoreResult<Vec<(Uuid, String, SecretRow)>> {
    let rows = sqlx::query!(
        r#"select s.company_id, s.secret_key, s.id, s.secret_value_encrypted, s.data_key_id,
                  s.version, s.updated_at
           from company_secrets s
           join unnest($1::uuid[], $2::text[]) as k (company_id, secret_key)
             on s.company_id = k.company_id and s.secret_key = k.secret_key"#,
        tenants,
        keys as &[&str]
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let row = SecretRow {
                id: r.id,
                secret_value_encrypted: r.secret_value_encrypted,
                data_key_id: r.data_key_id,
                version: r.version,
                updated_at: r.updated_at,
            };
            (r.company_id, r.secret_key, row)
        })
        .collect())
}

/// The current row, locked until the transaction ends, so writers of one key take turns.
pub async fn lock(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
) -> StoreResult<Option<SecretRow>> {
    Ok(sqlx::query_as!(
        SecretRow,
        "select id, secret_value_encrypted, data_key_id, version, updated_at
         from company_secrets where company_id = $1 and secret_key = $2 for update",
        tenant.0,
        key.as_str()
    )
    .fetch_optional(db)
    .await?)
}

pub struct NewSecret<'a> {
    pub id: Uuid,
    pub tenant: TenantId,
    pub key: &'a SecretKey,
    pub envelope: &'a [u8],
    pub data_key_id: DataKeyId,
    pub version: i32,
}

/// Inserts version 1 unless another writer created the key first (then returns None).
pub async fn insert_first(
    db: impl PgExecutor<'_>,
    s: NewSecret<'_>,
) -> StoreResult<Option<DateTime<Utc>>> {
    Ok(sqlx::query_scalar!(
        "insert into company_secrets
           (id, company_id, secret_key, secret_value_encrypted, data_key_id, version)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (company_id, secret_key) do nothing
         returning updated_at",
        s.id,
        s.tenant.0,
        s.key.as_str(),
        s.envelope,
        s.data_key_id.0,
        s.version
    )
    .fetch_optional(db)
    .await?)
}

/// Copies the current row into the history table before it is overwritten.
pub async fn archive_current(db: impl PgExecutor<'_>, secret_id: Uuid) -> StoreResult<()> {
    sqlx::query!(
        "insert into company_secret_versions
           (secret_id, company_id, secret_key, version, secret_value_encrypted, data_key_id, created_at)
         select id, company_id, secret_key, version, secret_value_encrypted, data_key_id, updated_at
         from company_secrets where id = $1",
        secret_id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Replaces the value of a locked row with the next version.
pub async fn update(db: impl PgExecutor<'_>, s: NewSecret<'_>) -> StoreResult<DateTime<Utc>> {
    Ok(sqlx::query_scalar!(
        "update company_secrets
         set secret_value_encrypted = $2, data_key_id = $3, version = $4, updated_at = now()
         where id = $1 and version = $4 - 1
         returning updated_at",
        s.id,
        s.envelope,
        s.data_key_id.0,
        s.version
    )
    .fetch_one(db)
    .await?)
}

/// Deletes a secret and its history; returns the version it had.
pub async fn delete(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
) -> StoreResult<Option<i32>> {
    Ok(sqlx::query_scalar!(
        "delete from company_secrets where company_id = $1 and secret_key = $2 returning version",
        tenant.0,
        key.as_str()
    )
    .fetch_optional(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct SecretSummaryRow {
    pub secret_key: String,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
}

pub async fn list(db: impl PgExecutor<'_>, tenant: TenantId) -> StoreResult<Vec<SecretSummaryRow>> {
    Ok(sqlx::query_as!(
        SecretSummaryRow,
        "select secret_key, version, updated_at from company_secrets
         where company_id = $1 order by secret_key",
        tenant.0
    )
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct CurrentCiphertext {
    pub id: Uuid,
    pub secret_key: String,
    pub version: i32,
    pub secret_value_encrypted: Vec<u8>,
    pub data_key_id: Uuid,
}

/// Current values of a tenant still under a decrypt-only key, locked; rows a writer holds
/// are skipped (they come round again).
pub async fn current_under_old_keys(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    limit: i64,
) -> StoreResult<Vec<CurrentCiphertext>> {
    Ok(sqlx::query_as!(
        CurrentCiphertext,
        "select c.id, c.secret_key, c.version, c.secret_value_encrypted, c.data_key_id
         from company_secrets c
         where c.company_id = $1
           and c.data_key_id in
               (select id from data_keys where tenant_id = $1 and state = 'decrypt_only')
         limit $2
         for update of c skip locked",
        tenant.0,
        limit
    )
    .fetch_all(db)
    .await?)
}

/// Re-encrypted current values, one statement per batch. The value and its version are
/// unchanged, so `updated_at` is too.
pub async fn replace_current(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    envelopes: &[Vec<u8>],
    data_key_id: DataKeyId,
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update company_secrets c set secret_value_encrypted = u.envelope, data_key_id = $3
         from unnest($1::uuid[], $2::bytea[]) as u(id, envelope)
         where c.id = u.id",
        ids,
        envelopes,
        data_key_id.0
    )
    .execute(db)
    .await?
    .rows_affected())
}
