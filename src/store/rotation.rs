//! Key rotation: the locks that keep one rotation at a time, the batched re-wrap of data keys
//! under a new master key version, data key rotation, the re-encryption work list and its
//! progress, and the rotation log. Rows in, rows out: no crypto here.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::StoreResult;

/// Session lock held by the one replica that rotates the master key.
pub const MASTER_ROTATION_LOCK: i64 = 0x7476_726f_7461_7401;
/// Transaction lock: exclusive while data keys are re-wrapped, shared while a data key is
/// wrapped, so no key is ever wrapped under a master version that is being retired.
const MASTER_WRAP_LOCK: i64 = 0x7476_7772_6170_7401;
/// Class of the per-tenant transaction locks taken by the re-encryption job.
const REENCRYPT_LOCK_CLASS: i32 = 0x7476_7265;

/// Tries to take the master rotation lock for this session. Use a connection of its own
/// (detached from the pool) so a crash or a drop releases the lock with the connection.
pub async fn try_lock_master_rotation(conn: &mut PgConnection) -> StoreResult<bool> {
    Ok(sqlx::query_scalar!(
        r#"select pg_try_advisory_lock($1) as "locked!""#,
        MASTER_ROTATION_LOCK
    )
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn unlock_master_rotation(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query_scalar!(
        r#"select pg_advisory_unlock($1) as "unlocked!""#,
        MASTER_ROTATION_LOCK
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(())
}

/// Held until the transaction ends: no data key can be wrapped meanwhile.
pub async fn lock_wrap_exclusive(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query!("select pg_advisory_xact_lock($1)", MASTER_WRAP_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Held until the transaction ends, by anyone wrapping a new data key.
pub async fn lock_wrap_shared(conn: &mut PgConnection) -> StoreResult<()> {
    sqlx::query!("select pg_advisory_xact_lock_shared($1)", MASTER_WRAP_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn active_master_version(db: impl PgExecutor<'_>) -> StoreResult<Option<i32>> {
    Ok(
        sqlx::query_scalar!("select version from master_keys where state = 'active'")
            .fetch_optional(db)
            .await?,
    )
}

pub async fn max_master_version(db: impl PgExecutor<'_>) -> StoreResult<i32> {
    Ok(
        sqlx::query_scalar!(r#"select coalesce(max(version), 0) as "v!" from master_keys"#)
            .fetch_one(db)
            .await?,
    )
}

/// Retires the active master key row; returns its version.
pub async fn retire_active_master(db: impl PgExecutor<'_>) -> StoreResult<Option<i32>> {
    Ok(sqlx::query_scalar!(
        "update master_keys set state = 'retired' where state = 'active' returning version"
    )
    .fetch_optional(db)
    .await?)
}

/// How many data keys still hold bytes wrapped under this master key version.
pub async fn wrapped_under_master(db: impl PgExecutor<'_>, version: i32) -> StoreResult<i64> {
    Ok(sqlx::query_scalar!(
        r#"select count(*) as "n!" from data_keys
           where master_key_version = $1 and wrapped_key is not null"#,
        version
    )
    .fetch_one(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct WrappedKeyRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub version: i32,
    pub wrapped_key: Vec<u8>,
    pub master_key_version: i32,
}

/// The next batch of live (not destroyed) data keys after `after`, in id order.
pub async fn wrapped_keys_after(
    db: impl PgExecutor<'_>,
    after: Uuid,
    limit: i64,
) -> StoreResult<Vec<WrappedKeyRow>> {
    Ok(sqlx::query_as!(
        WrappedKeyRow,
        r#"select id, tenant_id, version, wrapped_key as "wrapped_key!", master_key_version
           from data_keys where wrapped_key is not null and id > $1
           order by id limit $2"#,
        after,
        limit
    )
    .fetch_all(db)
    .await?)
}

/// One statement re-wraps a whole batch. Keys destroyed meanwhile stay destroyed.
pub async fn rewrap_batch(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    wrapped: &[Vec<u8>],
    master_version: i32,
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update data_keys d set wrapped_key = u.wrapped, master_key_version = $3
         from unnest($1::uuid[], $2::bytea[]) as u(id, wrapped)
         where d.id = u.id and d.wrapped_key is not null",
        ids,
        wrapped,
        master_version
    )
    .execute(db)
    .await?
    .rows_affected())
}

#[derive(Debug, Clone)]
pub struct KeyStateRow {
    pub id: Uuid,
    pub version: i32,
    pub state: String,
}

/// Every key of a tenant, locked until the transaction ends (rotations of one tenant take
/// turns, and writers counting an encryption finish first).
pub async fn lock_tenant_keys(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> StoreResult<Vec<KeyStateRow>> {
    Ok(sqlx::query_as!(
        KeyStateRow,
        "select id, version, state from data_keys where tenant_id = $1 order by version for update",
        tenant_id
    )
    .fetch_all(db)
    .await?)
}

pub async fn demote_key(db: impl PgExecutor<'_>, id: Uuid) -> StoreResult<()> {
    sqlx::query!(
        "update data_keys set state = 'decrypt_only' where id = $1 and state = 'active'",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Counts `n` encryptions under an active key; None when it is no longer active.
pub async fn count_encryptions(
    db: impl PgExecutor<'_>,
    id: Uuid,
    n: i64,
) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar!(
        "update data_keys set encryption_count = encryption_count + $2
         where id = $1 and state = 'active' returning encryption_count",
        id,
        n
    )
    .fetch_optional(db)
    .await?)
}

/// Tenants with keys waiting to be emptied and destroyed.
pub async fn tenants_with_old_keys(db: impl PgExecutor<'_>) -> StoreResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        r#"select distinct tenant_id as "tenant_id!" from data_keys where state = 'decrypt_only'"#
    )
    .fetch_all(db)
    .await?)
}

/// Takes the tenant's re-encryption lock for this transaction, if no one else holds it.
pub async fn try_lock_reencryption(conn: &mut PgConnection, tenant_id: Uuid) -> StoreResult<bool> {
    let h = tenant_id.as_u128();
    let key = (h as u32 ^ (h >> 32) as u32 ^ (h >> 64) as u32 ^ (h >> 96) as u32) as i32;
    Ok(sqlx::query_scalar!(
        r#"select pg_try_advisory_xact_lock($1, $2) as "locked!""#,
        REENCRYPT_LOCK_CLASS,
        key
    )
    .fetch_one(&mut *conn)
    .await?)
}

#[derive(Debug, Clone)]
pub struct CurrentCiphertext {
    pub id: Uuid,
    pub secret_key: String,
    pub version: i32,
    pub secret_value_encrypted: Vec<u8>,
    pub data_key_id: Uuid,
}

/// Current values of a tenant still under a decrypt-only key, locked; rows a writer holds
/// are skipped (they come round again).
pub async fn current_under_old_keys(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    limit: i64,
) -> StoreResult<Vec<CurrentCiphertext>> {
    Ok(sqlx::query_as!(
        CurrentCiphertext,
        "select c.id, c.secret_key, c.version, c.secret_value_encrypted, c.data_key_id
         from company_secrets c
         where c.company_id = $1
           and c.data_key_id in
               (select id from data_keys where tenant_id = $1 and state = 'decrypt_only')
         limit $2
         for update of c skip locked",
        tenant_id,
        limit
    )
    .fetch_all(db)
    .await?)
}

#[derive(Debug, Clone)]
pub struct KeptCiphertext {
    pub secret_id: Uuid,
    pub secret_key: String,
    pub version: i32,
    pub secret_value_encrypted: Vec<u8>,
    pub data_key_id: Uuid,
}

/// A key's encryption count.
pub async fn encryption_count(db: impl PgExecutor<'_>, id: Uuid) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar!("select encryption_count from data_keys where id = $1", id)
            .fetch_optional(db)
            .await?,
    )
}

/// Kept versions of a tenant still under a decrypt-only key, locked together with their
/// secret's current row (as writers lock that row first, a secret being written is skipped
/// whole rather than waited for: waiting could deadlock with its writer).
pub async fn kept_under_old_keys(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    limit: i64,
) -> StoreResult<Vec<KeptCiphertext>> {
    Ok(sqlx::query_as!(
        KeptCiphertext,
        "select v.secret_id, v.secret_key, v.version, v.secret_value_encrypted, v.data_key_id
         from company_secret_versions v join company_secrets c on c.id = v.secret_id
         where v.company_id = $1
           and v.data_key_id in
               (select id from data_keys where tenant_id = $1 and state = 'decrypt_only')
         limit $2
         for update of v, c skip locked",
        tenant_id,
        limit
    )
    .fetch_all(db)
    .await?)
}

/// Re-encrypted current values, one statement per batch. The value and its version are
/// unchanged, so `updated_at` is too.
pub async fn replace_current(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    envelopes: &[Vec<u8>],
    data_key_id: Uuid,
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update company_secrets c set secret_value_encrypted = u.envelope, data_key_id = $3
         from unnest($1::uuid[], $2::bytea[]) as u(id, envelope)
         where c.id = u.id",
        ids,
        envelopes,
        data_key_id
    )
    .execute(db)
    .await?
    .rows_affected())
}

pub async fn replace_kept(
    db: impl PgExecutor<'_>,
    secret_ids: &[Uuid],
    versions: &[i32],
    envelopes: &[Vec<u8>],
    data_key_id: Uuid,
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update company_secret_versions v
         set secret_value_encrypted = u.envelope, data_key_id = $4
         from unnest($1::uuid[], $2::int4[], $3::bytea[]) as u(secret_id, version, envelope)
         where v.secret_id = u.secret_id and v.version = u.version",
        secret_ids,
        versions,
        envelopes,
        data_key_id
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// Ciphertexts (current and kept) of a tenant still under decrypt-only keys.
pub async fn remaining_under_old_keys(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> StoreResult<i64> {
    Ok(sqlx::query_scalar!(
        r#"with old as (select id from data_keys where tenant_id = $1 and state = 'decrypt_only')
           select (select count(*) from company_secrets where data_key_id in (select id from old))
                + (select count(*) from company_secret_versions where data_key_id in (select id from old))
           as "n!""#,
        tenant_id
    )
    .fetch_one(db)
    .await?)
}

/// Destroys the tenant's decrypt-only keys that no ciphertext refers to any more.
pub async fn destroy_unreferenced_old_keys(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
) -> StoreResult<Vec<Uuid>> {
    Ok(sqlx::query_scalar!(
        "update data_keys d set state = 'destroyed', wrapped_key = null, destroyed_at = now()
         where d.tenant_id = $1 and d.state = 'decrypt_only'
           and not exists (select 1 from company_secrets c where c.data_key_id = d.id)
           and not exists (select 1 from company_secret_versions v where v.data_key_id = d.id)
         returning d.id",
        tenant_id
    )
    .fetch_all(db)
    .await?)
}

/// Starts (or restarts) the progress record of a tenant's re-encryption.
pub async fn start_job(db: impl PgExecutor<'_>, tenant_id: Uuid, total: i64) -> StoreResult<()> {
    sqlx::query!(
        "insert into reencryption_jobs (tenant_id, total, done)
         values ($1, $2, 0)
         on conflict (tenant_id) do update
         set total = excluded.total, done = 0, started_at = now(), updated_at = now(),
             finished_at = null",
        tenant_id,
        total
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn job_progress(db: impl PgExecutor<'_>, tenant_id: Uuid, moved: i64) -> StoreResult<()> {
    sqlx::query!(
        "update reencryption_jobs set done = least(done + $2, total), updated_at = now()
         where tenant_id = $1",
        tenant_id,
        moved
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn finish_job(db: impl PgExecutor<'_>, tenant_id: Uuid) -> StoreResult<()> {
    sqlx::query!(
        "update reencryption_jobs set done = total, finished_at = now(), updated_at = now()
         where tenant_id = $1 and finished_at is null",
        tenant_id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub struct NewRotation {
    pub kind: &'static str,
    pub tenant_id: Option<Uuid>,
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
        r.tenant_id,
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

/// Live tenants, for `rotate data-keys --all`.
pub async fn live_tenants(db: impl PgExecutor<'_>) -> StoreResult<Vec<(Uuid, String)>> {
    Ok(
        sqlx::query!("select id, slug from tenants where deleted_at is null order by slug")
            .fetch_all(db)
            .await?
            .into_iter()
            .map(|r| (r.id, r.slug))
            .collect(),
    )
}
