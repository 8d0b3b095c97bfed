//! Checking a bearer token: its shape, its hash and keyed verifier, the cached checks, and
//! the admin and secret authorizations built on them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::scopes::{permits, Access, Principal, PrincipalKind, Scopes, TenantSet};
use super::scopes::{SCOPE_READ, SCOPE_WRITE};
use super::TOKEN_PREFIX;
use crate::cache::ExpiringCache;
use crate::domain::{KeyPattern, SecretKey, TenantId, TenantSlug, TokenId, TokenKind};
use crate::keys::{InternalKey, InternalKeyPurpose, KeyError};
use crate::service::{ServiceError, TenantRef, Vault};
use crate::store;

/// How long a successful token check is trusted without asking the database again
/// (revocations and rotations drop it at once through NOTIFY; expiry is checked each time).
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);
/// `last_used_at` is written at most this often per token and replica.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

pub(crate) struct TokenCache {
    by_hash: ExpiringCache<[u8; 32], Arc<Principal>>,
    /// Tokens whose use was written recently (see `LAST_USED_EVERY`).
    recently_used: ExpiringCache<TokenId, ()>,
    /// Live tenants by slug, for service tokens (tenant tokens carry their own).
    tenants: ExpiringCache<TenantSlug, TenantRef>,
}

impl TokenCache {
    pub fn new(max_entries: u64) -> Self {
        Self {
            by_hash: ExpiringCache::new(max_entries, TOKEN_CACHE_TTL),
            recently_used: ExpiringCache::new(max_entries, LAST_USED_EVERY),
            tenants: ExpiringCache::new(max_entries, TOKEN_CACHE_TTL),
        }
    }

    /// Drops every cached token check (after notifications may have been missed).
    pub fn forget_all(&self) {
        self.by_hash.invalidate_all();
        self.tenants.invalidate_all();
    }

    /// A tenant was deleted: its tokens, and service tokens that named tenants (the deleted
    /// one left their sets), are checked again on their next use.
    pub fn forget_tenant(&self, tenant: TenantId) {
        self.by_hash.invalidate_if(move |_, p| match &p.kind {
            PrincipalKind::Tenant(t) => t.id == tenant,
            PrincipalKind::Service { tenants } => matches!(tenants, TenantSet::Only(_)),
            PrincipalKind::Admin => false,
        });
        self.tenants.invalidate_all();
    }
}
pub(super) fn hash_token(text: &str) -> [u8; 32] {
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
    id.len() == 32 && secret.len() == 43 && all_in(id, HEX) && all_in(secret, BASE64URL)
}

const HEX: u8 = 1;
const BASE64URL: u8 = 2;
/// Each byte's classes (`HEX`, `BASE64URL`): every request checks its token's 75 bytes, so a
/// table lookup without branches rather than a chain of comparisons per byte.
const TOKEN_BYTES: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_hexdigit() {
            table[b] |= HEX;
        }
        if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' {
            table[b] |= BASE64URL;
        }
        b += 1;
    }
    table
};

fn all_in(text: &str, class: u8) -> bool {
    text.bytes().fold(true, |ok, b| {
        ok & (TOKEN_BYTES[usize::from(b)] & class != 0)
    })
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
        self.authenticate_hashed(text, hash_token(text)).await
    }

    /// `authenticate` with the token's SHA-256 already computed (the rate-limit layer needs
    /// it first, for its memory of unknown tokens): one hash per request, not two.
    pub(crate) async fn authenticate_hashed(
        &self,
        text: &str,
        hash: [u8; 32],
    ) -> Result<Arc<Principal>, ServiceError> {
        if !well_formed(text) {
            return Err(ServiceError::Unauthenticated);
        }
        // The hot path: a plain lookup, cheaper than building the loader for `try_get_with`.
        let cached = self.tokens.by_hash.get(&hash);
        let principal = match cached {
            Some(p) => p,
            // Boxed: the database load is several KB of future that every request would
            // otherwise carry (and copy) for a path only a cache miss takes.
            None => Box::pin(self.load_principal(hash)).await?,
        };
        if principal.expires_at.is_some_and(|at| at <= Utc::now()) {
            self.tokens.by_hash.invalidate(&hash);
            return Err(ServiceError::Unauthenticated);
        }
        self.note_use(principal.token_id);
        Ok(principal)
    }

    /// A token check on a cache miss; concurrent misses of one token share one load.
    async fn load_principal(&self, hash: [u8; 32]) -> Result<Arc<Principal>, ServiceError> {
        self.tokens
            .by_hash
            .try_get_with(&hash, async {
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
    }

    /// Writes `last_used_at` in the background, at most once a minute per token.
    fn note_use(&self, id: TokenId) {
        if self.tokens.recently_used.contains_key(&id) {
            return;
        }
        self.tokens.recently_used.insert(id, ());
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
            _ => match self.tokens.tenants.get(slug) {
                Some(tenant) => Ok(tenant),
                // Boxed for the same reason as the token's load: only a miss pays for it.
                None => Box::pin(self.tenant_ref(slug)).await,
            },
        }
    }

    /// A live tenant by slug, cached (service tokens name tenants by slug).
    async fn tenant_ref(&self, slug: &TenantSlug) -> Result<TenantRef, ServiceError> {
        let pool = &self.pool;
        self.tokens
            .tenants
            .try_get_with(slug, async move {
                let row = store::tenants::by_slug(pool, slug)
                    .await?
                    .ok_or(ServiceError::TenantNotFound)?;
                Ok::<_, ServiceError>(TenantRef {
                    id: TenantId(row.id),
                    slug: slug.clone(),
                })
            })
            .await
    }

    /// Admin routes: admin tokens only. Refusals are audited by the API's access layer.
    pub fn authorize_admin(&self, who: &Principal) -> Result<(), ServiceError> {
        if who.kind == PrincipalKind::Admin {
            return Ok(());
        }
        Err(ServiceError::Forbidden("this route needs an admin token"))
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
        // Every byte is checked, wherever it is: hex in the id (either case), base64url
        // (`-` and `_`, not `+`, `/` or `=`) in the secret.
        assert!(well_formed(&format!(
            "tvt_{}AF_-{}_",
            "0".repeat(30),
            "z".repeat(41)
        )));
        for bad in ['+', '/', '=', ' ', '.', '\0', '~'] {
            for at in [0, 21, 42] {
                let mut secret: Vec<char> = "B".repeat(43).chars().collect();
                secret[at] = bad;
                let secret: String = secret.into_iter().collect();
                assert!(!well_formed(&format!("tvt_{}_{secret}", "a".repeat(32))));
            }
        }
        for at in [0, 31] {
            let mut id = "a".repeat(32).into_bytes();
            id[at] = b'g';
            let id = String::from_utf8(id).unwrap();
            assert!(!well_formed(&format!("tvt_{id}_{}", "B".repeat(43))));
        }
    }
}
