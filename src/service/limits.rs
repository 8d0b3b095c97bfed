//! Rate limits: token buckets (governor's GCRA) per token and per tenant, failed
//! authentications per client address, and a brief memory of unknown tokens, so a flood of
//! made-up tokens is answered from memory and never reaches the PostgreSQL pool. Limits are
//! per replica: N replicas allow N times the rate, as in Vault.
//!
//! Per-tenant overrides (`tenant_limits`, set through the admin API) are read on a tenant's
//! first request and again at most every `OVERRIDES_TTL`; the replica that takes the change
//! applies it at once.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Principal, PrincipalKind, ServiceError, Vault};
use crate::cache::ExpiringCache;
use crate::config::LimitArgs;
pub use crate::domain::TenantLimits;
use crate::domain::{TenantSlug, TokenId};
use crate::store;

/// How long a replica trusts the per-tenant overrides it read.
const OVERRIDES_TTL: Duration = Duration::from_secs(30);
/// How long an unknown token is answered 401 from memory.
const UNKNOWN_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Buckets and memories kept at most (the least recently used go first).
const MAX_TRACKED: u64 = 100_000;

type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

/// A rate: `rps` requests per second with bursts of `burst`; `rps == 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rate {
    pub rps: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Option<Quota> {
        let rps = NonZeroU32::new(self.rps)?;
        let burst = NonZeroU32::new(self.burst.max(1))?;
        Some(Quota::per_second(rps).allow_burst(burst))
    }

    /// Seconds a drained bucket takes to fill (the policy's window).
    fn window_secs(self) -> u64 {
        u64::from(self.burst.max(1)).div_ceil(u64::from(self.rps.max(1)))
    }
}

/// What applies to a tenant: its overrides over the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EffectiveLimits {
    pub tenant: Rate,
    pub token: Rate,
    /// 0: no limit.
    pub max_secrets: u64,
    /// 0: no limit.
    pub max_bytes: u64,
}

/// One policy's state, for the `RateLimit` and `RateLimit-Policy` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    /// `token` or `tenant`.
    pub name: &'static str,
    pub quota: u32,
    pub window_secs: u64,
    pub remaining: u32,
    /// Seconds until the bucket is full again (or, when refused, until a retry can pass).
    pub reset_secs: u64,
}

/// A refused request: which policy, and when to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_secs: u64,
    /// The policies that were checked (for the headers); the refusing one has `remaining: 0`.
    pub policies: Vec<PolicyState>,
    pub message: &'static str,
}

struct TenantEntry {
    limits: EffectiveLimits,
    bucket: Option<Arc<Bucket>>,
    loaded_at: Instant,
    refreshing: AtomicBool,
}

struct TokenEntry {
    rate: Rate,
    bucket: Bucket,
}

/// The replica's buckets and memories.
pub struct RateLimits {
    settings: LimitArgs,
    tenants: ExpiringCache<TenantSlug, Arc<TenantEntry>>,
    tokens: ExpiringCache<TokenId, Arc<TokenEntry>>,
    unknown_tokens: ExpiringCache<[u8; 32], ()>,
    /// Addresses over their failed-authentication budget, and until when.
    blocked: ExpiringCache<IpAddr, Instant>,
    failures: Option<governor::DefaultKeyedRateLimiter<IpAddr>>,
    /// Per tenant, the Infisical lookups it may run at once.
    infisical_slots: ExpiringCache<TenantSlug, Arc<Semaphore>>,
}

fn seconds_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

impl RateLimits {
    pub fn new(settings: &LimitArgs) -> Self {
        let burst =
            NonZeroU32::new(settings.rate_limit_auth_failures_burst.max(1)).expect("at least 1");
        let failures = NonZeroU32::new(settings.rate_limit_auth_failures_per_min)
            .map(|per_min| RateLimiter::keyed(Quota::per_minute(per_min).allow_burst(burst)));
        Self {
            settings: settings.clone(),
            // Buckets and slots are kept until capacity pushes the least used out (a tenant's
            // entry refreshes its overrides itself, see `OVERRIDES_TTL`).
            tenants: ExpiringCache::bounded(MAX_TRACKED),
            tokens: ExpiringCache::bounded(MAX_TRACKED),
            unknown_tokens: ExpiringCache::new(MAX_TRACKED, UNKNOWN_TOKEN_TTL),
            blocked: ExpiringCache::new(MAX_TRACKED, Duration::from_secs(3600)),
            failures,
            infisical_slots: ExpiringCache::bounded(MAX_TRACKED),
        }
    }

    /// Waits for one of the tenant's Infisical lookup slots (held until dropped).
    pub async fn infisical_slot(&self, slug: &TenantSlug) -> OwnedSemaphorePermit {
        let slots = self.infisical_slots.get_or_insert_with(slug, || {
            Arc::new(Semaphore::new(
                self.settings.infisical_tenant_concurrency.max(1) as usize,
            ))
        });
        if slots.available_permits() == 0 {
            metrics::counter!("tenant_vault_infisical_tenant_waits_total").increment(1);
        }
        slots.acquire_owned().await.expect("never closed")
    }

