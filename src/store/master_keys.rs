//! `master_keys`: which master key versions exist and how to recognise them. Never the key.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use super::StoreResult;
use crate::domain::MasterKeyState;

#[derive(Debug, Clone)]
pub struct MasterKeyRow {
    pub version: i32,
    pub source: String,
    pub infisical_secret_name: Option<String>,
    pub infisical_secret_version: Option<i32>,
    pub check_value: Vec<u8>,
    pub argon2_salt: Option<Vec<u8>>,
    pub state: MasterKeyState,
    pub created_at: DateTime<Utc>,
}

pub async fn all(db: impl PgExecutor<'_>) -> StoreResult<Vec<MasterKeyRow>> {
    Ok(sqlx::query_as!(
        MasterKeyRow,
        r#"select version, source, infisical_secret_name, infisical_secret_version, check_value,
                  argon2_salt, state as "state: MasterKeyState", created_at
           from master_keys order by version"#
    )
    .fetch_all(db)
    .await?)
}

pub struct NewMasterKey<'a> {
    pub version: i32,
    pub source: &'a str,
    pub infisical_secret_name: Option<&'a str>,
    pub infisical_secret_version: Option<i32>,
    pub check_value: &'a [u8],
    pub argon2_salt: Option<&'a [u8]>,
}

pub async fn insert(db: impl PgExecutor<'_>, key: NewMasterKey<'_>) -> StoreResult<()> {
    sqlx::query!(
        "insert into master_keys
           (version, source, infisical_secret_name, infisical_secret_version, check_value, argon2_salt)
         values ($1, $2, $3, $4, $5, $6)",
        key.version,
        key.source,
        key.infisical_secret_name,
        key.infisical_secret_version,
        key.check_value,
        key.argon2_salt
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Session lock held by the one replica that rotates the master key.
pub const MASTER_ROTATION_LOCK: i64 = 0x7476_726f_7461_7401;

/// Transaction lock: exclusive while data keys are re-wrapped, shared while a data key is
/// wrapped, so no key is ever wrapped under a master version that is being retired.
const MASTER_WRAP_LOCK: i64 = 0x7476_7772_6170_7401;

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
