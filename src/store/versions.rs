//! `company_secret_versions`: history listing, one kept version, retention, and the
//! re-encryption job's side of it. (Rows are archived by `secrets::archive_current`.)

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{DataKeyId, SecretKey, TenantId};

#[derive(Debug, Clone)]
pub struct VersionSummaryRow {
    pub version: i32,
    pub created_at: DateTime<Utc>,
}

/// Kept (earlier) versions of one secret, newest first. Never values.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
) -> StoreResult<Vec<VersionSummaryRow>> {
    Ok(sqlx::query_as!(
        VersionSummaryRow,
        "select version, created_at from company_secret_versions
         where company_id = $1 and secret_key = $2 order by version desc",
        tenant.0,
        key.as_str()
    )
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct KeptVersionRow {
    pub secret_value_encrypted: Vec<u8>,
    pub data_key_id: Uuid,
    pub created_at: DateTime<Utc>,
}

pub async fn get(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
    version: i32,
) -> StoreResult<Option<KeptVersionRow>> {
    Ok(sqlx::query_as!(
        KeptVersionRow,
        "select secret_value_encrypted, data_key_id, created_at from company_secret_versions
         where company_id = $1 and secret_key = $2 and version = $3",
        tenant.0,
        key.as_str(),
        version
    )
    .fetch_optional(db)
    .await?)
}

/// Retention: forgets kept versions at or below `version`.
pub async fn prune(db: impl PgExecutor<'_>, secret_id: Uuid, version: i32) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "delete from company_secret_versions where secret_id = $1 and version <= $2",
        secret_id,
        version
    )
    .execute(db)
    .await?
    .rows_affected())
}

#[derive(Debug, Clone)]
pub struct KeptCiphertext {
    pub secret_id: Uuid,
    pub secret_key: String,
    pub version: i32,
    pub secret_value_encrypted: Vec<u8>,
    pub data_key_id: Uuid,
}

/// Kept versions of a tenant still under a decrypt-only key, locked together with their
/// secret's current row (as writers lock that row first, a secret being written is skipped
/// whole rather than waited for: waiting could deadlock with its writer).
pub async fn kept_under_old_keys(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    limit: i64,
) -> StoreResult<Vec<KeptCiphertext>> {
    Ok(sqlx::query_as!(
        KeptCiphertext,
        "select v.secret_id, v.secret_key, v.version, v.secret_value_encrypted, v.data_key_id
         from company_secret_versions v join company_secrets c on c.id = v.secret_id
         where v.company_id = $1
           and v.data_key_id in
               (select id from data_keys where tenant_id = $1 and state = 'decrypt_only')
         limit $2
         for update of v, c skip locked",
        tenant.0,
        limit
    )
    .fetch_all(db)
    .await?)
}

pub async fn replace_kept(
    db: impl PgExecutor<'_>,
    secret_ids: &[Uuid],
    versions: &[i32],
    envelopes: &[Vec<u8>],
    data_key_id: DataKeyId,
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update company_secret_versions v
         set secret_value_encrypted = u.envelope, data_key_id = $4
         from unnest($1::uuid[], $2::int4[], $3::bytea[]) as u(secret_id, version, envelope)
         where v.secret_id = u.secret_id and v.version = u.version",
        secret_ids,
        versions,
        envelopes,
        data_key_id.0
    )
    .execute(db)
    .await?
    .rows_affected())
}
