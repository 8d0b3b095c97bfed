//! Access tokens: `tvt_<id>_<secret>`, 256 random bits, stored as SHA-256. Checks are cached
//! so a hot read touches no database; deleting a tenant drops its tokens from the cache.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use moka::future::Cache;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{InputError, RequestContext, ServiceError, TenantRef, Vault};
use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::{TenantId, TenantSlug, TokenId};
use crate::store;

const TOKEN_PREFIX: &str = "tvt_";
/// How long a successful token check is trusted without asking the database again.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    Admin,
    Tenant(TenantRef),
}

impl PartialEq for TenantRef {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for TenantRef {}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: TokenId,
    pub kind: PrincipalKind,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Principal {
    pub fn context(&self, request_id: Option<String>) -> RequestContext {
        RequestContext {
            token_id: Some(self.token_id),
            request_id,
        }
    }
}

/// A freshly issued token. The text is shown once and never stored.
pub struct IssuedToken {
    pub id: TokenId,
    pub text: Zeroizing<String>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedToken({}, [redacted])", self.id)
    }
}

pub(crate) struct TokenCache {
    by_hash: Cache<[u8; 32], Arc<Principal>>,
}

impl TokenCache {
    pub fn new(max_entries: u64) -> Self {
        Self {
            by_hash: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(TOKEN_CACHE_TTL)
                .support_invalidation_closures()
                .build(),
        }
    }

    /// Drops every cached token check (after notifications may have been missed).
    pub fn forget_all(&self) {
        self.by_hash.invalidate_all();
    }

    pub fn forget_tenant(&self, tenant: TenantId) {
        let _ = self.by_hash.invalidate_entries_if(
            move |_, p| matches!(&p.kind, PrincipalKind::Tenant(t) if t.id == tenant),
        );
    }
}

fn hash_token(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// `tvt_` + 32 hex id + `_` + 43 base64url characters. Anything else is not a token.
fn well_formed(text: &str) -> bool {
    let Some(rest) = text.strip_prefix(TOKEN_PREFIX) else {
        return false;
    };
    let Some((id, secret)) = rest.split_once('_') else {
        return false;
    };
    id.len() == 32
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && secret.len() == 43
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Vault {
    /// Checks a bearer token. Cached for a minute; unknown tokens are never cached.
    pub async fn authenticate(&self, text: &str) -> Result<Arc<Principal>, ServiceError> {
        if !well_formed(text) {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = hash_token(text);
        let pool = &self.pool;
        let principal = self
            .tokens
            .by_hash
            .try_get_with(hash, async move {
                let row = store::tokens::by_hash(pool, &hash).await?;
                let Some(row) = row else {
                    return Err(ServiceError::Unauthenticated);
                };
                let kind = match (row.tenant_id, row.tenant_slug) {
                    (None, _) => PrincipalKind::Admin,
                    (Some(id), Some(slug)) => PrincipalKind::Tenant(TenantRef {
                        id: TenantId(id),
                        slug: TenantSlug::parse(&slug).map_err(ServiceError::internal)?,
                    }),
                    (Some(_), None) => return Err(ServiceError::Unauthenticated),
                };
                Ok(Arc::new(Principal {
                    token_id: TokenId(row.id),
                    kind,
                    expires_at: row.expires_at,
                }))
            })
            .await
            // moka shares the loader's error among waiters; ServiceError is Clone.
            .map_err(|e| (*e).clone())?;
        if principal.expires_at.is_some_and(|at| at <= Utc::now()) {
            self.tokens.by_hash.invalidate(&hash).await;
            return Err(ServiceError::Unauthenticated);
        }
        Ok(principal)
    }

    /// Allows a tenant token on its own tenant only. Admin tokens manage tenants and tokens
    /// but do not read secrets: least privilege, as in Vault's policies.
    pub fn authorize_tenant(
        &self,
        who: &Principal,
        slug: &TenantSlug,
        request_id: Option<String>,
    ) -> Result<TenantRef, ServiceError> {
        match &who.kind {
            PrincipalKind::Tenant(t) if &t.slug == slug => Ok(t.clone()),
            kind => {
                let mut e = self.event(
                    &who.context(request_id),
                    AuditAction::AccessTenant,
                    AuditOutcome::Denied,
                );
                e.tenant_slug = Some(slug.to_string());
                self.audit.record(e);
                Err(ServiceError::Forbidden(match kind {
                    PrincipalKind::Admin => {
                        "admin tokens cannot read or write tenant secrets; issue a tenant token"
                    }
                    PrincipalKind::Tenant(_) => "this token belongs to another tenant",
                }))
            }
        }
    }

    pub fn authorize_admin(
        &self,
        who: &Principal,
        request_id: Option<String>,
    ) -> Result<(), ServiceError> {
        if who.kind == PrincipalKind::Admin {
            return Ok(());
        }
        self.audit.record(self.event(
            &who.context(request_id),
            AuditAction::AccessAdmin,
            AuditOutcome::Denied,
        ));
        Err(ServiceError::Forbidden("this route needs an admin token"))
    }

    /// Issues a token for a tenant (by slug), or an admin token when `tenant` is None.
    pub async fn create_token(
        &self,
        ctx: &RequestContext,
        tenant: Option<&TenantSlug>,
        description: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken, ServiceError> {
        let tenant_row = match tenant {
            Some(slug) => Some(
                store::tenants::by_slug(&self.pool, slug)
                    .await?
                    .ok_or(ServiceError::TenantNotFound)?,
            ),
            None => None,
        };
        let id = Uuid::new_v4();
        let mut secret = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, secret.as_mut());
        let text = Zeroizing::new(format!(
            "{TOKEN_PREFIX}{}_{}",
            id.simple(),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref())
        ));
        let scopes = vec![if tenant.is_some() { "tenant" } else { "admin" }.to_owned()];
        let expires_at = ttl
            .map(|d| chrono::Duration::from_std(d).map(|d| Utc::now() + d))
            .transpose()
            .map_err(|_| InputError::TokenTtlTooLarge)?;
        store::tokens::insert(
            &self.pool,
            store::tokens::NewToken {
                id,
                tenant_id: tenant_row.as_ref().map(|t| t.id),
                token_hash: &hash_token(&text),
                scopes: &scopes,
                description,
                expires_at,
            },
        )
        .await?;
        let mut e = self.event(ctx, AuditAction::TokenCreate, AuditOutcome::Success);
        e.tenant_id = tenant_row.as_ref().map(|t| t.id);
        e.tenant_slug = tenant_row.map(|t| t.slug);
        self.audit.record(e);
        Ok(IssuedToken {
            id: TokenId(id),
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape() {
        let good = format!("tvt_{}_{}", "a".repeat(32), "B".repeat(43));
        assert!(well_formed(&good));
        assert!(!well_formed(&good[1..]));
        assert!(!well_formed(&format!(
            "tvt_{}_{}",
            "g".repeat(32),
            "B".repeat(43)
        )));
        assert!(!well_formed(&format!(
            "tvt_{}_{}",
            "a".repeat(32),
            "B".repeat(42)
        )));
        assert!(!well_formed(""));
    }
}
