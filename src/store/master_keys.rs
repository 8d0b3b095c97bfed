//! `master_keys`: which master key versions exist and how to recognise them. Never the key.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct MasterKeyRow {
    pub version: i32,
    pub source: String,
    pub infisical_secret_name: Option<String>,
    pub infisical_secret_version: Option<i32>,
    pub check_value: Vec<u8>,
    pub argon2_salt: Option<Vec<u8>>,
    pub state: String,
    pub created_at: DateTime<Utc>,
}

pub async fn all(db: impl PgExecutor<'_>) -> StoreResult<Vec<MasterKeyRow>> {
    Ok(sqlx::query_as!(
        MasterKeyRow,
        "select version, source, infisical_secret_name, infisical_secret_version, check_value,
                argon2_salt, state, created_at
         from master_keys order by version"
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
