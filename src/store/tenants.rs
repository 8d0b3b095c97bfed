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
