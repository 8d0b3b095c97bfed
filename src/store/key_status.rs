//! The figures behind `GET /v1/admin/keys`.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{DataKeyState, MasterKeyState};

#[derive(Debug, Clone)]
pub struct MasterVersionRow {
    pub version: i32,
    pub state: MasterKeyState,
    pub source: String,
    pub infisical_secret_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub wrapped_data_keys: i64,
}

pub async fn master_versions(db: impl PgExecutor<'_>) -> StoreResult<Vec<MasterVersionRow>> {
    Ok(sqlx::query_as!(
        MasterVersionRow,
        r#"select m.version, m.state as "state: MasterKeyState", m.source, m.infisical_secret_name, m.created_at,
                  (select count(*) from data_keys d
                   where d.master_key_version = m.version and d.wrapped_key is not null)
                  as "wrapped_data_keys!"
           from master_keys m order by m.version"#
    )
    .fetch_all(db)
    .await?)
}

/// (state, count) for every data key state present.
pub async fn data_keys_by_state(db: impl PgExecutor<'_>) -> StoreResult<Vec<(DataKeyState, i64)>> {
    Ok(sqlx::query!(
        r#"select state as "state: DataKeyState", count(*) as "n!" from data_keys group by state"#
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| (r.state, r.n))
    .collect())
}

/// (current values, kept versions) still encrypted under decrypt-only keys.
pub async fn under_decrypt_only(db: impl PgExecutor<'_>) -> StoreResult<(i64, i64)> {
    let r = sqlx::query!(
        r#"with old as (select id from data_keys where state = 'decrypt_only')
           select (select count(*) from company_secrets where data_key_id in (select id from old))
                  as "current!",
                  (select count(*) from company_secret_versions
                   where data_key_id in (select id from old)) as "kept!""#
    )
    .fetch_one(db)
    .await?;
    Ok((r.current, r.kept))
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub tenant_id: Uuid,
    pub slug: String,
    pub total: i64,
    pub done: i64,
    pub remaining: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// Re-encryption jobs of live tenants, unfinished first, then the most recent.
pub async fn jobs(db: impl PgExecutor<'_>, limit: i64) -> StoreResult<Vec<JobRow>> {
    Ok(sqlx::query_as!(
        JobRow,
        r#"select j.tenant_id, t.slug, j.total, j.done,
                  (select count(*) from company_secrets c join data_keys d on d.id = c.data_key_id
                   where c.company_id = j.tenant_id and d.state = 'decrypt_only')
                + (select count(*) from company_secret_versions v join data_keys d on d.id = v.data_key_id
                   where v.company_id = j.tenant_id and d.state = 'decrypt_only') as "remaining!",
                  j.started_at, j.updated_at, j.finished_at
           from reencryption_jobs j join tenants t on t.id = j.tenant_id
           where t.deleted_at is null
           order by j.finished_at is null desc, j.started_at desc
           limit $1"#,
        limit
    )
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct RotationRow {
    pub kind: String,
    pub tenant_slug: Option<String>,
    pub previous_version: i32,
    pub version: i32,
    pub rewrapped_data_keys: i32,
    pub automatic: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub elapsed_ms: i64,
}

/// The latest rotation of each kind.
pub async fn last_rotations(db: impl PgExecutor<'_>) -> StoreResult<Vec<RotationRow>> {
    Ok(sqlx::query_as!(
        RotationRow,
        r#"select distinct on (r.kind) r.kind, t.slug as "tenant_slug?", r.previous_version,
                  r.version, r.rewrapped_data_keys, r.automatic, r.started_at, r.finished_at,
                  r.elapsed_ms
           from key_rotations r left join tenants t on t.id = r.tenant_id
           order by r.kind, r.id desc"#
    )
    .fetch_all(db)
    .await?)
}
