//! The cold vault's tables (migration 0007): `archive_outbox` (versions waiting for OpenBao,
//! still encrypted), `archived_versions` (where each archived version lives in OpenBao, no
//! value) and `archive_purges` (deleted tenants whose archive path is still to be deleted).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::versions::KeptVersionRow;
use super::StoreResult;
use crate::domain::{ArchiveReason, SecretKey, TenantId};

/// The archiver's lock ("tvarch"): one archiver at a time across replicas, so the versions of
/// a key reach OpenBao in order and a retried write can be recognised.
const ARCHIVER_LOCK: i64 = 0x7476_6172_6368_7401;

/// Takes the archiver's lock for the caller's transaction; false if another holds it.
pub async fn try_lock_archiver(conn: &mut sqlx::PgConnection) -> StoreResult<bool> {
    Ok(sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock($1) as "locked!""#,
        ARCHIVER_LOCK
    )
    .fetch_one(&mut *conn)
    .await?)
}

/// Retention with the archive on: kept versions at or below `version` move to the outbox
/// instead of being deleted (one statement, so nothing is both or neither).
pub async fn queue_pruned(
    db: impl PgExecutor<'_>,
    secret_id: Uuid,
    version: i32,
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "with moved as (
             delete from company_secret_versions where secret_id = $1 and version <= $2
             returning secret_id, company_id, secret_key, version, secret_value_encrypted,
                       data_key_id, created_at)
         insert into archive_outbox
           (secret_id, company_id, secret_key, version, reason, secret_value_encrypted,
            data_key_id, created_at)
         select secret_id, company_id, secret_key, version, 'retention', secret_value_encrypted,
                data_key_id, created_at
         from moved
         on conflict (secret_id, version) do nothing",
        secret_id,
        version
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Before a secret is deleted: its current value and kept versions go to the outbox.
///
/// The rows are locked first, in their own statement: a re-encryption batch holding them
/// commits before the copy's snapshot is taken, so the outbox gets the ciphertext under the
/// key the rows name when the delete commits. Copied from an older snapshot, it would name
/// the old key, which the job may destroy before this transaction's outbox rows are
/// visible to its "still referenced?" check.
pub async fn queue_deleted(
    conn: &mut PgConnection,
    tenant: TenantId,
    key: &SecretKey,
) -> StoreResult<u64> {
    sqlx::query!(
        "select id from company_secrets where company_id = $1 and secret_key = $2 for update",
        tenant.0,
        key.as_str()
    )
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query!(
        "select version from company_secret_versions
         where company_id = $1 and secret_key = $2 for update",
        tenant.0,
        key.as_str()
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(sqlx::query!(
        "insert into archive_outbox
           (secret_id, company_id, secret_key, version, reason, secret_value_encrypted,
            data_key_id, created_at)
         select id, company_id, secret_key, version, 'deleted', secret_value_encrypted,
                data_key_id, updated_at
         from company_secrets where company_id = $1 and secret_key = $2
         union all
         select secret_id, company_id, secret_key, version, 'deleted', secret_value_encrypted,
                data_key_id, created_at
         from company_secret_versions where company_id = $1 and secret_key = $2
         on conflict (secret_id, version) do nothing",
        tenant.0,
        key.as_str()
    )
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// A version waiting in the outbox (readable from the database until archived).
pub async fn pending_version(
    db: impl PgExecutor<'_>,
    secret_id: Uuid,
    version: i32,
) -> StoreResult<Option<KeptVersionRow>> {
    Ok(sqlx::query_as!(
        KeptVersionRow,
        "select secret_value_encrypted, data_key_id, created_at from archive_outbox
         where secret_id = $1 and version = $2",
        secret_id,
        version
    )
    .fetch_optional(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct ArchivedRow {
    pub version: i32,
    pub kv_version: i32,
    pub created_at: DateTime<Utc>,
    pub archived_at: DateTime<Utc>,
    pub retain_until: DateTime<Utc>,
}

/// Where version `version` of a secret lives in the archive.
pub async fn archived_version(
    db: impl PgExecutor<'_>,
    secret_id: Uuid,
    version: i32,
) -> StoreResult<Option<ArchivedRow>> {
    Ok(sqlx::query_as!(
        ArchivedRow,
        "select version, kv_version, created_at, archived_at, retain_until
         from archived_versions where secret_id = $1 and version = $2",
        secret_id,
        version
    )
    .fetch_optional(db)
    .await?)
}

/// The archived versions of a secret, newest first.
pub async fn archived_for_secret(
    db: impl PgExecutor<'_>,
    secret_id: Uuid,
) -> StoreResult<Vec<ArchivedRow>> {
    Ok(sqlx::query_as!(
        ArchivedRow,
        "select version, kv_version, created_at, archived_at, retain_until
         from archived_versions where secret_id = $1 order by version desc",
        secret_id
    )
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct PendingSummary {
    pub version: i32,
    pub created_at: DateTime<Utc>,
}

/// The versions of a secret waiting for the archive, newest first.
pub async fn pending_for_secret(
    db: impl PgExecutor<'_>,
    secret_id: Uuid,
) -> StoreResult<Vec<PendingSummary>> {
    Ok(sqlx::query_as!(
        PendingSummary,
        "select version, created_at from archive_outbox
         where secret_id = $1 order by version desc",
        secret_id
    )
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct PendingRow {
    pub secret_id: Uuid,
    pub company_id: Uuid,
    pub slug: String,
    pub secret_key: String,
    pub version: i32,
    pub reason: ArchiveReason,
    pub secret_value_encrypted: Vec<u8>,
    pub data_key_id: Uuid,
    pub created_at: DateTime<Utc>,
}

/// The next version to archive, locked until the transaction ends: key by key, in version
/// order; a version that failed five times goes to the back, so it cannot hold up the rest.
pub async fn next_pending(db: impl PgExecutor<'_>) -> StoreResult<Option<PendingRow>> {
    Ok(sqlx::query_as!(
        PendingRow,
        r#"select o.secret_id, o.company_id, t.slug, o.secret_key, o.version,
                  o.reason as "reason: ArchiveReason", o.secret_value_encrypted, o.data_key_id,
                  o.created_at
           from archive_outbox o join tenants t on t.id = o.company_id
           where t.deleted_at is null
           order by o.attempts >= 5, o.company_id, o.secret_key, o.secret_id, o.version
           limit 1
           for update of o skip locked"#
    )
    .fetch_optional(db)
    .await?)
}

/// Records where an outbox row went and removes it from the outbox (same transaction).
pub async fn mark_archived(
    db: impl PgExecutor<'_>,
    row: &PendingRow,
    kv_version: i32,
    archived_at: DateTime<Utc>,
    retain_until: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query!(
        "with gone as (delete from archive_outbox where secret_id = $1 and version = $4)
         insert into archived_versions
           (secret_id, company_id, secret_key, version, kv_version, reason, created_at,
            archived_at, retain_until)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         on conflict (secret_id, version) do nothing",
        row.secret_id,
        row.company_id,
        row.secret_key,
        row.version,
        kv_version,
        row.reason as ArchiveReason,
        row.created_at,
        archived_at,
        retain_until
    )
    .execute(db)
    .await?;
    Ok(())
}

/// One more failed attempt at an outbox row.
pub async fn count_failure(
    db: impl PgExecutor<'_>,
    secret_id: Uuid,
    version: i32,
) -> StoreResult<()> {
    sqlx::query!(
        "update archive_outbox set attempts = attempts + 1 where secret_id = $1 and version = $2",
        secret_id,
        version
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Versions waiting for the archive (live tenants).
pub async fn pending_count(db: impl PgExecutor<'_>) -> StoreResult<i64> {
    Ok(sqlx::query_scalar!(
        r#"select count(*) as "n!" from archive_outbox o join tenants t on t.id = o.company_id
           where t.deleted_at is null"#
    )
    .fetch_one(db)
    .await?)
}

/// A tenant is deleted: its outbox rows (unreadable now that its data keys are destroyed)
/// and archive index go, and its archive path is queued for deletion in OpenBao.
pub async fn forget_tenant(
    db: &mut sqlx::PgConnection,
    tenant: TenantId,
    slug: &str,
) -> StoreResult<()> {
    sqlx::query!("delete from archive_outbox where company_id = $1", tenant.0)
        .execute(&mut *db)
        .await?;
    sqlx::query!(
        "delete from archived_versions where company_id = $1",
        tenant.0
    )
    .execute(&mut *db)
    .await?;
    sqlx::query!(
        "insert into archive_purges (tenant_id, slug) values ($1, $2)
         on conflict (tenant_id) do nothing",
        tenant.0,
        slug
    )
    .execute(&mut *db)
    .await?;
    Ok(())
}

#[derive(Debug, Clone)]
pub struct PurgeRow {
    pub tenant_id: Uuid,
    pub slug: String,
}

/// Deleted tenants whose archive path is still to be deleted, oldest first.
pub async fn purges(db: impl PgExecutor<'_>) -> StoreResult<Vec<PurgeRow>> {
    Ok(sqlx::query_as!(
        PurgeRow,
        "select tenant_id, slug from archive_purges order by requested_at"
    )
    .fetch_all(db)
    .await?)
}

pub async fn purge_done(db: impl PgExecutor<'_>, tenant: Uuid) -> StoreResult<()> {
    sqlx::query!("delete from archive_purges where tenant_id = $1", tenant)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn purge_failed(db: impl PgExecutor<'_>, tenant: Uuid) -> StoreResult<()> {
    sqlx::query!(
        "update archive_purges set attempts = attempts + 1 where tenant_id = $1",
        tenant
    )
    .execute(db)
    .await?;
    Ok(())
}
