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

/// A row to append, borrowing its text from the event it records (a batch holds hundreds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow<'a> {
    /// The chain's next id (`ChainTail::next_id`): the writer numbers its rows under the
    /// chain lock rather than through the column's sequence.
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub token_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub tenant_slug: Option<&'a str>,
    pub action: AuditAction,
    pub secret_key: Option<&'a str>,
    pub outcome: AuditOutcome,
    pub request_id: Option<&'a str>,
    pub source: Option<&'a str>,
    pub route: Option<&'a str>,
    pub count: Option<i32>,
    pub actor: Option<&'a str>,
    pub subject: Option<&'a str>,
    pub prev_hash: [u8; 32],
    pub hash: [u8; 32],
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

/// The newest row of the chain, as the next append continues it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainTail {
    pub id: i64,
    pub hash: [u8; 32],
}

impl ChainTail {
    /// The id of the row after this one.
    pub fn next_id(&self) -> i64 {
        self.id + 1
    }
}

/// Takes the chain lock for this transaction and returns the newest row's id and hash.
/// Under this lock the writer numbers its rows itself (the tail's id + 1, + 2, ...): one
/// `nextval` per row was about a tenth of PostgreSQL's instructions per audit row
/// (docs/bench.md, eleventh round), and ids stay in chain order across replicas, which a
/// per-backend sequence cache would not keep.
pub async fn lock_chain_tail(conn: &mut PgConnection) -> StoreResult<Option<ChainTail>> {
    sqlx::query!("select pg_advisory_xact_lock($1)", AUDIT_CHAIN_LOCK)
        .execute(&mut *conn)
        .await?;
    let Some(last) =
        sqlx::query!("select id, hash, chain_version from audit_events order by id desc limit 1")
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(None);
    };
    // The column's check constraint keeps it at 32 bytes.
    let hash =
        <[u8; 32]>::try_from(last.hash.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Some(ChainTail { id: last.id, hash }))
}

/// The whole batch through one `COPY ... FROM STDIN (FORMAT binary)`: for PostgreSQL the
/// cheapest way in (no array unnesting, sorting or parameter parsing; the bench's `hot`
/// phase inserts one row per read), and for us a buffer written without escaping anything.
/// Each row carries its id (`AuditRow::id`), numbered in chain order. Must run in the
/// caller's transaction, under the chain lock.
pub async fn insert_batch(conn: &mut PgConnection, rows: &[AuditRow<'_>]) -> StoreResult<()> {
    let mut copy = BinaryCopy::with_rows(rows.len());
    for r in rows {
        copy.row(17);
        copy.int8(r.id);
        copy.timestamptz(r.occurred_at);
        copy.uuid(r.token_id);
        copy.uuid(r.tenant_id);
        copy.text(r.tenant_slug);
        copy.text(Some(r.action.as_str()));
        copy.text(r.secret_key);
        copy.text(Some(r.outcome.as_str()));
        copy.text(r.request_id);
        copy.field(Some(&r.prev_hash));
        copy.field(Some(&r.hash));
        copy.text(r.source);
        copy.text(r.route);
        copy.int4(r.count);
        copy.text(r.actor);
        copy.text(r.subject);
        copy.int2(r.chain_version);
    }
    let mut into = conn
        .copy_in_raw(
            "copy audit_events (id, occurred_at, token_id, tenant_id, tenant_slug, action,
                                secret_key, outcome, request_id, prev_hash, hash,
                                source, route, count, actor, subject, chain_version)
             from stdin (format binary)",
        )
        .await?;
    if let Err(e) = into.send(copy.finish()).await {
        let _ = into
            .abort("tenant-vault could not send the audit batch")
            .await;
        return Err(e.into());
    }
    into.finish().await?;
    Ok(())
}

/// PostgreSQL's binary COPY format: a signature, a flags word and an empty header
/// extension, then per row a field count and each field as a length (-1 for NULL) and its
/// bytes in the type's binary form, then -1.
struct BinaryCopy(Vec<u8>);

impl BinaryCopy {
    /// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01 UTC).
    const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

    fn with_rows(rows: usize) -> Self {
        let mut buf = Vec::with_capacity(19 + rows * 320 + 2);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        Self(buf)
    }

    fn row(&mut self, fields: i16) {
        self.0.extend_from_slice(&fields.to_be_bytes());
    }

    fn field(&mut self, bytes: Option<&[u8]>) {
        match bytes {
            Some(b) => {
                let len = i32::try_from(b.len()).expect("an audit field is far below 2 GiB");
                self.0.extend_from_slice(&len.to_be_bytes());
                self.0.extend_from_slice(b);
            }
            None => self.0.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    fn text(&mut self, text: Option<&str>) {
        self.field(text.map(str::as_bytes));
    }

    fn uuid(&mut self, id: Option<Uuid>) {
        self.field(id.as_ref().map(|u| &u.as_bytes()[..]));
    }

    fn int4(&mut self, n: Option<i32>) {
        self.field(n.map(i32::to_be_bytes).as_ref().map(|b| &b[..]));
    }

    fn int8(&mut self, n: i64) {
        self.field(Some(&n.to_be_bytes()));
    }

    fn int2(&mut self, n: i16) {
        self.field(Some(&n.to_be_bytes()));
    }

    fn timestamptz(&mut self, at: DateTime<Utc>) {
        let micros = at.timestamp_micros() - Self::PG_EPOCH_MICROS;
        self.field(Some(&micros.to_be_bytes()));
    }

    fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&(-1i16).to_be_bytes());
        self.0
    }
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
