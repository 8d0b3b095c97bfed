//! `company_secrets` and `company_secret_versions`.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;

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
    company_id: Uuid,
    key: &str,
) -> StoreResult<Option<SecretRow>> {
    Ok(sqlx::query_as!(
        SecretRow,
        "select id, secret_value_encrypted, data_key_id, version, updated_at
         from company_secrets where company_id = $1 and secret_key = $2",
        company_id,
        key
    )
    .fetch_optional(db)
    .await?)
}

/// The current row, locked until the transaction ends, so writers of one key take turns.
pub async fn lock(
    db: impl PgExecutor<'_>,
    company_id: Uuid,
    key: &str,
) -> StoreResult<Option<SecretRow>> {
    Ok(sqlx::query_as!(
        SecretRow,
        "select id, secret_value_encrypted, data_key_id, version, updated_at
         from company_secrets where company_id = $1 and secret_key = $2 for update",
        company_id,
        key
    )
    .fetch_optional(db)
    .await?)
}

pub struct NewSecret<'a> {
    pub id: Uuid,
    pub company_id: Uuid,
    pub key: &'a str,
    pub envelope: &'a [u8],
    pub data_key_id: Uuid,
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
        s.company_id,
        s.key,
        s.envelope,
        s.data_key_id,
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
        s.data_key_id,
        s.version
    )
    .fetch_one(db)
    .await?)
}

/// Deletes a secret and its history; returns the version it had.
pub async fn delete(
    db: impl PgExecutor<'_>,
    company_id: Uuid,
    key: &str,
) -> StoreResult<Option<i32>> {
    Ok(sqlx::query_scalar!(
        "delete from company_secrets where company_id = $1 and secret_key = $2 returning version",
        company_id,
        key
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

pub async fn list(db: impl PgExecutor<'_>, company_id: Uuid) -> StoreResult<Vec<SecretSummaryRow>> {
    Ok(sqlx::query_as!(
        SecretSummaryRow,
        "select secret_key, version, updated_at from company_secrets
         where company_id = $1 order by secret_key",
        company_id
    )
    .fetch_all(db)
    .await?)
}
