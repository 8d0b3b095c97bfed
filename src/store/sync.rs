//! Infisical sync bookkeeping: secret origins, tombstones, per-tenant Infisical settings and
//! the re-check schedule (migration 0006).

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{InfisicalMode, SecretKey, SecretOrigin, TenantId, TenantSlug};

/// A tenant's Infisical settings.
#[derive(Debug, Clone, Copy)]
pub struct TenantSync {
    /// None: the global mode.
    pub mode: Option<InfisicalMode>,
    /// False: the tenant's Infisical folder is never read.
    pub import: bool,
}

pub async fn tenant_settings(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<Option<TenantSync>> {
    let row = sqlx::query!(
        r#"select infisical_mode as "mode: InfisicalMode", infisical_import
           from tenants where id = $1 and deleted_at is null"#,
        tenant.0
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| TenantSync {
        mode: r.mode,
        import: r.infisical_import,
    }))
}

pub async fn set_mode(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    mode: Option<InfisicalMode>,
) -> StoreResult<bool> {
    let done = sqlx::query!(
        "update tenants set infisical_mode = $2 where id = $1 and deleted_at is null",
        tenant.0,
        mode as Option<InfisicalMode>
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn set_import(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    import: bool,
) -> StoreResult<()> {
    sqlx::query!(
        "update tenants set infisical_import = $2 where id = $1",
        tenant.0,
        import
    )
    .execute(db)
    .await?;
    Ok(())
}

/// True if a deleted tenant ever had this slug.
pub async fn slug_was_used(db: impl PgExecutor<'_>, slug: &TenantSlug) -> StoreResult<bool> {
    Ok(sqlx::query_scalar!(
        r#"select exists (select 1 from tenants where slug = $1 and deleted_at is not null) as "used!""#,
        slug.as_str()
    )
    .fetch_one(db)
    .await?)
}

/// Where a stored secret came from.
#[derive(Debug, Clone)]
pub struct OriginRow {
    pub secret_key: String,
    pub version: i32,
    pub origin: SecretOrigin,
    pub infisical_secret_id: Option<String>,
    pub infisical_version: Option<i32>,
}

/// Records the origin of the current value of a secret (in the writing transaction).
pub async fn set_origin(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
    origin: &Origin,
) -> StoreResult<()> {
    let (kind, folder, id, version) = match origin {
        Origin::Api => (SecretOrigin::Api, None, None, None),
        Origin::Infisical {
            folder,
            secret_id,
            version,
        } => (
            SecretOrigin::Infisical,
            Some(folder.as_str()),
            Some(secret_id.as_str()),
            Some(*version),
        ),
    };
    sqlx::query!(
        "update company_secrets
         set origin = $3, infisical_folder = $4, infisical_secret_id = $5, infisical_version = $6
         where company_id = $1 and secret_key = $2",
        tenant.0,
        key.as_str(),
        kind as SecretOrigin,
        folder,
        id,
        version
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Where a value being written comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Api,
    Infisical {
        folder: String,
        secret_id: String,
        version: i32,
    },
}

/// Every secret of a tenant with its origin.
pub async fn origins(db: impl PgExecutor<'_>, tenant: TenantId) -> StoreResult<Vec<OriginRow>> {
    Ok(sqlx::query_as!(
        OriginRow,
        r#"select secret_key, version, origin as "origin: SecretOrigin",
                  infisical_secret_id, infisical_version
           from company_secrets where company_id = $1"#,
        tenant.0
    )
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct Tombstone {
    pub secret_key: String,
    pub infisical_version: Option<i32>,
}

/// Leaves (or refreshes) a tombstone for a deleted secret.
pub async fn put_tombstone(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
    infisical_version: Option<i32>,
) -> StoreResult<()> {
    sqlx::query!(
        "insert into secret_tombstones (company_id, secret_key, infisical_version)
         values ($1, $2, $3)
         on conflict (company_id, secret_key)
         do update set infisical_version = excluded.infisical_version, deleted_at = now()",
        tenant.0,
        key.as_str(),
        infisical_version
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn tombstone(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
) -> StoreResult<Option<Tombstone>> {
    Ok(sqlx::query_as!(
        Tombstone,
        "select secret_key, infisical_version from secret_tombstones
         where company_id = $1 and secret_key = $2",
        tenant.0,
        key.as_str()
    )
    .fetch_optional(db)
    .await?)
}

pub async fn tombstones(db: impl PgExecutor<'_>, tenant: TenantId) -> StoreResult<Vec<Tombstone>> {
    Ok(sqlx::query_as!(
        Tombstone,
        "select secret_key, infisical_version from secret_tombstones where company_id = $1",
        tenant.0
    )
    .fetch_all(db)
    .await?)
}

/// Records the Infisical version a tombstone was first seen against (only if unknown).
pub async fn tombstone_baseline(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
    infisical_version: i32,
) -> StoreResult<()> {
    sqlx::query!(
        "update secret_tombstones set infisical_version = $3
         where company_id = $1 and secret_key = $2 and infisical_version is null",
        tenant.0,
        key.as_str(),
        infisical_version
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn remove_tombstone(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
) -> StoreResult<()> {
    sqlx::query!(
        "delete from secret_tombstones where company_id = $1 and secret_key = $2",
        tenant.0,
        key.as_str()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records a finished re-read of a tenant's folder and when it is next due.
pub async fn mark_synced(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    next_check_at: DateTime<Utc>,
    error: Option<&str>,
) -> StoreResult<()> {
    sqlx::query!(
        "insert into infisical_sync_state (tenant_id, last_synced_at, next_check_at, last_error)
         values ($1, now(), $2, $3)
         on conflict (tenant_id) do update
         set last_synced_at = now(), next_check_at = excluded.next_check_at,
             last_error = excluded.last_error",
        tenant.0,
        next_check_at,
        error
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Takes one start from the shared re-check budget: true if at least `spacing_ms` have
/// passed since any replica last took one.
pub async fn take_recheck_slot(db: impl PgExecutor<'_>, spacing_ms: i64) -> StoreResult<bool> {
    let done = sqlx::query!(
        "update infisical_recheck_clock set last_at = now()
         where id and last_at <= now() - make_interval(secs => $1::float8 / 1000)",
        spacing_ms as f64
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Claims the followed tenant folder most overdue for a re-check (never checked counts as
/// due) by moving its next check to `next_check_at`; replicas racing for it skip each
/// other's rows. Followed: a live tenant that reads Infisical, in follow mode (its own or
/// `global_mode`), holding at least one secret imported from there.
pub async fn claim_due(
    db: impl PgExecutor<'_>,
    next_check_at: DateTime<Utc>,
    global_mode: InfisicalMode,
) -> StoreResult<Option<(Uuid, String)>> {
    let row = sqlx::query!(
        r#"with due as (
             select t.id, t.slug from tenants t
             left join infisical_sync_state s on s.tenant_id = t.id
             where t.deleted_at is null and t.infisical_import
               and coalesce(t.infisical_mode, $2) = 'follow'
               and exists (select 1 from company_secrets c
                           where c.company_id = t.id and c.origin = 'infisical')
               and coalesce(s.next_check_at, '-infinity') <= now()
             order by coalesce(s.next_check_at, '-infinity')
             limit 1
             for update of t skip locked
           ), claimed as (
             insert into infisical_sync_state (tenant_id, last_synced_at, next_check_at)
             select id, '-infinity', $1 from due
             on conflict (tenant_id) do update set next_check_at = excluded.next_check_at
             returning tenant_id
           )
           select due.id as "id!", due.slug as "slug!" from due join claimed on claimed.tenant_id = due.id"#,
        next_check_at,
        global_mode as InfisicalMode
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.id, r.slug)))
}

/// Holds the per-folder sync lock until the transaction ends (one replica per folder).
pub async fn lock_folder(db: impl PgExecutor<'_>, tenant: TenantId) -> StoreResult<bool> {
    Ok(sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock(hashtextextended('tenant-vault:infisical-sync:' || $1::text, 0)) as "locked!""#,
        &tenant.0.to_string()
    )
    .fetch_one(db)
    .await?)
}

/// The origin of one secret (in the caller's transaction).
pub async fn origins_of(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
) -> StoreResult<Option<OriginRow>> {
    Ok(sqlx::query_as!(
        OriginRow,
        r#"select secret_key, version, origin as "origin: SecretOrigin",
                  infisical_secret_id, infisical_version
           from company_secrets where company_id = $1 and secret_key = $2"#,
        tenant.0,
        key.as_str()
    )
    .fetch_optional(db)
    .await?)
}

/// Deletes a secret deleted in Infisical, only if it is still at `version` and still
/// Infisical's (a write through tenant-vault meanwhile wins).
pub async fn delete_if_synced(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
    key: &SecretKey,
    version: i32,
) -> StoreResult<bool> {
    let done = sqlx::query!(
        "delete from company_secrets
         where company_id = $1 and secret_key = $2 and version = $3 and origin = 'infisical'",
        tenant.0,
        key.as_str(),
        version
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Live tenants that read their Infisical folder, by slug.
pub async fn importing_tenants(db: impl PgExecutor<'_>) -> StoreResult<Vec<String>> {
    Ok(sqlx::query_scalar!(
        "select slug from tenants where deleted_at is null and infisical_import order by slug"
    )
    .fetch_all(db)
    .await?)
}
