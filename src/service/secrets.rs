//! The secret lookup and writes. A read checks the memory cache, then `company_secrets`
//! (decrypting with the tenant's data key); concurrent misses of one key share one load.
//! A write encrypts under the tenant's active data key, keeps the previous version, counts
//! the encryption against the key's nonce budget, and invalidates the cache after commit.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{InputError, RequestContext, ServiceError, TenantRef, Vault};
use crate::audit::{AuditAction, AuditOutcome};
use crate::cache::CachedSecret;
use crate::crypto::SecretValue;
use crate::domain::{DataKeyId, SecretKey, TenantId};
use crate::keys::{SecretPlace, StoredSecret};
use crate::store::notify::SecretChange;
use crate::store::sync::Origin;
use crate::store::{self, secrets::NewSecret, StoreError};

pub use crate::domain::SecretSource;

#[derive(Debug)]
pub struct SecretRead {
    pub secret: Arc<CachedSecret>,
    pub source: SecretSource,
    /// Set when served stale: how old the value is (the `Age` header).
    pub age: Option<std::time::Duration>,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct SecretSummary {
    pub key: String,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
}

/// Attempts at a write that lost a race (key created meanwhile, data key rotated meanwhile).
const WRITE_ATTEMPTS: usize = 5;

/// The audit outcome of a result.
pub(crate) fn outcome<T>(result: &Result<T, ServiceError>) -> AuditOutcome {
    match result {
        Ok(_) => AuditOutcome::Success,
        Err(e) => outcome_of(e),
    }
}

pub(super) fn outcome_of(err: &ServiceError) -> AuditOutcome {
    match err {
        ServiceError::SecretNotFound | ServiceError::VersionNotFound(_) => AuditOutcome::NotFound,
        ServiceError::Integrity => AuditOutcome::IntegrityError,
        ServiceError::CasConflict { .. } => AuditOutcome::Conflict,
        ServiceError::ValueTooLarge { .. }
        | ServiceError::InvalidInput(_)
        | ServiceError::QuotaExceeded(_) => AuditOutcome::Rejected,
        ServiceError::Unavailable(_) => AuditOutcome::Unavailable,
        ServiceError::DependencyFailed(_) => AuditOutcome::DependencyError,
        _ => AuditOutcome::Error,
    }
}

impl Vault {
    /// The audit event of an operation on a tenant's secrets (or on the tenant, `key` None).
    pub(super) fn secret_event(
        &self,
        ctx: &RequestContext,
        action: AuditAction,
        outcome: AuditOutcome,
        tenant: &TenantRef,
        key: Option<&SecretKey>,
    ) -> crate::audit::AuditEvent {
        let mut e = self.event(ctx, action, outcome);
        e.tenant_id = Some(tenant.id.0);
        // Copies, not `to_string` (which formats through `fmt`): every read makes one event.
        e.tenant_slug = Some(tenant.slug.as_str().to_owned());
        e.secret_key = key.map(|k| k.as_str().to_owned());
        e
    }

    /// Records the operation's audit event and hands back its result. In strict audit mode
    /// the result leaves only once the event is committed; if it cannot be, the caller gets
    /// 503 instead (a value is never answered unaudited).
    pub(super) async fn audited<T>(
        &self,
        ctx: &RequestContext,
        action: AuditAction,
        tenant: &TenantRef,
        key: Option<&SecretKey>,
        result: Result<T, ServiceError>,
    ) -> Result<T, ServiceError> {
        let outcome = outcome(&result);
        if let Err(ServiceError::Integrity) = &result {
            tracing::error!(tenant = %tenant.slug, key = ?key.map(|k| k.as_str()), "secret failed its integrity check");
        }
        let event = self.secret_event(ctx, action, outcome, tenant, key);
        if self.audit.record_answer(event).await.is_err() {
            tracing::error!(tenant = %tenant.slug, action = action.as_str(), "strict audit mode: the audit event could not be committed; answering 503");
            return Err(ServiceError::Unavailable("the audit trail"));
        }
        result
    }