    /// The settings' limits, before any override.
    pub fn defaults(&self) -> EffectiveLimits {
        self.apply_overrides(&TenantLimits::default())
    }

    /// The limits that apply under these overrides.
    pub fn apply_overrides(&self, o: &TenantLimits) -> EffectiveLimits {
        let s = &self.settings;
        EffectiveLimits {
            tenant: Rate {
                rps: o.tenant_rps.unwrap_or(s.rate_limit_tenant_rps),
                burst: o.tenant_burst.unwrap_or(s.rate_limit_tenant_burst),
            },
            token: Rate {
                rps: o.token_rps.unwrap_or(s.rate_limit_token_rps),
                burst: o.token_burst.unwrap_or(s.rate_limit_token_burst),
            },
            max_secrets: o.max_secrets.unwrap_or(s.quota_max_secrets),
            max_bytes: o.max_bytes.unwrap_or(s.quota_max_bytes),
        }
    }

    fn tenant_entry(&self, limits: EffectiveLimits) -> Arc<TenantEntry> {
        Arc::new(TenantEntry {
            limits,
            bucket: limits
                .tenant
                .quota()
                .map(|q| Arc::new(RateLimiter::direct(q).with_middleware())),
            loaded_at: Instant::now(),
            refreshing: AtomicBool::new(false),
        })
    }

    /// Forgets a tenant's overrides (after a change), so its next request reads them.
    pub fn forget_tenant(&self, slug: &TenantSlug) {
        self.tenants.invalidate(slug);
    }

    fn blocked_for(&self, ip: IpAddr) -> Option<Duration> {
        let until = self.blocked.get(&ip)?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// Counts a failed authentication from `ip`; over budget, the address is refused until
    /// its bucket lets one more through.
    fn record_failure(&self, ip: IpAddr) {
        let Some(failures) = &self.failures else {
            return;
        };
        if let Err(not_until) = failures.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.blocked.insert(ip, Instant::now() + wait);
            metrics::counter!("tenant_vault_auth_blocked_total").increment(1);
        }
        // Addresses whose buckets are full again carry no information: drop them now and
        // then, so a spray of addresses cannot grow the map without bound.
        if failures.len() > MAX_TRACKED as usize {
            failures.retain_recent();
            failures.shrink_to_fit();
        }
    }
}

fn check_bucket(
    name: &'static str,
    rate: Rate,
    bucket: &Bucket,
) -> Result<PolicyState, PolicyState> {
    let quota = rate.burst.max(1);
    let window_secs = rate.window_secs();
    match bucket.check() {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            let missing = u64::from(quota.saturating_sub(remaining));
            Ok(PolicyState {
                name,
                quota,
                window_secs,
                remaining,
                reset_secs: missing.div_ceil(u64::from(rate.rps.max(1))),
            })
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(PolicyState {
                name,
                quota,
                window_secs,
                remaining: 0,
                reset_secs: seconds_ceil(wait).max(1),
            })
        }
    }
}

fn token_hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

impl Vault {
    pub fn rate_limits(&self) -> &RateLimits {
        &self.rate_limits
    }

    /// `authenticate`, guarded: a token seen unknown lately is refused from memory, and an
    /// address that failed too often is refused (429) before its token is looked up.
    pub async fn authenticate_from(
        &self,
        client: Option<IpAddr>,
        text: &str,
    ) -> Result<Arc<Principal>, ServiceError> {
        let limits = &self.rate_limits;
        let hash = token_hash(text);
        if limits.unknown_tokens.contains_key(&hash) {
            if let Some(ip) = client {
                limits.record_failure(ip);
            }
            return Err(ServiceError::Unauthenticated);
        }
        if let Some(wait) = client.and_then(|ip| limits.blocked_for(ip)) {
            return Err(ServiceError::RateLimited(Throttled {
                retry_after_secs: seconds_ceil(wait).max(1),
                policies: Vec::new(),
                message: "too many failed authentications from this address",
            }));
        }
        let result = self.authenticate_hashed(text, hash).await;
        if matches!(result, Err(ServiceError::Unauthenticated)) {
            limits.unknown_tokens.insert(hash, ());
            if let Some(ip) = client {
                limits.record_failure(ip);
            }
        }
        result
    }

