//! Access tokens: `tvt_<id>_<secret>`, 256 random bits. Stored as SHA-256 plus a verifier,
//! HMAC-SHA256 of that hash under the `token` internal key (wrapped by the master key): a
//! row a database writer inserts with the hash of a token of their choosing has no valid
//! verifier and never authenticates. Checks are cached, so a hot read touches no database;
//! revocation, rotation and tenant deletion drop cached checks on every replica (NOTIFY).
//!
//! Kinds: admin (manages, never reads secrets), tenant (one tenant), service (a set of
//! tenants, or all). Tenant and service tokens carry scopes: `secrets:read`,
//! `secrets:write`, and an optional key pattern. `permits` is the one authorization
//! decision; every route that touches secrets or their events goes through it.

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
use crate::domain::{KeyPattern, SecretKey, TenantId, TenantSlug, TokenId, TokenKind};
use crate::keys::{InternalKey, InternalKeyPurpose, KeyError};
use crate::store::{self, StoreError};

const TOKEN_PREFIX: &str = "tvt_";
/// How long a successful token check is trusted without asking the database again
/// (revocations and rotations drop it at once through NOTIFY; expiry is checked each time).
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);
/// `last_used_at` is written at most this often per token and replica.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);
pub const SCOPE_READ: &str = "secrets:read";
pub const SCOPE_WRITE: &str = "secrets:write";
const SCOPE_ADMIN: &str = "admin";
/// Old token's life after a rotation when the request does not say.
pub const DEFAULT_ROTATION_GRACE_SECS: u64 = 300;

/// The tenants a service token reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantSet {
    All,
    Only(Vec<TenantSlug>),
}

impl TenantSet {
    pub(crate) fn contains(&self, slug: &TenantSlug) -> bool {
        match self {
            TenantSet::All => true,
            TenantSet::Only(slugs) => slugs.contains(slug),
        }
    }
}

/// What a tenant or service token may do with secrets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes {
    pub read: bool,
    pub write: bool,
    /// Only keys matching this pattern.
    pub key_pattern: Option<KeyPattern>,
}

impl Scopes {
    pub fn read_write() -> Self {
        Self {
            read: true,
            write: true,
            key_pattern: None,
        }
    }

    /// Parses `secrets:read` / `secrets:write` names (at least one).
    pub fn parse(names: &[String], key_pattern: Option<&str>) -> Result<Self, InputError> {
        let mut scopes = Scopes::default();
        for name in names {
            match name.as_str() {
                SCOPE_READ => scopes.read = true,
                SCOPE_WRITE => scopes.write = true,
                _ => return Err(InputError::UnknownScope),
            }
        }
        if !scopes.read && !scopes.write {
            return Err(InputError::UnknownScope);
        }
        scopes.key_pattern = key_pattern
            .map(KeyPattern::parse)
            .transpose()
            .map_err(|_| InputError::KeyPattern)?;
        Ok(scopes)
    }

