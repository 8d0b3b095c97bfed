//! Issuing tokens: the random text, the expiry within the configured TTLs, the stored row.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::scopes::{Scopes, TenantSet, SCOPE_ADMIN};
use super::verify::hash_token;
use super::TOKEN_PREFIX;
use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::{TenantSlug, TokenId, TokenKind};
use crate::service::{InputError, RequestContext, ServiceError, Vault};
use crate::store;

/// A freshly issued token. The text is shown once and never stored.
pub struct IssuedToken {
    pub id: TokenId,
    pub text: Zeroizing<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedToken({}, [redacted])", self.id)
    }
}

/// What kind of token to issue.
#[derive(Debug, Clone)]
pub enum NewTokenKind {
    Admin,
    Tenant(TenantSlug),
    Service(TenantSet),
}

/// Everything a new token is made from.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    pub kind: NewTokenKind,
    /// Ignored for admin tokens.
    pub scopes: Scopes,
    pub description: Option<String>,
    /// None: the configured default.
    pub ttl_secs: Option<u64>,
}
pub(super) fn new_token_text() -> (Uuid, Zeroizing<String>) {
    let id = Uuid::new_v4();
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, secret.as_mut());
    let text = Zeroizing::new(format!(
        "{TOKEN_PREFIX}{}_{}",
        id.simple(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_ref())
    ));
    (id, text)
}
impl Vault {
    /// Issues a full read/write token for a tenant (by slug), or an admin token when
    /// `tenant` is None. `ttl` None: the configured default.
    pub async fn create_token(
        &self,
        ctx: &RequestContext,
        tenant: Option<&TenantSlug>,
        description: Option<&str>,
        ttl: Option<Duration>,
    ) -> Result<IssuedToken, ServiceError> {
        self.issue_token(
            ctx,
            TokenSpec {
                kind: match tenant {
                    Some(slug) => NewTokenKind::Tenant(slug.clone()),
                    None => NewTokenKind::Admin,
                },
                scopes: Scopes::read_write(),
                description: description.map(str::to_owned),
                ttl_secs: ttl.map(|d| d.as_secs().max(1)),
            },
        )
        .await
    }
    /// The expiry of a token issued now with `ttl_secs` (None: the default).
    pub(super) fn expiry(&self, ttl_secs: Option<u64>) -> Result<DateTime<Utc>, InputError> {
        let max = self.limits.token_max_ttl_secs;
        let secs = ttl_secs.unwrap_or(self.limits.token_default_ttl_secs.min(max));
        if secs == 0 || secs > max {
            return Err(InputError::TokenTtl { max });
        }
        // In range, so no overflow: max is at most ten years.
        Ok(Utc::now() + chrono::Duration::seconds(secs as i64))
    }

    /// Issues a token of any kind.
    pub async fn issue_token(
        &self,
        ctx: &RequestContext,
        spec: TokenSpec,
    ) -> Result<IssuedToken, ServiceError> {
        let expires_at = self.expiry(spec.ttl_secs)?;
        let tenant = match &spec.kind {
            NewTokenKind::Tenant(slug) => Some(
                store::tenants::by_slug(&self.pool, slug)
                    .await?
                    .ok_or(ServiceError::TenantNotFound)?,
            ),
            _ => None,
        };
        let (kind, scopes, tenant_slugs): (_, _, Option<Vec<String>>) = match &spec.kind {
            NewTokenKind::Admin => (TokenKind::Admin, vec![SCOPE_ADMIN.to_owned()], None),
            NewTokenKind::Tenant(_) => (TokenKind::Tenant, spec.scopes.names(), None),
            NewTokenKind::Service(set) => (
                TokenKind::Service,
                spec.scopes.names(),
                match set {
                    TenantSet::All => None,
                    TenantSet::Only(slugs) => Some(slugs.iter().map(|s| s.to_string()).collect()),
                },
            ),
        };
        if kind != TokenKind::Admin && scopes.is_empty() {
            return Err(InputError::UnknownScope.into());
        }
        let key_pattern = match kind {
            TokenKind::Admin => None,
            _ => spec
                .scopes
                .key_pattern
                .as_ref()
                .map(|p| p.as_str().to_owned()),
        };
        let key = self.token_key().await?;
        let (id, text) = new_token_text();
        let hash = hash_token(&text);
        store::tokens::insert(
            &self.pool,
            store::tokens::NewToken {
                id,
                kind,
                tenant_id: tenant.as_ref().map(|t| t.id),
                token_hash: &hash,
                verifier: &key.mac(&hash),
                scopes: &scopes,
                tenant_slugs: tenant_slugs.as_deref(),
                key_pattern: key_pattern.as_deref(),
                description: spec.description.as_deref(),
                expires_at: Some(expires_at),
                rotated_from: None,
            },
        )
        .await?;
        let mut e = self.event(ctx, AuditAction::TokenCreate, AuditOutcome::Success);
        e.tenant_id = tenant.as_ref().map(|t| t.id);
        e.tenant_slug = tenant.map(|t| t.slug);
        e.subject = Some(id.to_string());
        self.audit.record(e);
        Ok(IssuedToken {
            id: TokenId(id),
            text,
            expires_at: Some(expires_at),
        })
    }
}
