//! The vault's operations, shared by the HTTP API and the CLI: authentication and scope
//! checks, tenants, tokens, and the secret lookup (cache -> database). Each operation writes
//! its audit event. Errors are `ServiceError`, which the API maps to HTTP once.

pub mod admin_secrets;
pub mod archive;
pub mod audit_log;
pub mod events;
pub mod fallback;
pub mod import;
pub mod key_status;
pub mod limits;
pub mod notify;
pub mod quotas;
pub mod readiness;
pub mod reencrypt;
pub mod rotation;
pub mod secret_reads;
pub mod secrets;
pub mod sync;
pub mod tenants;
pub mod tokens;
pub mod versions;

use std::sync::Arc;

use sqlx::PgPool;

use crate::audit::{AuditAction, AuditEvent, AuditOutcome, AuditSink};
use crate::cache::{NotFoundCache, SecretCache};
use crate::domain::{SecretKey, TenantId, TenantSlug, TokenId};
use crate::keys::rotation::{RotationError, Unsupported};
use crate::keys::{Cause, DataKeyring, InternalKeys, KeyError, MasterKeySource, MasterKeyring};
use crate::store::StoreError;

pub use secrets::{SecretRead, SecretSource};
pub use tokens::{Access, Principal, PrincipalKind, Scopes, TenantSet};

/// Limits and knobs the service enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_value_bytes: usize,
    /// Encryptions a data key makes before it rotates itself (far below the 2^32 limit for
    /// random 96-bit nonces).
    pub data_key_max_encryptions: i64,
    /// Versions of a secret kept, the current one included.
    pub version_retention: i32,
    /// Most items in one batch read.
    pub batch_get_max_items: usize,
    /// Life of a token issued without a TTL, and the longest TTL a token may have.
    pub token_default_ttl_secs: u64,
    pub token_max_ttl_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: 64 * 1024,
            data_key_max_encryptions: rotation::DEFAULT_DATA_KEY_MAX_ENCRYPTIONS,
            version_retention: 10,
            batch_get_max_items: 100,
            token_default_ttl_secs: crate::config::DEFAULT_TOKEN_TTL_SECS,
            token_max_ttl_secs: crate::config::DEFAULT_TOKEN_MAX_TTL_SECS,
        }
    }
}

/// Why a request's input was refused (400); the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("field `name`: must be 1 to 200 characters")]
    TenantNameLength,
    #[error("field `cas`: must be 0 or a positive version")]
    NegativeCas,
    #[error("`version` must be a positive integer")]
    VersionNotPositive,
    #[error("field `ttl_secs`: must be between 1 and {max} seconds")]
    TokenTtl { max: u64 },
    #[error("field `grace_secs`: must be between 0 and {max} seconds")]
    RotationGrace { max: u64 },
    #[error("field `scopes`: give one or both of `secrets:read` and `secrets:write`")]
    UnknownScope,
    #[error("field `key_pattern`: a secret key with an optional `*` at its start, its end or both (e.g. `STRIPE_*`)")]
    KeyPattern,
    #[error("field `tenants`: a list of tenant slugs, or \"*\" for every tenant")]
    TenantSet,
    #[error("`limit` must be 1 to {max}, and `offset` 0 to {max_offset}")]
    Paging { max: i64, max_offset: i64 },
    #[error("field `items`: at most {max} items per batch-get, got {got}")]
    TooManyItems { max: usize, got: usize },
    #[error("field `{field}`: must be between {min} and {max}")]
    OutOfRange {
        field: &'static str,
        min: u64,
        max: u64,
    },
    #[error("`limit` must be 1 to {max}")]
    AuditPageLimit { max: u32 },
}

