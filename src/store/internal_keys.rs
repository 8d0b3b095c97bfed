//! `internal_keys`: keys the service uses for itself (token verifiers, audit), stored
//! wrapped under a master key version. Only the keys layer reads or writes them.

use sqlx::PgExecutor;

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct InternalKeyRow {
    pub purpose: String,
    pub master_key_version: i32,
    pub wrapped: Vec<u8>,
}

/// Inserts the key unless one exists for the purpose; true if this call inserted it. A
/// concurrent insert waits for the other transaction and then does nothing.
pub async fn insert_if_missing(
    db: impl PgExecutor<'_>,
    purpose: &str,
    master_key_version: i32,
    wrapped: &[u8],
) -> StoreResult<bool> {
    Ok(sqlx::query!(
        "insert into internal_keys (purpose, master_key_version, wrapped) values ($1, $2, $3)
         on conflict (purpose) do nothing",
        purpose,
        master_key_version,
        wrapped
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

pub async fn by_purpose(
    db: impl PgExecutor<'_>,
    purpose: &str,
) -> StoreResult<Option<InternalKeyRow>> {
    Ok(sqlx::query_as!(
        InternalKeyRow,
        "select purpose, master_key_version, wrapped from internal_keys where purpose = $1",
        purpose
    )
    .fetch_optional(db)
    .await?)
}

/// Every internal key, locked until the transaction ends (master key rotation).
pub async fn all_for_update(db: impl PgExecutor<'_>) -> StoreResult<Vec<InternalKeyRow>> {
    Ok(sqlx::query_as!(
        InternalKeyRow,
        "select purpose, master_key_version, wrapped from internal_keys
         order by purpose for update"
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
