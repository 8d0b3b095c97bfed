//! Secret history: the versions kept in `company_secret_versions` (listing without values,
//! reading one) and rollback, which writes a new version equal to an old one (encrypted anew:
//! the old ciphertext is bound to its own version number and could not be reused).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{RequestContext, ServiceError, TenantRef, Vault};
use crate::cache::CachedSecret;
use crate::crypto::{envelope, open_secret, SecretPlace, SecretValue};
use crate::domain::{SecretKey, TenantId};
use crate::keys::KeyError;
use crate::store;

#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionInfo {
    pub version: i32,
    /// When this version was written.
    pub created_at: DateTime<Utc>,
    pub current: bool,
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
            let current = store::secrets::get(&self.pool, tenant.id.0, key.as_str())
                .await?
                .ok_or(ServiceError::SecretNotFound)?;
            let mut out = vec![VersionInfo {
                version: current.version,
                created_at: current.updated_at,
                current: true,
            }];
            out.extend(
                store::versions::list(&self.pool, tenant.id.0, key.as_str())
                    .await?
                    .into_iter()
                    .filter(|v| v.version != current.version)
                    .map(|v| VersionInfo {
                        version: v.version,
                        created_at: v.created_at,
                        current: false,
                    }),
            );
            Ok(out)
        }
        .await;
        self.audited(ctx, "secret.versions", tenant, Some(key), result)
    }

    /// One version of a secret, current or kept. Not cached.
    pub async fn get_secret_version(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
        version: i32,
    ) -> Result<Arc<CachedSecret>, ServiceError> {
        self.ensure_auditable()?;
        let result = self.load_version(tenant.id, key, version).await;
        self.audited(ctx, "secret.read_version", tenant, Some(key), result)
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
            let old = self.load_version(tenant.id, key, version).await?;
            self.write_secret(tenant, key, &old.value, None)
                .await
                .map(|(version, _)| version)
        }
        .await;
        self.cache.invalidate(tenant.id, key).await;
        self.audited(ctx, "secret.rollback", tenant, Some(key), result)
    }

    async fn load_version(
        &self,
        tenant: TenantId,
        key: &SecretKey,
        version: i32,
    ) -> Result<Arc<CachedSecret>, ServiceError> {
        if version < 1 {
            return Err(ServiceError::InvalidInput(
                "`version` must be a positive integer".into(),
            ));
        }
        // A row can move to a new data key (re-encryption) between reading it and loading
        // its key, which may then be destroyed: read again in that case.
        for _ in 0..3 {
            let current = store::secrets::get(&self.pool, tenant.0, key.as_str())
                .await?
                .ok_or(ServiceError::SecretNotFound)?;
            let (sealed, data_key_id, at) = if current.version == version {
                (
                    current.secret_value_encrypted,
                    current.data_key_id,
                    current.updated_at,
                )
            } else {
                let kept = store::versions::get(&self.pool, tenant.0, key.as_str(), version)
                    .await?
                    .ok_or(ServiceError::VersionNotFound(version))?;
                (
                    kept.secret_value_encrypted,
                    kept.data_key_id,
                    kept.created_at,
                )
            };
            match self
                .open_at(tenant, key, version, &sealed, data_key_id)
                .await
            {
                Ok(value) => {
                    return Ok(Arc::new(CachedSecret {
                        value,
                        version,
                        updated_at: at,
                        loaded_from: crate::service::SecretSource::Database,
                    }))
                }
                Err(KeyError::Destroyed(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Integrity)
    }

    async fn open_at(
        &self,
        tenant: TenantId,
        key: &SecretKey,
        version: i32,
        sealed: &[u8],
        data_key_id: Uuid,
    ) -> Result<SecretValue, KeyError> {
        let header_key = envelope::secret_data_key_id(sealed)
            .map_err(|_| KeyError::Integrity(crate::domain::DataKeyId(data_key_id)))?;
        if header_key.0 != data_key_id {
            return Err(KeyError::Integrity(header_key));
        }
        let data_key = self.data_keys.get(tenant, header_key).await?;
        let place = SecretPlace {
            tenant,
            key,
            version,
        };
        open_secret(&data_key, place, sealed).map_err(|_| KeyError::Integrity(header_key))
    }
}
