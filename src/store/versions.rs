//! `company_secret_versions` read side: history listing, one kept version, and retention.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct VersionSummaryRow {
    pub version: i32,
    pub created_at: DateTime<Utc>,
}

/// Kept (earlier) versions of one secret, newest first. Never values.
pub async fn list(
    db: impl PgExecutor<'_>,
    company_id: Uuid,
    key: &str,
) -> StoreResult<Vec<VersionSummaryRow>> {
    Ok(sqlx::query_as!(
        VersionSummaryRow,
        "select version, created_at from company_secret_versions
         where company_id = $1 and secret_key = $2 order by version desc",
        company_id,
        key
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
    company_id: Uuid,
    key: &str,
    version: i32,
) -> StoreResult<Option<KeptVersionRow>> {
    Ok(sqlx::query_as!(
        KeptVersionRow,
        "select secret_value_encrypted, data_key_id, created_at from company_secret_versions
         where company_id = $1 and secret_key = $2 and version = $3",
        company_id,
        key,
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