/// A dependency answered, but not with something we can use (502).
#[derive(Debug, Clone, thiserror::Error)]
pub enum DependencyError {
    /// The master key source refused (e.g. permissions). Source errors never carry key
    /// material, so what it said is the message.
    #[error(transparent)]
    MasterKeySource(Arc<RotationError>),
    /// The fallback holds the key, but its value cannot be imported (e.g. oversized).
    #[error("{fallback} holds {key} for this tenant but it cannot be imported: {cause}")]
    Unimportable {
        fallback: &'static str,
        key: SecretKey,
        #[source]
        cause: fallback::FallbackError,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    InvalidInput(#[from] InputError),
    #[error("missing or unknown token")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    /// The token is valid but its scopes (operations, key pattern, tenant set) do not cover
    /// the request (403 `insufficient_scope`).
    #[error("{0}")]
    InsufficientScope(&'static str),
    #[error("token not found (or no longer live)")]
    TokenNotFound,
    #[error("tenant not found")]
    TenantNotFound,
    #[error("secret not found")]
    SecretNotFound,
    #[error("a tenant with this slug already exists")]
    TenantExists,
    #[error("check-and-set failed: expected version {expected}, current version is {current}")]
    CasConflict { expected: i32, current: i32 },
    #[error("the value is {size} bytes; the limit is {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    /// Over a rate limit (429 with `Retry-After` and the `RateLimit` headers).
    #[error("{}; retry in {} s", .0.message, .0.retry_after_secs)]
    RateLimited(limits::Throttled),
    /// A tenant's storage quota would be exceeded (403); the message says which and by what.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A ciphertext or wrapped key failed authentication: never answer with a value.
    #[error("stored data failed its integrity check")]
    Integrity,
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    #[error("version {0} of this secret does not exist or is no longer kept")]
    VersionNotFound(i32),
    #[error("another master key rotation is in progress; try again when it has finished")]
    RotationInProgress,
    #[error(transparent)]
    RotationUnsupported(#[from] Unsupported),
    #[error(transparent)]
    DependencyFailed(#[from] DependencyError),
    /// A webhook whose signature does not hold (401 `invalid_signature`).
    #[error("invalid webhook signature: {0}")]
    InvalidSignature(crate::infisical::webhook::SignatureError),
    /// A feature whose settings are missing.
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    /// A failure the caller cannot act on; the cause is logged once, by the API error
    /// mapping, and never sent.
    #[error("internal error")]
    Internal(#[source] Cause),
}

impl ServiceError {
    pub fn internal(cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        ServiceError::Internal(Arc::new(cause))
    }
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ServiceError::Unavailable("the database"),
            other => ServiceError::internal(other),
        }
    }
}

impl From<KeyError> for ServiceError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Integrity(_) | KeyError::Destroyed(_) | KeyError::SecretIntegrity => {
                ServiceError::Integrity
            }
            KeyError::Store(s) => s.into(),
            e if e.is_database_unavailable() => ServiceError::Unavailable("the database"),
            KeyError::Shared(shared) => ServiceError::Internal(shared),
            other => ServiceError::internal(other),
        }
    }
}

/// Who asked, and under which request id; stamped on audit events.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub token_id: Option<TokenId>,
    pub request_id: Option<String>,
    /// Who acted when no token did (`cli:<os user>`).
    pub actor: Option<String>,
}

impl RequestContext {
    /// A command run from the CLI by the current operating system user.
    pub fn cli() -> Self {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata("/proc/self")
                    .map_or_else(|_| "unknown".to_owned(), |m| format!("uid{}", m.uid()))
            });
        Self {
            actor: Some(format!("cli:{user}")),
            ..Self::default()
        }
    }
}

/// A tenant a caller has been allowed to act on.
#[derive(Debug, Clone)]
pub struct TenantRef {
    pub id: TenantId,
    pub slug: TenantSlug,
}

