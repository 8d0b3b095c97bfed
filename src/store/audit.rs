//! `audit_events`: append-only and hash-chained. Inserts happen in batches from the
//! background writer, never on the request path.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{AuditAction, AuditOutcome};

/// Key for the advisory lock that serialises chain appends across replicas.
const AUDIT_CHAIN_LOCK: i64 = 0x7476_6175_6469_7401;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub occurred_at: DateTime<Utc>,
    pub token_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub tenant_slug: Option<String>,
    pub action: AuditAction,
    pub secret_key: Option<String>,
    pub outcome: AuditOutcome,
    pub request_id: Option<String>,
    pub source: Option<String>,
    pub route: Option<String>,
    pub count: Option<i32>,
    pub actor: Option<String>,
    pub subject: Option<String>,
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

/// The whole batch in one statement whose text never changes (arrays unnested server-side),
/// so PostgreSQL parses and plans it once per connection, not once per batch size.
pub async fn insert_batch(db: impl PgExecutor<'_>, rows: &[AuditRow]) -> StoreResult<()> {
    let mut at = Vec::with_capacity(rows.len());
    let mut token = Vec::with_capacity(rows.len());
    let mut tenant = Vec::with_capacity(rows.len());
    let mut slug = Vec::with_capacity(rows.len());
    let mut action = Vec::with_capacity(rows.len());
    let mut key = Vec::with_capacity(rows.len());
    let mut outcome = Vec::with_capacity(rows.len());
    let mut request = Vec::with_capacity(rows.len());
    let mut source = Vec::with_capacity(rows.len());
    let mut route = Vec::with_capacity(rows.len());
    let mut count = Vec::with_capacity(rows.len());
    let mut actor = Vec::with_capacity(rows.len());
    let mut subject = Vec::with_capacity(rows.len());
    let mut prev = Vec::with_capacity(rows.len());
    let mut hash = Vec::with_capacity(rows.len());
    for r in rows {
        at.push(r.occurred_at);
        token.push(r.token_id);
        tenant.push(r.tenant_id);
        slug.push(r.tenant_slug.clone());
        action.push(r.action.as_str());
        key.push(r.secret_key.clone());
        outcome.push(r.outcome.as_str());
        request.push(r.request_id.clone());
        source.push(r.source.clone());
        route.push(r.route.clone());
        count.push(r.count);
        actor.push(r.actor.clone());
        subject.push(r.subject.clone());
        prev.push(r.prev_hash.clone());
        hash.push(r.hash.clone());
    }
    sqlx::query!(
        r#"insert into audit_events (occurred_at, token_id, tenant_id, tenant_slug, action,
                                   secret_key, outcome, request_id, prev_hash, hash,
                                   source, route, count, actor, subject)
           select a, b, c, d, e, f, g, h, i, j, k, l, m, o, p
           from unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::text[], $9::bytea[], $10::bytea[],
                       $11::text[], $12::text[], $13::int4[], $14::text[], $15::text[])
                with ordinality as r(a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, n)
           order by n"#,
        &at,
        &token as &[Option<Uuid>],
        &tenant as &[Option<Uuid>],
        &slug as &[Option<String>],
        &action as &[&str],
        &key as &[Option<String>],
        &outcome as &[&str],
        &request as &[Option<String>],
        &prev,
        &hash,
        &source as &[Option<String>],
        &route as &[Option<String>],
        &count as &[Option<i32>],
        &actor as &[Option<String>],
        &subject as &[Option<String>]
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Every row in order, for chain verification and tests.
pub async fn all(db: impl PgExecutor<'_>) -> StoreResult<Vec<AuditRow>> {
    Ok(sqlx::query_as!(
        AuditRow,
        r#"select occurred_at, token_id, tenant_id, tenant_slug, action as "action: AuditAction",
                  secret_key, outcome as "outcome: AuditOutcome", request_id,
                  source, route, count, actor, subject, prev_hash, hash
           from audit_events order by id"#
    )
    .fetch_all(db)
    .await?)
}
