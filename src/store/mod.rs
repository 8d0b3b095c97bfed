//! PostgreSQL access: every query the service runs, compile-time checked by sqlx against the
//! schema in `migrations/` (offline data in `sqlx-data/`). No crypto and no policy here: rows
//! in, rows out. Functions take any executor, so callers compose them into transactions.

pub mod audit;
pub mod data_keys;
pub mod key_rotations;
pub mod key_status;
pub mod master_keys;
pub mod notify;
pub mod reencryption;
pub mod secrets;
pub mod sync;
pub mod tenants;
pub mod tokens;
pub mod versions;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The embedded migrations, applied by `tenant-vault migrate`, `serve` and `dev`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A storage failure, sorted by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached right now: answer 503 and retry later.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint refused the write; the constraint name says which.
    #[error("conflict on {0}")]
    Conflict(String),
    #[error("database error")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.constraint().unwrap_or("unique").to_owned())
            }
            // 57P01 admin shutdown, 57P03 cannot connect now, 08xxx connection exceptions.
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c == "57P01" || c == "57P03") =>
            {
                StoreError::Unavailable(err)
            }
            _ => StoreError::Other(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Opens the pool. Connections are made lazily so the service can start (and report
/// not-ready) while the database is still coming up.
pub fn connect_lazy(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = database_url.parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options.application_name("tenant-vault")))
}

/// Opens the pool and waits for one working connection.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let pool = connect_lazy(database_url, max_connections)?;
    pool.acquire().await?;
    Ok(pool)
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// `select 1`, for readiness checks.
pub async fn ping(pool: &PgPool) -> StoreResult<()> {
    sqlx::query_scalar!("select 1 as \"one!\"")
        .fetch_one(pool)
        .await?;
    Ok(())
}
