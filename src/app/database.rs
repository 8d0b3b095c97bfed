//! The database side of the commands: pools, migrations, and the owner and runtime roles.

use anyhow::Context as _;
use sqlx::PgPool;

use crate::config::DatabaseArgs;
use crate::keys::KeyError;
use crate::store::{self, roles::RoleName};

/// A pool for `url`, connected now (one-shot commands and dev mode).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    store::connect(url, max_connections).await
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    store::migrate(pool).await.context("migration failed")
}

/// Applies pending migrations, if any. Asking needs only SELECT, so a runtime role that
/// cannot migrate starts fine when there is nothing to do, and says what to do otherwise.
pub async fn migrate_if_pending(pool: &PgPool) -> anyhow::Result<()> {
    let pending = store::pending_migrations(pool)
        .await
        .map_err(KeyError::Store)
        .context("cannot read the applied migrations")?;
    if pending == 0 {
        return Ok(());
    }
    store::migrate(pool).await.with_context(|| {
        format!(
            "{pending} migration(s) pending and applying them failed; if DATABASE_URL names the              runtime role, apply them as the owner role: `tenant-vault migrate` with              TENANT_VAULT_MIGRATE_DATABASE_URL (or --migrate-database-url) set"
        )
    })
}

/// The pool migrations run on: the owner's URL when given, else `pool`'s.
pub async fn migration_pool(db: &DatabaseArgs) -> anyhow::Result<PgPool> {
    let url = db
        .migrate_database_url
        .as_ref()
        .unwrap_or(&db.database_url)
        .expose();
    store::connect(url, 2)
        .await
        .map_err(|e| KeyError::Store(e.into()))
        .context("cannot connect to the database to migrate")
}

/// The grants of `tenant-vault db grant`, as SQL. `owner`: whose future tables the default
/// privileges cover (None: the role that runs the script).
pub fn runtime_grants_sql(runtime: &str, owner: Option<&str>) -> anyhow::Result<Vec<String>> {
    let runtime = RoleName::parse(runtime).context("--runtime-role")?;
    let owner = owner
        .map(RoleName::parse)
        .transpose()
        .context("--owner-role")?;
    Ok(store::roles::grant_statements(&runtime, owner.as_ref()))
}

/// Applies the runtime role's grants (run as the owner or a superuser, after migrating).
pub async fn grant_runtime_role(pool: &PgPool, runtime: &str) -> anyhow::Result<Vec<String>> {
    let runtime = RoleName::parse(runtime).context("--runtime-role")?;
    if store::roles::table_owner(pool).await?.is_none() {
        anyhow::bail!("the tables do not exist yet: run `tenant-vault migrate` first");
    }
    store::roles::apply_grants(pool, &runtime)
        .await
        .context("applying the grants failed (run as the owner of the tables or a superuser)")
}

/// Makes the owner and runtime login roles exist and hands the database to the owner (dev
/// mode's private cluster; `admin` is a superuser pool on that database).
pub async fn ensure_dev_roles(admin: &PgPool, owner: &str, runtime: &str) -> anyhow::Result<()> {
    let owner = RoleName::parse(owner)?;
    let runtime = RoleName::parse(runtime)?;
    store::roles::ensure_login_role(admin, &owner, owner.as_str()).await?;
    store::roles::ensure_login_role(admin, &runtime, runtime.as_str()).await?;
    store::roles::adopt_schema(admin, &owner).await?;
    Ok(())
}

/// Logs loudly when the service's role can do more than its job: a superuser or the owner
/// of the tables can alter, truncate or rewrite the audit trail. Returns the role's name.
pub async fn warn_if_privileged(pool: &PgPool) -> Option<String> {
    match store::roles::session_role(pool).await {
        Ok(role) if role.superuser => {
            tracing::warn!(role = %role.name, "SERVING AS A SUPERUSER: this role can rewrite or truncate the audit trail and disable its triggers; serve as a runtime role (`tenant-vault db grant --runtime-role NAME`, README \"Database roles\")");
            Some(role.name)
        }
        Ok(role) if role.owns_tables => {
            tracing::warn!(role = %role.name, "SERVING AS THE OWNER OF THE TABLES: this role can alter tables and disable the audit trail's triggers; serve as a runtime role (`tenant-vault db grant --runtime-role NAME`, README \"Database roles\")");
            Some(role.name)
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "could not check the database role's privileges");
            None
        }
    }
}

/// `create database` if it does not exist (the name is a constant, never user input).
pub async fn create_database_if_missing(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let pool = store::connect(admin_url, 1).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&pool)
            .await?;
    if !exists {
        sqlx::query(&format!("create database \"{name}\""))
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(())
}
