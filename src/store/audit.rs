//! `audit_events`: append-only and hash-chained. Inserts happen in batches from the
//! background writer, never on the request path; reads stream (verify, export) or page
//! (`GET /v1/admin/audit`).

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::{PgConnection, PgExecutor, PgPool};
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
    /// 1: SHA-256 chain (before the audit key); 2: HMAC-SHA256 under the audit key.
    pub chain_version: i16,
}

/// A stored row with its id, as verify, export and the admin API read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditRow {
    pub id: i64,
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
    pub chain_version: i16,
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
    let mut chain = Vec::with_capacity(rows.len());
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
        chain.push(r.chain_version);
    }
    sqlx::query!(
        r#"insert into audit_events (occurred_at, token_id, tenant_id, tenant_slug, action,
                                   secret_key, outcome, request_id, prev_hash, hash,
                                   source, route, count, actor, subject, chain_version)
           select a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, q
           from unnest($1::timestamptz[], $2::uuid[], $3::uuid[], $4::text[], $5::text[],
                       $6::text[], $7::text[], $8::text[], $9::bytea[], $10::bytea[],
                       $11::text[], $12::text[], $13::int4[], $14::text[], $15::text[],
                       $16::int2[])
                with ordinality as r(a, b, c, d, e, f, g, h, i, j, k, l, m, o, p, q, n)
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
        &subject as &[Option<String>],
        &chain
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Every row in id order, streamed (constant memory however long the table).
pub fn stream_all(pool: &PgPool) -> BoxStream<'_, StoreResult<StoredAuditRow>> {
    sqlx::query_as!(
        StoredAuditRow,
        r#"select id, occurred_at, token_id, tenant_id, tenant_slug,
                  action as "action: AuditAction", secret_key,
                  outcome as "outcome: AuditOutcome", request_id,
                  source, route, count, actor, subject, prev_hash, hash, chain_version
           from audit_events order by id"#
    )
    .fetch(pool)
    .map(|r| r.map_err(Into::into))
    .boxed()
}

/// What a checkpoint records about the table now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub last_id: i64,
    pub last_hash: Vec<u8>,
    pub chain_version: i16,
    /// Rows with id <= last_id.
    pub count: i64,
    /// The first keyed row (chain version 2), if any.
    pub keyed_from_id: Option<i64>,
}

pub async fn head(pool: &PgPool) -> StoreResult<Option<ChainHead>> {
    let Some(last) =
        sqlx::query!("select id, hash, chain_version from audit_events order by id desc limit 1")
            .fetch_optional(pool)
            .await?
    else {
        return Ok(None);
    };
    let count = sqlx::query_scalar!(
        r#"select count(*) as "n!" from audit_events where id <= $1"#,
        last.id
    )
    .fetch_one(pool)
    .await?;
    let keyed_from_id = sqlx::query_scalar!(
        "select id from audit_events where chain_version = 2 order by id limit 1"
    )
    .fetch_optional(pool)
    .await?;
    Ok(Some(ChainHead {
        last_id: last.id,
        last_hash: last.hash,
        chain_version: last.chain_version,
        count,
        keyed_from_id,
    }))
}

/// Filters of `GET /v1/admin/audit`; every one optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant_slug: Option<String>,
    pub action: Option<AuditAction>,
    pub outcome: Option<AuditOutcome>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Paging: only rows with a smaller id (the previous page's `next_before`).
    pub before_id: Option<i64>,
}

/// One page, newest first.
pub async fn page(
    db: impl PgExecutor<'_>,
    f: &AuditFilter,
    limit: i64,
) -> StoreResult<Vec<StoredAuditRow>> {
    Ok(sqlx::query_as!(
        StoredAuditRow,
        r#"select id, occurred_at, token_id, tenant_id, tenant_slug,
                  action as "action: AuditAction", secret_key,
                  outcome as "outcome: AuditOutcome", request_id,
                  source, route, count, actor, subject, prev_hash, hash, chain_version
           from audit_events
           where ($1::text is null or tenant_slug = $1)
             and ($2::text is null or action = $2)
             and ($3::text is null or outcome = $3)
             and ($4::timestamptz is null or occurred_at >= $4)
             and ($5::timestamptz is null or occurred_at < $5)
             and ($6::bigint is null or id < $6)
           order by id desc
           limit $7"#,
        f.tenant_slug.as_deref(),
        f.action.map(|a| a.as_str()),
        f.outcome.map(|o| o.as_str()),
        f.since,
        f.until,
        f.before_id,
        limit
    )
    .fetch_all(db)
    .await?)
}

/// Every row in order, for tests.
pub async fn all(db: impl PgExecutor<'_>) -> StoreResult<Vec<AuditRow>> {
    Ok(sqlx::query_as!(
        AuditRow,
        r#"select occurred_at, token_id, tenant_id, tenant_slug, action as "action: AuditAction",
                  secret_key, outcome as "outcome: AuditOutcome", request_id,
                  source, route, count, actor, subject, prev_hash, hash, chain_version
           from audit_events order by id"#
    )
    .fetch_all(db)
    .await?)
}
