//! `tenants`: live and (soft-)deleted tenants.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{TenantId, TenantSlug};

#[derive(Debug, Clone)]
pub struct TenantRow {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    id: TenantId,
    slug: &TenantSlug,
    name: &str,
) -> StoreResult<TenantRow> {
    Ok(sqlx::query_as!(
        TenantRow,
        "insert into tenants (id, slug, name) values ($1, $2, $3)
         returning id, slug, name, created_at",
        id.0,
        slug.as_str(),
        name
    )
    .fetch_one(db)
    .await?)
}

/// The live tenant with this slug, if any.
pub async fn by_slug(db: impl PgExecutor<'_>, slug: &TenantSlug) -> StoreResult<Option<TenantRow>> {
    Ok(sqlx::query_as!(
        TenantRow,
        "select id, slug, name, created_at from tenants where slug = $1 and deleted_at is null",
        slug.as_str()
    )
    .fetch_optional(db)
    .await?)
}

/// Marks the tenant deleted; returns false if it was not live.
pub async fn mark_deleted(db: impl PgExecutor<'_>, id: TenantId) -> StoreResult<bool> {
    let done = sqlx::query!(
        "update tenants set deleted_at = now() where id = $1 and deleted_at is null",
        id.0
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Live tenants, for `rotate data-keys --all`.
pub async fn live(db: impl PgExecutor<'_>) -> StoreResult<Vec<(Uuid, String)>> {
    Ok(
        sqlx::query!("select id, slug from tenants where deleted_at is null order by slug")
            .fetch_all(db)
            .await?
            .into_iter()
            .map(|r| (r.id, r.slug))
            .collect(),
    )
}

/// Live tenants whose slug starts with `prefix`, by slug, one page.
pub async fn search(
    db: impl PgExecutor<'_>,
    prefix: &str,
    limit: i64,
    offset: i64,
) -> StoreResult<Vec<TenantRow>> {
    // The prefix is a validated slug fragment (a-z, 0-9, '-'): no LIKE wildcards in it.
    Ok(sqlx::query_as!(
        TenantRow,
        "select id, slug, name, created_at from tenants
         where deleted_at is null and starts_with(slug, $1)
         order by slug limit $2 offset $3",
        prefix,
        limit,
        offset
    )
    .fetch_all(db)
    .await?)
}

/// (secrets, live tokens) of a tenant.
pub async fn counts(db: impl PgExecutor<'_>, id: TenantId) -> StoreResult<(i64, i64)> {
    let r = sqlx::query!(
        r#"select (select count(*) from company_secrets where company_id = $1) as "secrets!",
                  (select count(*) from access_tokens where tenant_id = $1 and revoked_at is null
                      and (expires_at is null or expires_at > now())) as "tokens!""#,
        id.0
    )
    .fetch_one(db)
    .await?;
    Ok((r.secrets, r.tokens))
}