/// The composed vault. Cheap to share behind an `Arc`.
pub struct Vault {
    pub(crate) pool: PgPool,
    /// Cache misses, coalesced into one statement while others are in the database.
    pub(crate) secret_reads: secret_reads::SecretReads,
    pub(crate) data_keys: DataKeyring,
    pub(crate) cache: SecretCache,
    pub(crate) tokens: tokens::TokenCache,
    /// Keys the service uses for itself (token verifiers, audit), wrapped by the master key.
    pub(crate) internal_keys: InternalKeys,
    pub(crate) audit: AuditSink,
    pub(crate) limits: Limits,
    /// Where master key versions come from; None for vaults built without a source.
    pub(crate) key_source: Option<Arc<dyn MasterKeySource>>,
    /// Rotation and re-encryption bookkeeping (see `rotation.rs`).
    pub(crate) rotation: rotation::RotationState,
    /// The lookup's third step (Infisical), when configured.
    pub(crate) fallback: Option<Arc<dyn fallback::SecretFallback>>,
    /// Keys found nowhere, remembered briefly so a missing key cannot hammer Infisical.
    pub(crate) not_found: NotFoundCache,
    /// Event streams (`GET /v1/events`), fed by the change listener.
    pub(crate) events: events::EventHub,
    /// Infisical sync settings and the webhook re-read queue (`sync.rs`).
    pub(crate) sync_settings: sync::SyncSettings,
    pub(crate) sync_queue: sync::SyncQueue,
    /// The cold vault (OpenBao), when configured.
    pub(crate) archive: Option<Arc<archive::ArchiveState>>,
    /// Request rate limits and the failed-authentication guard (see `limits.rs`).
    pub(crate) rate_limits: limits::RateLimits,
}

impl Vault {
    pub fn new(
        pool: PgPool,
        masters: Arc<MasterKeyring>,
        key_source: Option<Arc<dyn MasterKeySource>>,
        cache: SecretCache,
        audit: AuditSink,
        limits: Limits,
        max_entries: u64,
    ) -> Self {
        if let Some(source) = &key_source {
            masters.attach_source(source.clone());
        }
        Self {
            rotation: rotation::RotationState::default(),
            internal_keys: InternalKeys::new(pool.clone(), masters.clone()),
            data_keys: DataKeyring::new(pool.clone(), masters, max_entries),
            secret_reads: secret_reads::SecretReads::new(pool.clone()),
            pool,
            cache,
            tokens: tokens::TokenCache::new(max_entries),
            audit,
            limits,
            key_source,
            fallback: None,
            not_found: NotFoundCache::default(),
            events: events::EventHub::new(events::EventSettings::default()),
            sync_settings: sync::SyncSettings::default(),
            sync_queue: sync::SyncQueue::default(),
            archive: None,
            rate_limits: limits::RateLimits::new(&crate::config::LimitArgs::without_rate_limits()),
        }
    }

    /// Rate limits and quotas (before serving).
    pub fn set_limits(&mut self, settings: &crate::config::LimitArgs) {
        self.rate_limits = limits::RateLimits::new(settings);
    }

    /// Event stream settings (before any stream opens).
    pub fn set_event_settings(&mut self, settings: events::EventSettings) {
        self.events = events::EventHub::new(settings);
    }

    /// Adds the Infisical step to the lookup; a key found nowhere is remembered as missing
    /// for `not_found_ttl` (zero: not remembered).
    pub fn set_fallback(
        &mut self,
        fallback: Arc<dyn fallback::SecretFallback>,
        not_found_ttl: std::time::Duration,
    ) {
        self.fallback = Some(fallback);
        self.not_found = NotFoundCache::new(not_found_ttl);
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn masters(&self) -> &Arc<MasterKeyring> {
        self.data_keys.masters()
    }

    /// Keys wrapped by the master key for the service's own use (see `keys::internal_keys`).
    pub fn internal_keys(&self) -> &InternalKeys {
        &self.internal_keys
    }

    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    /// Secrets currently in the memory cache.
    pub fn cache_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Bytes the memory cache holds, as weighed against `TENANT_VAULT_CACHE_MAX_BYTES`.
    pub fn cache_bytes(&self) -> u64 {
        self.cache.weighted_bytes()
    }

    /// Applies the cache's pending evictions (so the two counts above are exact).
    pub async fn settle_cache(&self) {
        self.cache.settle().await;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn event(
        &self,
        ctx: &RequestContext,
        action: AuditAction,
        outcome: AuditOutcome,
    ) -> AuditEvent {
        let mut e = AuditEvent::new(action, outcome);
        e.token_id = ctx.token_id.map(|t| t.0);
        e.request_id = ctx.request_id.clone();
        e.actor = ctx.actor.clone();
        e
    }

    /// Refuses service while audit events can be neither stored nor journalled.
    fn ensure_auditable(&self) -> Result<(), ServiceError> {
        if self.audit.is_failing() {
            return Err(ServiceError::Unavailable("the audit trail"));
        }
        Ok(())
    }
}
