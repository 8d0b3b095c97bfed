//! `tenants`

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;

#[derive(Debug, Clone)]
pub struct TenantRow {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

pub async fn insert(
    db: impl PgExecutor<'_>,
    id: Uuid,
    slug: &str,
    name: &str,
) -> StoreResult<TenantRow> {
    Ok(sqlx::query_as!(
        TenantRow,
        "insert into tenants (id, slug, name) values ($1, $2, $3)
         returning id, slug, name, created_at",
        id,
        slug,
        name
    )
    .fetch_one(db)
    .await?)
}

/// The live tenant with this slug, if any.
pub async fn by_slug(db: impl PgExecutor<'_>, slug: &str) -> StoreResult<Option<TenantRow>> {
    Ok(sqlx::query_as!(
        TenantRow,
        "select id, slug, name, created_at from tenants where slug = $1 and deleted_at is null",
        slug
    )
    .fetch_optional(db)
    .await?)
}

/// Marks the tenant deleted; returns false if it was not live.
pub async fn mark_deleted(db: impl PgExecutor<'_>, id: Uuid) -> StoreResult<bool> {
    let done = sqlx::query!(
        "update tenants set deleted_at = now() where id = $1 and deleted_at is null",
        id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