    pub async fn get_secret(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
    ) -> Result<SecretRead, ServiceError> {
        self.ensure_auditable()?;
        // Runs only on a cache miss: a key remembered as missing answers 404 at once, and a
        // key found nowhere is remembered (briefly) so it cannot hammer Infisical.
        // Built (and boxed) only on a miss: the database and Infisical futures are KBs that a
        // cached read would otherwise carry and copy.
        let load = || {
            Box::pin(async {
                if self.not_found.contains(tenant.id, key).await {
                    return Err(ServiceError::SecretNotFound);
                }
                let ticket = self.not_found.ticket(tenant.id, key);
                let loaded = self.load_secret(ctx, tenant, key).await;
                if let Err(ServiceError::SecretNotFound) = &loaded {
                    self.not_found.remember(tenant.id, key, ticket).await;
                }
                loaded
            }) as crate::cache::Load<'_, ServiceError>
        };
        let result =
            self.cache
                .get_or_load(tenant.id, key, load)
                .await
                .map(|(secret, from_cache)| SecretRead {
                    source: if from_cache {
                        SecretSource::Cache
                    } else {
                        secret.loaded_from
                    },
                    secret,
                    age: None,
                });
        let result = match result {
            Err(ServiceError::Unavailable(what)) => {
                Box::pin(self.serve_stale(tenant, key, what)).await
            }
            other => other,
        };
        match &result {
            Ok(read) => crate::telemetry::secret_read(read.source),
            Err(e) => metrics::counter!("tenant_vault_secret_read_failures_total", "outcome" => outcome_of(e).as_str()).increment(1),
        }
        self.audited(ctx, AuditAction::SecretRead, tenant, Some(key), result)
            .await
    }

    /// Stale-if-error: the dependencies are down, so a value loaded before may be served
    /// for at most `TENANT_VAULT_MAX_STALE_SECS` past its TTL; past that, the 503 stands.
    async fn serve_stale(
        &self,
        tenant: &TenantRef,
        key: &SecretKey,
        what: &'static str,
    ) -> Result<SecretRead, ServiceError> {
        match self.cache.stale(tenant.id, key).await {
            Some((secret, age)) => {
                tracing::warn!(tenant = %tenant.slug, key = %key, age_secs = age.as_secs(), unavailable = what, "serving a stale value");
                Ok(SecretRead {
                    secret,
                    source: SecretSource::Stale,
                    age: Some(age),
                })
            }
            None => Err(ServiceError::Unavailable(what)),
        }
    }

    /// The database, then the fallback (Infisical, see `sync.rs`): a value found there is
    /// encrypted and written to the database before it is answered, so the next miss stays
    /// local.
    async fn load_secret(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
    ) -> Result<Arc<CachedSecret>, ServiceError> {
        if let Some(found) = self.load_from_database(tenant.id, key).await? {
            return Ok(found);
        }
        self.load_from_fallback(ctx, tenant, key).await
    }

    /// Reads and decrypts one secret from the database.
    pub(crate) async fn load_from_database(
        &self,
        tenant: TenantId,
        key: &SecretKey,
    ) -> Result<Option<Arc<CachedSecret>>, ServiceError> {
        let read = || async move {
            let row = self.secret_reads.get(tenant, key).await?;
            Ok::<_, ServiceError>(row.map(|row| {
                let stored = StoredSecret {
                    version: row.version,
                    secret_id: row.id,
                    envelope: row.secret_value_encrypted,
                    data_key_id: DataKeyId(row.data_key_id),
                };
                (stored, (row.version, row.updated_at))
            }))
        };
        let Some((value, (version, updated_at))) =
            self.data_keys.read_secret(tenant, key, read).await?
        else {
            return Ok(None);
        };
        Ok(Some(Arc::new(CachedSecret {
            value,
            version,
            updated_at,
            loaded_from: SecretSource::Database,
        })))
    }

    /// Stores a new version. With `cas`, only if the current version equals it (0: only if
    /// the key does not exist yet). Returns the new version.
    pub async fn put_secret(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
        value: SecretValue,
        cas: Option<i32>,
    ) -> Result<i32, ServiceError> {
        self.ensure_auditable()?;
        let result = self
            .write_secret(tenant, key, &value, cas, SecretChange::Written)
            .await
            .map(|(v, _)| v);
        self.cache.invalidate(tenant.id, key).await;
        self.not_found.forget(tenant.id, key).await;
        self.audited(ctx, AuditAction::SecretWrite, tenant, Some(key), result)
            .await
    }

    pub(super) async fn write_secret(
        &self,
        tenant: &TenantRef,
        key: &SecretKey,
        value: &SecretValue,
        cas: Option<i32>,
        change: SecretChange,
    ) -> Result<(i32, DateTime<Utc>), ServiceError> {
        self.write_secret_from(tenant, key, value, cas, change, &Origin::Api)
            .await
    }

