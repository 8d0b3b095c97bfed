//! `audit_events`: append-only and hash-chained. Inserts happen in batches from the
//! background writer, never on the request path.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::StoreResult;

/// Key for the advisory lock that serialises chain appends across replicas.
const AUDIT_CHAIN_LOCK: i64 = 0x7476_6175_6469_7401;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub occurred_at: DateTime<Utc>,
    pub token_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub tenant_slug: Option<String>,
    pub action: String,
    pub secret_key: Option<String>,
    pub outcome: String,
    pub request_id: Option<String>,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
}

/// Takes the chain lock for this transaction and returns the hash of the newest row.
pub async fn lock_chain_head(conn: &mut PgConnection) -> StoreResult<Option<Vec<u8>>> {
    sqlx::query!("select pg_advisory_xact_lock($1)", AUDIT_CHAIN_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(
        sqlx::query_scalar!("select hash from audit_events order by id desc limit 1")
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// One multi-row insert for the whole batch.
pub async fn insert_batch(db: impl PgExecutor<'_>, rows: &[AuditRow]) -> StoreResult<()> {
    let mut b = sqlx::QueryBuilder::new(
        "insert into audit_events (occurred_at, token_id, tenant_id, tenant_slug, action, \
         secret_key, outcome, request_id, prev_hash, hash) ",
    );
    b.push_values(rows, |mut row, r| {
        row.push_bind(r.occurred_at)
            .push_bind(r.token_id)
            .push_bind(r.tenant_id)
            .push_bind(&r.tenant_slug)
            .push_bind(&r.action)
            .push_bind(&r.secret_key)
            .push_bind(&r.outcome)
            .push_bind(&r.request_id)
            .push_bind(&r.prev_hash)
            .push_bind(&r.hash);
    });
    b.build().execute(db).await?;
    Ok(())
}

/// Every row in order, for chain verification and tests.
pub async fn all(db: impl PgExecutor<'_>) -> StoreResult<Vec<AuditRow>> {
    Ok(sqlx::query_as!(
        AuditRow,
        "select occurred_at, token_id, tenant_id, tenant_slug, action, secret_key, outcome,
                request_id, prev_hash, hash
         from audit_events order by id"
    )
    .fetch_all(db)
    .await?)
}
