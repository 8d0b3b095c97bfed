//! `internal_keys`: the service's own keys (audit chain, tokens), wrapped by the master key.

use sqlx::PgExecutor;

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct InternalKeyRow {
    pub purpose: String,
    pub master_key_version: i32,
    pub wrapped: Vec<u8>,
}

pub async fn get(db: impl PgExecutor<'_>, purpose: &str) -> StoreResult<Option<InternalKeyRow>> {
    Ok(sqlx::query_as!(
        InternalKeyRow,
        "select purpose, master_key_version, wrapped from internal_keys where purpose = $1",
        purpose
    )
    .fetch_optional(db)
    .await?)
}

/// Inserts unless another replica created the key first (then the caller reads theirs).
pub async fn insert_if_absent(
    db: impl PgExecutor<'_>,
    purpose: &str,
    master_key_version: i32,
    wrapped: &[u8],
) -> StoreResult<()> {
    sqlx::query!(
        "insert into internal_keys (purpose, master_key_version, wrapped) values ($1, $2, $3)
         on conflict (purpose) do nothing",
        purpose,
        master_key_version,
        wrapped
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Every internal key, locked for the master key rotation's re-wrap.
pub async fn lock_all(db: impl PgExecutor<'_>) -> StoreResult<Vec<InternalKeyRow>> {
    Ok(sqlx::query_as!(
        InternalKeyRow,
        "select purpose, master_key_version, wrapped from internal_keys order by purpose for update"
    )
    .fetch_all(db)
    .await?)
}

pub async fn rewrap(
    db: impl PgExecutor<'_>,
    purpose: &str,
    master_key_version: i32,
    wrapped: &[u8],
) -> StoreResult<()> {
    sqlx::query!(
        "update internal_keys set master_key_version = $2, wrapped = $3 where purpose = $1",
        purpose,
        master_key_version,
        wrapped
    )
    .execute(db)
    .await?;
    Ok(())
}

/// How many internal keys are wrapped under this master key version.
pub async fn wrapped_under_master(db: impl PgExecutor<'_>, version: i32) -> StoreResult<i64> {
    Ok(sqlx::query_scalar!(
        r#"select count(*) as "n!" from internal_keys where master_key_version = $1"#,
        version
    )
    .fetch_one(db)
    .await?)
}