    /// `write_secret`, recording where the value came from (see `sync.rs`).
    pub(super) async fn write_secret_from(
        &self,
        tenant: &TenantRef,
        key: &SecretKey,
        value: &SecretValue,
        cas: Option<i32>,
        change: SecretChange,
        origin: &Origin,
    ) -> Result<(i32, DateTime<Utc>), ServiceError> {
        let limit = self.limits.max_value_bytes;
        if value.len() > limit {
            return Err(ServiceError::ValueTooLarge {
                size: value.len(),
                limit,
            });
        }
        if cas.is_some_and(|c| c < 0) {
            return Err(InputError::NegativeCas.into());
        }
        for _ in 0..WRITE_ATTEMPTS {
            let data_key = self.data_keys.active(tenant.id).await?;
            let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
            let current = store::secrets::lock(&mut *tx, tenant.id, key).await?;
            let current_version = current.as_ref().map_or(0, |r| r.version);
            if let Some(expected) = cas {
                if expected != current_version {
                    return Err(ServiceError::CasConflict {
                        expected,
                        current: current_version,
                    });
                }
            }
            let Some(count) = store::data_keys::count_encryptions(&mut *tx, data_key.id, 1).await?
            else {
                // Rotated or destroyed since we cached it: look it up again.
                self.data_keys.forget_active(tenant.id).await;
                continue;
            };
            if count > self.limits.data_key_max_encryptions {
                // Its nonce budget is spent: rotate it, then write under the new key.
                drop(tx);
                self.retire_exhausted_data_key(tenant.id, data_key.id)
                    .await?;
                continue;
            }
            let exhausted = count == self.limits.data_key_max_encryptions;
            let version = current_version + 1;
            // The row's id goes into the ciphertext's associated data: chosen before sealing.
            let secret_id = current.as_ref().map_or_else(Uuid::new_v4, |r| r.id);
            let place = SecretPlace {
                tenant: tenant.id,
                key,
                version,
                secret_id,
            };
            let envelope = self.data_keys.seal_secret(&data_key, place, value);
            let replaced = current.as_ref().map(|r| r.secret_value_encrypted.len());
            self.check_quota(&mut tx, tenant, replaced, envelope.len())
                .await?;
            let new = NewSecret {
                id: secret_id,
                tenant: tenant.id,
                key,
                envelope: &envelope,
                data_key_id: data_key.id,
                version,
            };
            let updated_at = match current {
                None => {
                    let inserted = store::secrets::insert_first(&mut *tx, new).await?;
                    let Some(at) = inserted else {
                        // Another writer created it first. Without cas, try again as an update.
                        if let Some(expected) = cas {
                            let now = store::secrets::get(&mut *tx, tenant.id, key).await?;
                            return Err(ServiceError::CasConflict {
                                expected,
                                current: now.map_or(0, |r| r.version),
                            });
                        }
                        continue;
                    };
                    at
                }
                Some(row) => {
                    store::secrets::archive_current(&mut *tx, row.id).await?;
                    let at = store::secrets::update(&mut *tx, new).await?;
                    let keep_after = version - self.limits.version_retention;
                    self.prune_versions(&mut tx, row.id, keep_after).await?;
                    at
                }
            };
            self.record_origin(&mut tx, tenant, key, origin).await?;
            self.notify_secret(&mut tx, tenant, key, change, Some(version))
                .await?;
            tx.commit().await.map_err(StoreError::from)?;
            self.wake_archiver();
            if exhausted {
                // This was its last encryption; the next write gets a new key.
                if let Err(e) = self.retire_exhausted_data_key(tenant.id, data_key.id).await {
                    tracing::warn!(tenant = %tenant.slug, error = %e, "automatic data key rotation failed; the next write retries it");
                }
            }
            return Ok((version, updated_at));
        }
        Err(ServiceError::Unavailable(
            "a consistent write (too much contention)",
        ))
    }

    pub async fn delete_secret(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
    ) -> Result<i32, ServiceError> {
        self.ensure_auditable()?;
        let result = async {
            let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
            self.leave_tombstone(&mut tx, tenant, key).await?;
            self.archive_before_delete(&mut tx, tenant.id, key).await?;
            let version = store::secrets::delete(&mut *tx, tenant.id, key)
                .await?
                .ok_or(ServiceError::SecretNotFound)?;
            self.notify_secret(&mut tx, tenant, key, SecretChange::Deleted, None)
                .await?;
            tx.commit().await.map_err(StoreError::from)?;
            self.wake_archiver();
            Ok(version)
        }
        .await;
        self.cache.invalidate(tenant.id, key).await;
        self.audited(ctx, AuditAction::SecretDelete, tenant, Some(key), result)
            .await
    }

    pub async fn list_secrets(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
    ) -> Result<Vec<SecretSummary>, ServiceError> {
        self.ensure_auditable()?;
        let result = async {
            Ok(store::secrets::list(&self.pool, tenant.id)
                .await?
                .into_iter()
                .map(|r| SecretSummary {
                    key: r.secret_key,
                    version: r.version,
                    updated_at: r.updated_at,
                })
                .collect())
        }
        .await;
        self.audited(ctx, AuditAction::SecretList, tenant, None, result)
            .await
    }
}