    /// Takes one request from the caller's token bucket and, when a tenant token acts on its
    /// own tenant, from the tenant's. Admin tokens are limited per token only. A service
    /// token serves many tenants (one application instance, one token), so a per-token rate
    /// sized for one tenant would throttle it: it spends the bucket of the tenant it acts on
    /// instead, and only within its tenant set (elsewhere its own token bucket applies).
    pub async fn check_rate(
        &self,
        who: &Principal,
        tenant: Option<&TenantSlug>,
    ) -> Result<Vec<PolicyState>, ServiceError> {
        // Only the tenant's own tokens spend its budget: a foreign token's request is refused
        // (403) by the handler and must not drain another tenant's bucket.
        let tenant = match (&who.kind, tenant) {
            (PrincipalKind::Tenant(t), Some(slug)) if &t.slug == slug => {
                Some((slug, self.tenant_limits_entry(slug).await?))
            }
            (PrincipalKind::Service { tenants }, Some(slug)) if tenants.contains(slug) => {
                Some((slug, self.tenant_limits_entry(slug).await?))
            }
            _ => None,
        };
        // Without a tenant in the path (batch-get, events), its own bucket holds it.
        let is_service = matches!(who.kind, PrincipalKind::Service { .. }) && tenant.is_some();
        let token_rate = tenant
            .as_ref()
            .map_or(self.rate_limits.defaults().token, |(_, t)| t.limits.token);
        let mut policies = Vec::with_capacity(2);
        let mut refused = None;
        if let (false, Some(quota)) = (is_service, token_rate.quota()) {
            let entry = self.token_bucket(who.token_id, token_rate, quota);
            match check_bucket("token", token_rate, &entry.bucket) {
                Ok(state) => policies.push(state),
                Err(state) => {
                    refused = Some(("this token's request rate is exceeded", state.clone()));
                    policies.push(state);
                }
            }
        }
        if let (None, Some((_, entry))) = (&refused, &tenant) {
            if let Some(bucket) = &entry.bucket {
                match check_bucket("tenant", entry.limits.tenant, bucket) {
                    Ok(state) => policies.push(state),
                    Err(state) => {
                        refused = Some(("this tenant's request rate is exceeded", state.clone()));
                        policies.push(state);
                    }
                }
            }
        }
        match refused {
            None => Ok(policies),
            Some((message, state)) => {
                metrics::counter!("tenant_vault_rate_limited_total", "policy" => state.name)
                    .increment(1);
                Err(ServiceError::RateLimited(Throttled {
                    retry_after_secs: state.reset_secs,
                    policies,
                    message,
                }))
            }
        }
    }

    fn token_bucket(&self, token: TokenId, rate: Rate, quota: Quota) -> Arc<TokenEntry> {
        let limits = &self.rate_limits;
        match limits.tokens.get(&token) {
            // A tenant's token rate changed: a new bucket with the new rate.
            Some(entry) if entry.rate == rate => entry,
            _ => {
                let entry = Arc::new(TokenEntry {
                    rate,
                    bucket: RateLimiter::direct(quota).with_middleware(),
                });
                limits.tokens.insert(token, entry.clone());
                entry
            }
        }
    }

    /// A tenant's limits, read from the database at most every `OVERRIDES_TTL` (one request
    /// refreshes them while the others go on with what was read before).
    pub(crate) async fn effective_limits(
        &self,
        slug: &TenantSlug,
    ) -> Result<EffectiveLimits, ServiceError> {
        Ok(self.tenant_limits_entry(slug).await?.limits)
    }

    async fn tenant_limits_entry(
        &self,
        slug: &TenantSlug,
    ) -> Result<Arc<TenantEntry>, ServiceError> {
        let limits = &self.rate_limits;
        if let Some(entry) = limits.tenants.get(slug) {
            let fresh = entry.loaded_at.elapsed() < OVERRIDES_TTL;
            if fresh || entry.refreshing.swap(true, Ordering::AcqRel) {
                return Ok(entry);
            }
            let overrides = store::limits::by_slug(&self.pool, slug).await;
            let Ok(overrides) = overrides else {
                // Keep the limits we know; try again on a later request.
                entry.refreshing.store(false, Ordering::Release);
                return Ok(entry);
            };
            let effective = limits.apply_overrides(&overrides.unwrap_or_default());
            let next = if effective == entry.limits {
                // Same limits: the same bucket, and what it has counted.
                Arc::new(TenantEntry {
                    limits: effective,
                    bucket: entry.bucket.clone(),
                    loaded_at: Instant::now(),
                    refreshing: AtomicBool::new(false),
                })
            } else {
                limits.tenant_entry(effective)
            };
            limits.tenants.insert(slug.clone(), next.clone());
            return Ok(next);
        }
        let entry = match store::limits::by_slug(&self.pool, slug).await {
            Ok(overrides) => {
                limits.tenant_entry(limits.apply_overrides(&overrides.unwrap_or_default()))
            }
            // The database is away: the settings apply meanwhile (cached secrets keep being
            // served), and the overrides are read again in a few seconds.
            Err(e) => {
                tracing::warn!(tenant = %slug, error = %e, "cannot read the tenant's limits; the settings apply for now");
                let mut entry = limits.tenant_entry(limits.defaults());
                if let Some(entry) = Arc::get_mut(&mut entry) {
                    entry.loaded_at = Instant::now()
                        .checked_sub(OVERRIDES_TTL - Duration::from_secs(5))
                        .unwrap_or_else(Instant::now);
                }
                entry
            }
        };
        limits.tenants.insert(slug.clone(), entry.clone());
        Ok(entry)
    }
}
