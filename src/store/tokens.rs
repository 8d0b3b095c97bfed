//! `access_tokens`: only SHA-256 hashes of tokens are stored.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::TenantId;

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    /// The tenant's slug, joined in so a cached token check needs no second query.
    pub tenant_slug: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub struct NewToken<'a> {
    pub id: Uuid,
    pub tenant_id: Option<Uuid>,
    pub token_hash: &'a [u8],
    pub scopes: &'a [String],
    pub description: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub async fn insert(db: impl PgExecutor<'_>, t: NewToken<'_>) -> StoreResult<()> {
    sqlx::query!(
        "insert into access_tokens (id, tenant_id, token_hash, scopes, description, expires_at)
         values ($1, $2, $3, $4, $5, $6)",
        t.id,
        t.tenant_id,
        t.token_hash,
        t.scopes,
        t.description,
        t.expires_at
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A live token with this hash: not revoked, not expired, and its tenant (if any) not deleted.
pub async fn by_hash(db: impl PgExecutor<'_>, token_hash: &[u8]) -> StoreResult<Option<TokenRow>> {
    Ok(sqlx::query_as!(
        TokenRow,
        r#"select t.id, t.tenant_id, n.slug as "tenant_slug?", t.scopes, t.expires_at
           from access_tokens t left join tenants n on n.id = t.tenant_id
           where t.token_hash = $1
             and t.revoked_at is null
             and (t.expires_at is null or t.expires_at > now())
             and (t.tenant_id is null or n.deleted_at is null)"#,
        token_hash
    )
    .fetch_optional(db)
    .await?)
}

/// Revokes every token of a tenant (on tenant deletion).
pub async fn revoke_for_tenant(db: impl PgExecutor<'_>, tenant: TenantId) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update access_tokens set revoked_at = now() where tenant_id = $1 and revoked_at is null",
        tenant.0
    )
    .execute(db)
    .await?
    .rows_affected())
}
