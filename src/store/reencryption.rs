//! `reencryption_jobs`: the progress of each tenant's re-encryption, and the per-tenant lock
//! that lets one replica at a time run it. The work list itself is the ciphertext tables.

use sqlx::{PgConnection, PgExecutor};

use super::StoreResult;
use crate::domain::TenantId;

/// Class of the per-tenant transaction locks taken by the re-encryption job.
const REENCRYPT_LOCK_CLASS: i32 = 0x7476_7265;

/// Takes the tenant's re-encryption lock for this transaction, if no one else holds it.
pub async fn try_lock(conn: &mut PgConnection, tenant: TenantId) -> StoreResult<bool> {
    let h = tenant.0.as_u128();
    let key = (h as u32 ^ (h >> 32) as u32 ^ (h >> 64) as u32 ^ (h >> 96) as u32) as i32;
    Ok(sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock($1, $2) as "locked!""#,
        REENCRYPT_LOCK_CLASS,
        key
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// Starts (or restarts) the progress record of a tenant's re-encryption.
pub async fn start_job(db: impl PgExecutor<'_>, tenant: TenantId, total: i64) -> StoreResult<()> {
    sqlx::query!(
        "insert into reencryption_jobs (tenant_id, total, done)
         values ($1, $2, 0)
         on conflict (tenant_id) do update
         set total = excluded.total, done = 0, started_at = now(), updated_at = now(),
             finished_at = null",
        tenant.0,
        total
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn job_progress(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    moved: i64,
) -> StoreResult<()> {
    sqlx::query!(
        "update reencryption_jobs set done = least(done + $2, total), updated_at = now()
         where tenant_id = $1",
        tenant.0,
        moved
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn finish_job(db: impl PgExecutor<'_>, tenant: TenantId) -> StoreResult<()> {
    sqlx::query!(
        "update reencryption_jobs set done = total, finished_at = now(), updated_at = now()
         where tenant_id = $1 and finished_at is null",
        tenant.0
    )
    .execute(db)
    .await?;
    Ok(())
}