    pub fn names(&self) -> Vec<String> {
        let mut names = Vec::new();
        if self.read {
            names.push(SCOPE_READ.to_owned());
        }
        if self.write {
            names.push(SCOPE_WRITE.to_owned());
        }
        names
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    Admin,
    Tenant(TenantRef),
    /// A service token: `Principal::scopes` say what it may do, `tenants` where.
    Service {
        tenants: TenantSet,
    },
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
    /// Empty (nothing) for admin tokens.
    pub scopes: Scopes,
}

impl Principal {
    pub fn context(&self, request_id: Option<String>) -> RequestContext {
        RequestContext {
            token_id: Some(self.token_id),
            request_id,
            actor: None,
        }
    }
}

/// What a request wants to do with a tenant's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why `permits` said no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Admin tokens never read or write secrets.
    Admin,
    /// A tenant token on another tenant.
    OtherTenant,
    /// The token's scopes do not cover it (403 `insufficient_scope`).
    Scope(&'static str),
}

impl From<Denial> for ServiceError {
    fn from(d: Denial) -> Self {
        match d {
            Denial::Admin => ServiceError::Forbidden(
                "admin tokens cannot read or write tenant secrets; issue a tenant or service token",
            ),
            Denial::OtherTenant => ServiceError::Forbidden("this token belongs to another tenant"),
            Denial::Scope(why) => ServiceError::InsufficientScope(why),
        }
    }
}

/// THE authorization decision for secrets: may `who` do `access` on `tenant` (and `key`,
/// when the request names one)? Secrets, versions, batch-get and event streams all ask here.
pub fn permits(
    who: &Principal,
    tenant: &TenantSlug,
    key: Option<&SecretKey>,
    access: Access,
) -> Result<(), Denial> {
    match &who.kind {
        PrincipalKind::Admin => return Err(Denial::Admin),
        PrincipalKind::Tenant(own) if &own.slug != tenant => return Err(Denial::OtherTenant),
        PrincipalKind::Tenant(_) => {}
        PrincipalKind::Service { tenants } if !tenants.contains(tenant) => {
            return Err(Denial::Scope(
                "this service token does not reach this tenant",
            ))
        }
        PrincipalKind::Service { .. } => {}
    }
    match access {
        Access::Read if !who.scopes.read => {
            return Err(Denial::Scope("this token lacks the secrets:read scope"))
        }
        Access::Write if !who.scopes.write => {
            return Err(Denial::Scope("this token lacks the secrets:write scope"))
        }
        _ => {}
    }
    if let (Some(pattern), Some(key)) = (&who.scopes.key_pattern, key) {
        if !pattern.matches(key) {
            return Err(Denial::Scope(
                "this token's key pattern does not cover this key",
            ));
        }
    }
    Ok(())
}

/// May `who` see what happens to every tenant (events tied to no tenant)?
pub fn reaches_all_tenants(who: &Principal) -> bool {
    match &who.kind {
        PrincipalKind::Admin => true,
        PrincipalKind::Service { tenants } => *tenants == TenantSet::All && who.scopes.read,
        PrincipalKind::Tenant(_) => false,
    }
}

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

/// A token as listings show it: never its secret, hash or verifier.
#[derive(Debug, Clone, serde::Serialize)]
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

pub(crate) struct TokenCache {
    by_hash: Cache<[u8; 32], Arc<Principal>>,
    /// Tokens whose use was written recently (see `LAST_USED_EVERY`).
    recently_used: Cache<TokenId, ()>,
    /// Live tenants by slug, for service tokens (tenant tokens carry their own).
    tenants: Cache<TenantSlug, TenantRef>,
}

impl TokenCache {
    pub fn new(max_entries: u64) -> Self {
        Self {
            by_hash: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(TOKEN_CACHE_TTL)
                .support_invalidation_closures()
                .build(),
            recently_used: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(LAST_USED_EVERY)
                .build(),
            tenants: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(TOKEN_CACHE_TTL)
                .build(),
        }
    }

    /// Drops every cached token check (after notifications may have been missed).
    pub fn forget_all(&self) {
        self.by_hash.invalidate_all();
        self.tenants.invalidate_all();
    }

