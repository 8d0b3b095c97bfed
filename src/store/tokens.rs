//! `access_tokens`: the SHA-256 of each token and a keyed verifier over it (see
//! `service::tokens`), never the token itself.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::StoreResult;
use crate::domain::{TenantId, TokenKind};

/// What a token check needs.
#[derive(Debug, Clone)]
pub struct TokenRow {
    pub id: Uuid,
    pub kind: TokenKind,
    pub tenant_id: Option<Uuid>,
    /// The tenant's slug, joined in so a cached token check needs no second query.
    pub tenant_slug: Option<String>,
    pub scopes: Vec<String>,
    pub tenant_slugs: Option<Vec<String>>,
    pub key_pattern: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub verifier: Option<Vec<u8>>,
}

/// What a token listing shows (never the hash or verifier).
#[derive(Debug, Clone)]
pub struct TokenInfoRow {
    pub id: Uuid,
    pub kind: TokenKind,
    pub tenant_id: Option<Uuid>,
    pub tenant_slug: Option<String>,
    pub description: Option<String>,
    pub scopes: Vec<String>,
    pub tenant_slugs: Option<Vec<String>>,
    pub key_pattern: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<Uuid>,
}

pub struct NewToken<'a> {
    pub id: Uuid,
    pub kind: TokenKind,
    pub tenant_id: Option<Uuid>,
    pub token_hash: &'a [u8],
    pub verifier: &'a [u8],
    pub scopes: &'a [String],
    pub tenant_slugs: Option<&'a [String]>,
    pub key_pattern: Option<&'a str>,
    pub description: Option<&'a str>,
    pub expires_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<Uuid>,
}

pub async fn insert(db: impl PgExecutor<'_>, t: NewToken<'_>) -> StoreResult<()> {
    sqlx::query!(
        "insert into access_tokens (id, kind, tenant_id, token_hash, verifier, scopes,
                                    tenant_slugs, key_pattern, description, expires_at,
                                    rotated_from)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        t.id,
        t.kind as TokenKind,
        t.tenant_id,
        t.token_hash,
        t.verifier,
        t.scopes,
        t.tenant_slugs,
        t.key_pattern,
        t.description,
        t.expires_at,
        t.rotated_from
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A live token with this hash: not revoked, not expired, and its tenant (if any) not deleted.
pub async fn by_hash(db: impl PgExecutor<'_>, token_hash: &[u8]) -> StoreResult<Option<TokenRow>> {
    Ok(sqlx::query_as!(
        TokenRow,
        r#"select t.id, t.kind as "kind: TokenKind", t.tenant_id, n.slug as "tenant_slug?",
                  t.scopes, t.tenant_slugs, t.key_pattern, t.expires_at, t.verifier
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

/// Rows from before verifiers existed: (id, token hash).
pub async fn missing_verifiers(db: impl PgExecutor<'_>) -> StoreResult<Vec<(Uuid, Vec<u8>)>> {
    Ok(
        sqlx::query!("select id, token_hash from access_tokens where verifier is null")
            .fetch_all(db)
            .await?
            .into_iter()
            .map(|r| (r.id, r.token_hash))
            .collect(),
    )
}

pub async fn set_verifiers(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
    verifiers: &[Vec<u8>],
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update access_tokens t set verifier = u.verifier
         from unnest($1::uuid[], $2::bytea[]) as u(id, verifier)
         where t.id = u.id and t.verifier is null",
        ids,
        verifiers
    )
    .execute(db)
    .await?
    .rows_affected())
}

/// One token, locked until the transaction ends.
pub async fn by_id_for_update(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> StoreResult<Option<TokenInfoRow>> {
    Ok(sqlx::query_as!(
        TokenInfoRow,
        r#"select t.id, t.kind as "kind: TokenKind", t.tenant_id, n.slug as "tenant_slug?",
                  t.description, t.scopes, t.tenant_slugs, t.key_pattern, t.created_at,
                  t.expires_at, t.last_used_at, t.revoked_at, t.rotated_from
           from access_tokens t left join tenants n on n.id = t.tenant_id
           where t.id = $1
           for update of t"#,
        id
    )
    .fetch_optional(db)
    .await?)
}

/// A tenant's tokens, newest first.
pub async fn for_tenant(
    db: impl PgExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<Vec<TokenInfoRow>> {
    Ok(sqlx::query_as!(
        TokenInfoRow,
        r#"select t.id, t.kind as "kind: TokenKind", t.tenant_id, n.slug as "tenant_slug?",
                  t.description, t.scopes, t.tenant_slugs, t.key_pattern, t.created_at,
                  t.expires_at, t.last_used_at, t.revoked_at, t.rotated_from
           from access_tokens t left join tenants n on n.id = t.tenant_id
           where t.tenant_id = $1
           order by t.created_at desc, t.id"#,
        tenant.0
    )
    .fetch_all(db)
    .await?)
}

/// Admin and service tokens, newest first.
pub async fn global(db: impl PgExecutor<'_>) -> StoreResult<Vec<TokenInfoRow>> {
    Ok(sqlx::query_as!(
        TokenInfoRow,
        r#"select t.id, t.kind as "kind: TokenKind", t.tenant_id, null::text as "tenant_slug?",
                  t.description, t.scopes, t.tenant_slugs, t.key_pattern, t.created_at,
                  t.expires_at, t.last_used_at, t.revoked_at, t.rotated_from
           from access_tokens t
           where t.tenant_id is null
           order by t.created_at desc, t.id"#
    )
    .fetch_all(db)
    .await?)
}

pub async fn revoke(db: impl PgExecutor<'_>, id: Uuid) -> StoreResult<bool> {
    Ok(sqlx::query!(
        "update access_tokens set revoked_at = now() where id = $1 and revoked_at is null",
        id
    )
    .execute(db)
    .await?
    .rows_affected()
        == 1)
}

/// Brings a token's expiry forward to `until` (never later than it was).
pub async fn expire_by(db: impl PgExecutor<'_>, id: Uuid, until: DateTime<Utc>) -> StoreResult<()> {
    sqlx::query!(
        "update access_tokens set expires_at = least(coalesce(expires_at, $2), $2) where id = $1",
        id,
        until
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records a use (the caller makes this rare: about once a minute per token).
pub async fn touch(db: impl PgExecutor<'_>, id: Uuid) -> StoreResult<()> {
    sqlx::query!(
        "update access_tokens set last_used_at = now() where id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Revokes every token of a tenant (on tenant deletion).
/// A deleted tenant leaves every service token's tenant set, so a tenant created later under
/// the same slug is not reachable by tokens issued for the old one.
pub async fn drop_slug_from_service_tokens(
    db: impl PgExecutor<'_>,
    slug: &str,
) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update access_tokens set tenant_slugs = array_remove(tenant_slugs, $1)
         where kind = 'service' and $1 = any (tenant_slugs)",
        slug
    )
    .execute(db)
    .await?
    .rows_affected())
}

pub async fn revoke_for_tenant(db: impl PgExecutor<'_>, tenant: TenantId) -> StoreResult<u64> {
    Ok(sqlx::query!(
        "update access_tokens set revoked_at = now() where tenant_id = $1 and revoked_at is null",
        tenant.0
    )
    .execute(db)
    .await?
    .rows_affected())
}
