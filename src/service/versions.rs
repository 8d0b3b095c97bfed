//! Secret history: the versions kept in `company_secret_versions` (listing without values,
//! reading one) and rollback, which writes a new version equal to an old one (encrypted anew:
//! the old ciphertext is bound to its own version number and could not be reused).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{InputError, RequestContext, ServiceError, TenantRef, Vault};
use crate::audit::AuditAction;
use crate::cache::CachedSecret;
use crate::domain::{DataKeyId, SecretKey, TenantId};
use crate::keys::StoredSecret;
use crate::store;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct VersionInfo {
    pub version: i32,
    /// When this version was written.
    pub created_at: DateTime<Utc>,
    pub current: bool,
    /// Moved to the cold vault (OpenBao); read with `?version=N` like any other.
    pub archived: bool,
    /// Until when the archive keeps it (archived versions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retain_until: Option<DateTime<Utc>>,
}

impl Vault {
    /// The current version and the kept ones, newest first. Never values.
    pub async fn list_versions(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
    ) -> Result<Vec<VersionInfo>, ServiceError> {
        self.ensure_auditable()?;
        let result = async {
            let current = store::secrets::get(&self.pool, tenant.id, key)
                .await?
                .ok_or(ServiceError::SecretNotFound)?;
            let mut out = vec![VersionInfo {
                version: current.version,
                created_at: current.updated_at,
                current: true,
                archived: false,
                retain_until: None,
            }];
            out.extend(
                store::versions::list(&self.pool, tenant.id, key)
                    .await?
                    .into_iter()
                    .filter(|v| v.version != current.version)
                    .map(|v| VersionInfo {
                        version: v.version,
                        created_at: v.created_at,
                        current: false,
                        archived: false,
                        retain_until: None,
                    }),
            );
            out.extend(self.archived_version_infos(current.id).await?);
            Ok(out)
        }
        .await;
        self.audited(ctx, AuditAction::SecretVersions, tenant, Some(key), result)
            .await
    }

    /// One version of a secret: current, kept, or (with the archive) from OpenBao, audited
    /// as `secret.archive_read`. Not cached.
    pub async fn get_secret_version(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
        version: i32,
    ) -> Result<Arc<CachedSecret>, ServiceError> {
        self.ensure_auditable()?;
        let (result, action) = self.load_any_version(tenant, key, version).await;
        self.audited(ctx, action, tenant, Some(key), result).await
    }

    /// PostgreSQL first; a version no longer there comes from the archive. The audit action
    /// says which was asked.
    async fn load_any_version(
        &self,
        tenant: &TenantRef,
        key: &SecretKey,
        version: i32,
    ) -> (Result<Arc<CachedSecret>, ServiceError>, AuditAction) {
        match self.load_version(tenant.id, key, version).await {
            Err(ServiceError::VersionNotFound(_)) if self.archive.is_some() => (
                self.read_archived(tenant, key, version).await,
                AuditAction::SecretArchiveRead,
            ),
            other => (other, AuditAction::SecretReadVersion),
        }
    }

    /// Writes a new version whose value equals `version`'s. Returns the new version.
    pub async fn rollback_secret(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
        version: i32,
    ) -> Result<i32, ServiceError> {
        self.ensure_auditable()?;
        let result = async {
            let old = self.load_any_version(tenant, key, version).await.0?;
            self.write_secret(
                tenant,
                key,
                &old.value,
                None,
                crate::store::notify::SecretChange::Written,
            )
            .await
            .map(|(version, _)| version)
        }
        .await;
        self.cache.invalidate(tenant.id, key).await;
        self.audited(ctx, AuditAction::SecretRollback, tenant, Some(key), result)
            .await
    }

    pub(super) async fn load_version(
        &self,
        tenant: TenantId,
        key: &SecretKey,
        version: i32,
    ) -> Result<Arc<CachedSecret>, ServiceError> {
        if version < 1 {
            return Err(InputError::VersionNotPositive.into());
        }
        // The current row holds the newest version, the history the earlier ones.
        let read = || async move {
            let Some(current) = store::secrets::get(&self.pool, tenant, key).await? else {
                return Ok::<_, ServiceError>(None);
            };
            let (envelope, data_key_id, at) = if current.version == version {
                (
                    current.secret_value_encrypted,
                    current.data_key_id,
                    current.updated_at,
                )
            } else {
                let kept = match store::versions::get(&self.pool, tenant, key, version).await? {
                    Some(kept) => kept,
                    // Out of retention but not archived yet: still here.
                    None => self
                        .pending_version(current.id, version)
                        .await?
                        .ok_or(ServiceError::VersionNotFound(version))?,
                };
                (
                    kept.secret_value_encrypted,
                    kept.data_key_id,
                    kept.created_at,
                )
            };
            let stored = StoredSecret {
                version,
                // Kept versions belong to the current row (deleting it deletes them).
                secret_id: current.id,
                envelope,
                data_key_id: DataKeyId(data_key_id),
            };
            Ok(Some((stored, at)))
        };
        let (value, updated_at) = self
            .data_keys
            .read_secret(tenant, key, read)
            .await?
            .ok_or(ServiceError::SecretNotFound)?;
        Ok(Arc::new(CachedSecret {
            value,
            version,
            updated_at,
            loaded_from: crate::service::SecretSource::Database,
        }))
    }
}