    pub fn forget_tenant(&self, tenant: TenantId) {
        let _ = self.by_hash.invalidate_entries_if(
            move |_, p| matches!(&p.kind, PrincipalKind::Tenant(t) if t.id == tenant),
        );
        self.tenants.invalidate_all();
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

/// The principal a stored row describes.
fn principal(row: store::tokens::TokenRow) -> Result<Principal, ServiceError> {
    let scopes = match row.kind {
        TokenKind::Admin => Scopes::default(),
        _ => Scopes {
            read: row.scopes.iter().any(|s| s == SCOPE_READ),
            write: row.scopes.iter().any(|s| s == SCOPE_WRITE),
            key_pattern: row
                .key_pattern
                .as_deref()
                .map(KeyPattern::parse)
                .transpose()
                .map_err(ServiceError::internal)?,
        },
    };
    let kind = match (row.kind, row.tenant_id, row.tenant_slug) {
        (TokenKind::Admin, None, _) => PrincipalKind::Admin,
        (TokenKind::Tenant, Some(id), Some(slug)) => PrincipalKind::Tenant(TenantRef {
            id: TenantId(id),
            slug: TenantSlug::parse(&slug).map_err(ServiceError::internal)?,
        }),
        (TokenKind::Service, None, _) => PrincipalKind::Service {
            tenants: match row.tenant_slugs {
                None => TenantSet::All,
                Some(slugs) => TenantSet::Only(
                    slugs
                        .iter()
                        .map(|s| TenantSlug::parse(s))
                        .collect::<Result<_, _>>()
                        .map_err(ServiceError::internal)?,
                ),
            },
        },
        _ => return Err(ServiceError::Unauthenticated),
    };
    Ok(Principal {
        token_id: TokenId(row.id),
        kind,
        expires_at: row.expires_at,
        scopes,
    })
}

fn new_token_text() -> (Uuid, Zeroizing<String>) {
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
    /// The token verifier key. Created on first use (start-up calls this); the process that
    /// creates it fills in the verifier of every token issued before verifiers existed, in
    /// the same transaction. From then on a row without a valid verifier never authenticates.
    pub async fn token_key(&self) -> Result<Arc<InternalKey>, ServiceError> {
        Ok(self.load_token_key().await?)
    }

    /// `token_key`, with the keys layer's error (start-up tells passing failures by it).
    pub async fn load_token_key(&self) -> Result<Arc<InternalKey>, KeyError> {
        self.internal_keys
            .get_or_create_with(InternalKeyPurpose::Token, async |conn, key| {
                let rows = store::tokens::missing_verifiers(&mut *conn).await?;
                let (ids, verifiers): (Vec<Uuid>, Vec<Vec<u8>>) = rows
                    .iter()
                    .map(|(id, hash)| (*id, key.mac(hash).to_vec()))
                    .unzip();
                let filled = store::tokens::set_verifiers(&mut *conn, &ids, &verifiers).await?;
                if filled > 0 {
                    tracing::info!(tokens = filled, "added keyed verifiers to existing tokens");
                }
                Ok::<(), KeyError>(())
            })
            .await
    }

    /// Checks a bearer token. Cached for a minute; unknown tokens are never cached.
    pub async fn authenticate(&self, text: &str) -> Result<Arc<Principal>, ServiceError> {
        if !well_formed(text) {
            return Err(ServiceError::Unauthenticated);
        }
        let hash = hash_token(text);
        let principal = self
            .tokens
            .by_hash
            .try_get_with(hash, async move {
                let key = self.token_key().await?;
                let row = store::tokens::by_hash(&self.pool, &hash)
                    .await?
                    .ok_or(ServiceError::Unauthenticated)?;
                let genuine = row
                    .verifier
                    .as_deref()
                    .is_some_and(|v| key.verify(&hash, v));
                if !genuine {
                    // Someone wrote this row without the token key: never let it in.
                    tracing::warn!(token_id = %row.id, "token row without a valid verifier refused");
                    return Err(ServiceError::Unauthenticated);
                }
                principal(row).map(Arc::new)
            })
            .await
            // moka shares the loader's error among waiters; ServiceError is Clone.
            .map_err(|e| (*e).clone())?;
        if principal.expires_at.is_some_and(|at| at <= Utc::now()) {
            self.tokens.by_hash.invalidate(&hash).await;
            return Err(ServiceError::Unauthenticated);
        }
        self.note_use(principal.token_id).await;
        Ok(principal)
    }

    /// Writes `last_used_at` in the background, at most once a minute per token.
    async fn note_use(&self, id: TokenId) {
        if self.tokens.recently_used.contains_key(&id) {
            return;
        }
        self.tokens.recently_used.insert(id, ()).await;
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if let Err(e) = store::tokens::touch(&pool, id.0).await {
                tracing::debug!(error = %e, "could not record token use");
            }
        });
    }

