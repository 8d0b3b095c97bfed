//! `key_rotations`: the log of master and data key rotations.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::StoreResult;
use crate::domain::TenantId;

pub struct NewRotation {
    pub kind: &'static str,
    pub tenant: Option<TenantId>,
    pub previous_version: i32,
    pub version: i32,
    pub rewrapped_data_keys: i32,
    pub automatic: bool,
    pub started_at: DateTime<Utc>,
    pub elapsed_ms: i64,
}

pub async fn log_rotation(db: impl PgExecutor<'_>, r: NewRotation) -> StoreResult<()> {
    sqlx::query!(
        "insert into key_rotations
           (kind, tenant_id, previous_version, version, rewrapped_data_keys, automatic,
            started_at, elapsed_ms)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
        r.kind,
        r.tenant.map(|t| t.0),
        r.previous_version,
        r.version,
        r.rewrapped_data_keys,
        r.automatic,
        r.started_at,
        r.elapsed_ms
    )
    .execute(db)
    .await?;
    Ok(())
}
