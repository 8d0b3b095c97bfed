//! PostgreSQL access: every query the service runs, compile-time checked by sqlx against the
//! schema in `migrations/` (offline data in `sqlx-data/`). No crypto and no policy here: rows
//! in, rows out. Functions take any executor, so callers compose them into transactions.

pub mod archive;
pub mod audit;
pub mod data_keys;
pub mod internal_keys;
pub mod key_rotations;
pub mod key_status;
pub mod limits;
pub mod master_keys;
pub mod notify;
pub mod reencryption;
pub mod roles;
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

/// A pooled connection idle this long is pinged before it is handed out.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The pool's settings (the load bench's database ceilings use them too, so they measure the
/// same pool). sqlx's default pings every connection it hands out: a round trip to
/// PostgreSQL before every query, which cost the database reads a third of their
/// round trips. A connection in use a moment ago is known to be alive; only one that sat
/// idle, when the server may have restarted or a firewall dropped it, is pinged (and
/// replaced if the ping fails).
pub fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// Opens the pool. Connections are made lazily so the service can start (and report
/// not-ready) while the database is still coming up.
pub fn connect_lazy(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = database_url.parse()?;
    Ok(pool_options(max_connections).connect_lazy_with(options.application_name("tenant-vault")))
}

/// Opens the pool and waits for one working connection.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let pool = connect_lazy(database_url, max_connections)?;
    pool.acquire().await?;
    Ok(pool)
}

/// A connection of its own for a long-lived task (the audit writer), outside the pool but
/// with its settings and under `application_name`, so `pg_stat_activity` names it. Refused
/// once the pool is closed: the service is then done with the database.
pub async fn dedicated_connection(
    pool: &PgPool,
    application_name: &str,
) -> StoreResult<sqlx::PgConnection> {
    if pool.is_closed() {
        return Err(sqlx::Error::PoolClosed.into());
    }
    let options = (*pool.connect_options())
        .clone()
        .application_name(application_name);
    // The pool's acquire timeout, so a database that does not answer fails like the pool.
    match tokio::time::timeout(
        pool.options().get_acquire_timeout(),
        sqlx::ConnectOptions::connect(&options),
    )
    .await
    {
        Ok(connected) => Ok(connected?),
        Err(_) => Err(sqlx::Error::PoolTimedOut.into()),
    }
}

/// Pings `conn` if it sat idle for `PING_IDLE_AFTER` (the pool's rule, for a dedicated
/// connection): true if it may be used.
pub async fn alive_after_idle(conn: &mut sqlx::PgConnection, idle_for: Duration) -> bool {
    idle_for < PING_IDLE_AFTER || sqlx::Connection::ping(conn).await.is_ok()
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// How many embedded migrations the database has not applied. Needs only SELECT, so the
/// runtime role can ask (and skip migrating when nothing is pending).
pub async fn pending_migrations(pool: &PgPool) -> StoreResult<usize> {
    let table: Option<String> =
        sqlx::query_scalar("select to_regclass('public._sqlx_migrations')::text")
            .fetch_one(pool)
            .await?;
    if table.is_none() {
        return Ok(MIGRATOR.iter().count());
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count())
}

/// `select 1`, for readiness checks.
pub async fn ping(pool: &PgPool) -> StoreResult<()> {
    sqlx::query_scalar!("select 1 as \"one!\"")
        .fetch_one(pool)
        .await?;
    Ok(())
}
