//! Single secrets from Infisical: the lookup's third step (import on first read, restore
//! after a tombstone when Infisical has a newer version), `import infisical`, and the origin
//! and tombstone records the writing and deleting transactions keep.

use std::sync::Arc;

use super::infisical_origin;
use crate::audit::{AuditAction, AuditOutcome};
use crate::cache::CachedSecret;
use crate::domain::{InfisicalMode, SecretKey, SecretSource};
use crate::service::fallback::{FallbackError, RemoteSecret};
use crate::service::{DependencyError, RequestContext, ServiceError, TenantRef, Vault};
use crate::store::sync::Origin;
use crate::store::{self, StoreError};

impl Vault {
    /// The lookup's third step: the tenant's Infisical folder, unless the tenant does not
    /// read it or a tombstone says the key was deleted here.
    pub(in crate::service) async fn load_from_fallback(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
    ) -> Result<Arc<CachedSecret>, ServiceError> {
        let Some(fallback) = &self.fallback else {
            return Err(ServiceError::SecretNotFound);
        };
        let Some(mode) = self.tenant_mode(tenant.id).await? else {
            return Err(ServiceError::SecretNotFound);
        };
        let tombstone = store::sync::tombstone(&self.pool, tenant.id, key).await?;
        if tombstone.is_some() && mode == InfisicalMode::ImportOnce {
            return Err(ServiceError::SecretNotFound);
        }
        // One tenant's misses take at most its share of Infisical's capacity.
        let _slot = self.rate_limits.infisical_slot(&tenant.slug).await;
        let remote = match fallback.fetch(&tenant.slug, key).await {
            Ok(Some(remote)) => remote,
            Ok(None) => return Err(ServiceError::SecretNotFound),
            Err(FallbackError::Unavailable(detail)) => {
                tracing::warn!(tenant = %tenant.slug, key = %key, %detail, "fallback lookup failed");
                return Err(ServiceError::Unavailable("Infisical"));
            }
            Err(cause) => {
                return Err(DependencyError::Unimportable {
                    fallback: fallback.name(),
                    key: key.clone(),
                    cause,
                }
                .into())
            }
        };
        let action = match tombstone {
            None => AuditAction::SecretImport,
            Some(t) => match t.infisical_version {
                Some(deleted) if remote.version > deleted => AuditAction::SecretSync,
                Some(_) => return Err(ServiceError::SecretNotFound),
                None => {
                    // Deleted before its Infisical version was known: this one is the
                    // deleted one; only a later version restores it.
                    store::sync::tombstone_baseline(&self.pool, tenant.id, key, remote.version)
                        .await?;
                    return Err(ServiceError::SecretNotFound);
                }
            },
        };
        // Imported as version 1; if a writer created the key meanwhile, theirs wins.
        let result = self
            .write_remote(tenant, key, fallback.folder(&tenant.slug), &remote, Some(0))
            .await;
        let outcome = match (&result, action) {
            (Ok(_), AuditAction::SecretSync) => AuditOutcome::Restored,
            _ => crate::service::secrets::outcome(&result),
        };
        self.sync_event(ctx, action, outcome, tenant, Some(key));
        match result {
            Ok((version, updated_at)) => Ok(Arc::new(CachedSecret {
                value: remote.value,
                version,
                updated_at,
                loaded_from: SecretSource::Infisical,
            })),
            Err(ServiceError::CasConflict { .. }) => self
                .load_from_database(tenant.id, key)
                .await?
                .ok_or(ServiceError::SecretNotFound),
            Err(e) => Err(e),
        }
    }
    /// In the writing transaction: where the value came from; the key exists again, so a
    /// tombstone goes.
    pub(in crate::service) async fn record_origin(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: &TenantRef,
        key: &SecretKey,
        origin: &Origin,
    ) -> Result<(), StoreError> {
        store::sync::set_origin(&mut *tx, tenant.id, key, origin).await?;
        store::sync::remove_tombstone(&mut *tx, tenant.id, key).await
    }

    /// In the deleting transaction, before the row goes: a tombstone remembering the
    /// Infisical version of what is deleted (unknown for secrets written here).
    pub(in crate::service) async fn leave_tombstone(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: &TenantRef,
        key: &SecretKey,
    ) -> Result<(), StoreError> {
        let version = store::sync::origins_of(&mut *tx, tenant.id, key)
            .await?
            .and_then(|row| row.infisical_version);
        store::sync::put_tombstone(&mut *tx, tenant.id, key, version).await
    }

    /// Records that a stored secret equals Infisical's `remote` (origin, id, version).
    pub(in crate::service) async fn mark_imported(
        &self,
        tenant: &TenantRef,
        key: &SecretKey,
        remote: &RemoteSecret,
    ) -> Result<(), ServiceError> {
        let origin = infisical_origin(crate::infisical::tenant_folder(&tenant.slug), remote);
        Ok(store::sync::set_origin(&self.pool, tenant.id, key, &origin).await?)
    }

    /// Writes one secret brought in by `import infisical`, recording its Infisical origin.
    pub(in crate::service) async fn import_one(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
        remote: &RemoteSecret,
    ) -> Result<i32, ServiceError> {
        self.ensure_auditable()?;
        let folder = crate::infisical::tenant_folder(&tenant.slug);
        let result = self
            .write_remote(tenant, key, folder, remote, None)
            .await
            .map(|(v, _)| v);
        self.cache.invalidate(tenant.id, key).await;
        self.not_found.forget(tenant.id, key).await;
        self.audited(ctx, AuditAction::SecretImport, tenant, Some(key), result)
            .await
    }
}