    /// Allows `access` to `slug`'s secrets (and `key`, if named) through `permits`, and
    /// resolves the tenant. Refusals are audited by the API's access layer, aggregated.
    pub async fn authorize_secret(
        &self,
        who: &Principal,
        slug: &TenantSlug,
        key: Option<&SecretKey>,
        access: Access,
    ) -> Result<TenantRef, ServiceError> {
        permits(who, slug, key, access)?;
        match &who.kind {
            PrincipalKind::Tenant(t) => Ok(t.clone()),
            _ => self.tenant_ref(slug).await,
        }
    }

    /// A live tenant by slug, cached (service tokens name tenants by slug).
    async fn tenant_ref(&self, slug: &TenantSlug) -> Result<TenantRef, ServiceError> {
        let pool = &self.pool;
        self.tokens
            .tenants
            .try_get_with(slug.clone(), async move {
                let row = store::tenants::by_slug(pool, slug)
                    .await?
                    .ok_or(ServiceError::TenantNotFound)?;
                Ok::<_, ServiceError>(TenantRef {
                    id: TenantId(row.id),
                    slug: slug.clone(),
                })
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// Admin routes: admin tokens only. Refusals are audited by the API's access layer.
    pub fn authorize_admin(&self, who: &Principal) -> Result<(), ServiceError> {
        if who.kind == PrincipalKind::Admin {
            return Ok(());
        }
        Err(ServiceError::Forbidden("this route needs an admin token"))
    }

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
    fn expiry(&self, ttl_secs: Option<u64>) -> Result<DateTime<Utc>, InputError> {
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

    fn who(kind: PrincipalKind, scopes: Scopes) -> Principal {
        Principal {
            token_id: TokenId(Uuid::new_v4()),
            kind,
            expires_at: None,
            scopes,
        }
    }

    #[test]
    fn one_decision_for_every_kind() {
        let slug = |s: &str| TenantSlug::parse(s).unwrap();
        let key = |k: &str| SecretKey::parse(k).unwrap();
        let acme = TenantRef {
            id: TenantId(Uuid::new_v4()),
            slug: slug("acme"),
        };
        let admin = who(PrincipalKind::Admin, Scopes::default());
        assert_eq!(
            permits(&admin, &slug("acme"), None, Access::Read),
            Err(Denial::Admin)
        );
        let reader = who(
            PrincipalKind::Tenant(acme.clone()),
            Scopes {
                read: true,
                write: false,
                key_pattern: None,
            },
        );
        assert!(permits(&reader, &slug("acme"), Some(&key("K")), Access::Read).is_ok());
        assert!(matches!(
            permits(&reader, &slug("acme"), Some(&key("K")), Access::Write),
            Err(Denial::Scope(_))
        ));
        assert_eq!(
            permits(&reader, &slug("globex"), None, Access::Read),
            Err(Denial::OtherTenant)
        );
        let service = who(
            PrincipalKind::Service {
                tenants: TenantSet::Only(vec![slug("acme"), slug("globex")]),
            },
            Scopes {
                read: true,
                write: false,
                key_pattern: Some(KeyPattern::parse("STRIPE_*").unwrap()),
            },
        );
        assert!(permits(
            &service,
            &slug("globex"),
            Some(&key("STRIPE_KEY")),
            Access::Read
        )
        .is_ok());
        assert!(matches!(
            permits(
                &service,
                &slug("initech"),
                Some(&key("STRIPE_KEY")),
                Access::Read
            ),
            Err(Denial::Scope(_))
        ));
        assert!(matches!(
            permits(
                &service,
                &slug("acme"),
                Some(&key("SENDGRID_KEY")),
                Access::Read
            ),
            Err(Denial::Scope(_))
        ));
        assert!(!reaches_all_tenants(&service));
        assert!(reaches_all_tenants(&admin));
    }
}
