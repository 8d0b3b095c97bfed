//! A token's life after issue: listing, revoking, rotating with a grace period.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::issue::{new_token_text, IssuedToken};
use super::verify::hash_token;
use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::{TenantId, TenantSlug, TokenId, TokenKind};
use crate::service::{InputError, RequestContext, ServiceError, TenantRef, Vault};
use crate::store::{self, StoreError};

/// Old token's life after a rotation when the request does not say.
pub const DEFAULT_ROTATION_GRACE_SECS: u64 = 300;

/// A token as listings show it: never its secret, hash or verifier.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: TokenId,
    pub kind: TokenKind,
    pub tenant: Option<String>,
    pub description: Option<String>,
    pub scopes: Vec<String>,
    /// Service tokens: the tenants reached; `["*"]` for all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenants: Option<Vec<String>>,
    pub key_pattern: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<Uuid>,
}

impl From<store::tokens::TokenInfoRow> for TokenInfo {
    fn from(r: store::tokens::TokenInfoRow) -> Self {
        TokenInfo {
            id: TokenId(r.id),
            kind: r.kind,
            tenant: r.tenant_slug,
            description: r.description,
            scopes: r.scopes,
            tenants: match r.kind {
                TokenKind::Service => Some(r.tenant_slugs.unwrap_or_else(|| vec!["*".into()])),
                _ => None,
            },
            key_pattern: r.key_pattern,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
            rotated_from: r.rotated_from,
        }
    }
}

/// Whose tokens to list.
#[derive(Debug, Clone)]
pub enum TokenOwner {
    Tenant(TenantSlug),
    /// Admin and service tokens.
    Global,
}
impl Vault {
    /// Lists a tenant's tokens, or the admin and service tokens. Never a secret.
    pub async fn list_tokens(
        &self,
        ctx: &RequestContext,
        owner: &TokenOwner,
    ) -> Result<Vec<TokenInfo>, ServiceError> {
        let mut e = self.event(ctx, AuditAction::TokenList, AuditOutcome::Success);
        let rows = match owner {
            TokenOwner::Tenant(slug) => {
                let t = store::tenants::by_slug(&self.pool, slug)
                    .await?
                    .ok_or(ServiceError::TenantNotFound)?;
                e.tenant_id = Some(t.id);
                e.tenant_slug = Some(t.slug);
                store::tokens::for_tenant(&self.pool, TenantId(t.id)).await?
            }
            TokenOwner::Global => store::tokens::global(&self.pool).await?,
        };
        self.audit.record(e);
        Ok(rows.into_iter().map(TokenInfo::from).collect())
    }

    /// Revokes a token now, on every replica. Revoking a revoked token is not an error.
    pub async fn revoke_token(
        &self,
        ctx: &RequestContext,
        id: TokenId,
    ) -> Result<(), ServiceError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let row = store::tokens::by_id_for_update(&mut *tx, id.0)
            .await?
            .ok_or(ServiceError::TokenNotFound)?;
        if store::tokens::revoke(&mut *tx, id.0).await? {
            let tenant = tenant_of(&row);
            self.notify_token_revoked(&mut tx, id, tenant.as_ref())
                .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        // This replica does not hear its own notifications' cache effects.
        self.tokens.forget_all();
        let mut e = self.event(ctx, AuditAction::TokenRevoke, AuditOutcome::Success);
        e.tenant_id = row.tenant_id;
        e.tenant_slug = row.tenant_slug;
        e.subject = Some(id.to_string());
        self.audit.record(e);
        Ok(())
    }

    /// Issues a token like `id` (same kind, tenant, scopes) and lets `id` live on for
    /// `grace_secs` only. Returns the new token.
    pub async fn rotate_token(
        &self,
        ctx: &RequestContext,
        id: TokenId,
        grace_secs: Option<u64>,
        ttl_secs: Option<u64>,
    ) -> Result<IssuedToken, ServiceError> {
        let grace = grace_secs.unwrap_or(DEFAULT_ROTATION_GRACE_SECS);
        if grace > self.limits.token_max_ttl_secs {
            return Err(InputError::RotationGrace {
                max: self.limits.token_max_ttl_secs,
            }
            .into());
        }
        let expires_at = self.expiry(ttl_secs)?;
        let key = self.token_key().await?;
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let old = store::tokens::by_id_for_update(&mut *tx, id.0)
            .await?
            .filter(|r| r.revoked_at.is_none() && r.expires_at.is_none_or(|at| at > Utc::now()))
            .ok_or(ServiceError::TokenNotFound)?;
        let (new_id, text) = new_token_text();
        let hash = hash_token(&text);
        store::tokens::insert(
            &mut *tx,
            store::tokens::NewToken {
                id: new_id,
                kind: old.kind,
                tenant_id: old.tenant_id,
                token_hash: &hash,
                verifier: &key.mac(&hash),
                scopes: &old.scopes,
                tenant_slugs: old.tenant_slugs.as_deref(),
                key_pattern: old.key_pattern.as_deref(),
                description: old.description.as_deref(),
                expires_at: Some(expires_at),
                rotated_from: Some(id.0),
            },
        )
        .await?;
        let until = Utc::now() + chrono::Duration::seconds(grace as i64);
        store::tokens::expire_by(&mut *tx, id.0, until).await?;
        // Cached checks of the old token carry its old expiry: drop them everywhere.
        store::notify::event(
            &mut *tx,
            self.rotation.origin,
            &store::notify::Event::TokenUpdated { token_id: id.0 },
        )
        .await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.tokens.forget_all();
        let mut e = self.event(ctx, AuditAction::TokenRotate, AuditOutcome::Success);
        e.tenant_id = old.tenant_id;
        e.tenant_slug = old.tenant_slug;
        e.subject = Some(format!("{id} -> {new_id}"));
        self.audit.record(e);
        Ok(IssuedToken {
            id: TokenId(new_id),
            text,
            expires_at: Some(expires_at),
        })
    }
}

fn tenant_of(row: &store::tokens::TokenInfoRow) -> Option<TenantRef> {
    match (row.tenant_id, row.tenant_slug.as_deref()) {
        (Some(id), Some(slug)) => TenantSlug::parse(slug).ok().map(|slug| TenantRef {
            id: TenantId(id),
            slug,
        }),
        _ => None,
    }
}
