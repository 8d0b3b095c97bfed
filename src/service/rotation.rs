//! Rotation as the service offers it: audited master and data key rotation, the automatic
//! rotation of a data key whose encryption count reached the ceiling, and the test-only fail
//! points. The mechanics live in `keys::rotation`.

use std::sync::{Arc, Mutex};

use super::notify::ListenerStats;
use super::{DependencyError, RequestContext, ServiceError, Vault};
use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::{DataKeyId, TenantId, TenantSlug};
use crate::keys::rotation::{
    self, DataKeyRotation, FailPoint, MasterRotation, RotationError, Unsupported,
};
use crate::store;

/// 2^31: half the 2^32 encryptions NIST SP 800-38D allows one key with random 96-bit nonces.
pub const DEFAULT_DATA_KEY_MAX_ENCRYPTIONS: i64 = 1 << 31;

/// Per-vault rotation bookkeeping.
pub struct RotationState {
    /// This replica's id in notifications, so it skips the ones it sent itself.
    pub(crate) origin: uuid::Uuid,
    fail_at: Mutex<Option<FailPoint>>,
    /// Wakes the re-encryption worker (after a data key rotation).
    pub(crate) reencrypt_wakeup: tokio::sync::Notify,
    pub(crate) listener: ListenerStats,
}

impl Default for RotationState {
    fn default() -> Self {
        Self {
            origin: uuid::Uuid::new_v4(),
            fail_at: Mutex::default(),
            reencrypt_wakeup: tokio::sync::Notify::new(),
            listener: ListenerStats::default(),
        }
    }
}

impl From<RotationError> for ServiceError {
    fn from(err: RotationError) -> Self {
        match err {
            RotationError::InProgress => ServiceError::RotationInProgress,
            RotationError::Unsupported(why) => ServiceError::RotationUnsupported(why),
            RotationError::Source { ref source, .. }
            | RotationError::SourceReadBack { ref source, .. } => {
                if source.is_transient() {
                    ServiceError::Unavailable("the master key source")
                } else {
                    DependencyError::MasterKeySource(Arc::new(err)).into()
                }
            }
            RotationError::Key(k) => k.into(),
            other => ServiceError::internal(other),
        }
    }
}

/// An operator's rotation may not be skipped: skipping is for the automatic trigger only.
#[derive(Debug, thiserror::Error)]
#[error("rotation skipped")]
struct RotationSkipped;

/// A data key rotation as reported to callers.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DataKeyRotationReport {
    pub tenant: String,
    pub previous_version: i32,
    pub version: i32,
    /// Ciphertexts the re-encryption job will move to the new key.
    pub to_reencrypt: i64,
}

impl Vault {
    /// Makes the next master key rotation stop at `at` (None: run normally). For tests of
    /// crash safety only: no flag, variable or route reaches it.
    pub fn set_rotation_fail_point(&self, at: Option<FailPoint>) {
        *self.rotation.fail_at.lock().unwrap() = at;
    }

    /// Rotates the master key: see `keys::rotation`. One at a time across replicas.
    pub async fn rotate_master_key(
        &self,
        ctx: &RequestContext,
    ) -> Result<MasterRotation, ServiceError> {
        self.ensure_auditable()?;
        let result = match &self.key_source {
            None => Err(Unsupported::NoSource.into()),
            Some(source) => {
                let fail_at = *self.rotation.fail_at.lock().unwrap();
                rotation::rotate_master_key(
                    &self.pool,
                    self.masters(),
                    source.as_ref(),
                    fail_at,
                    self.rotation.origin,
                )
                .await
                .map_err(|err| {
                    // The 503 says only "unavailable"; the operator needs the source's words.
                    if matches!(&err, RotationError::Source { source, .. }
                        | RotationError::SourceReadBack { source, .. } if source.is_transient())
                    {
                        tracing::error!(error = %err, "master key rotation: the source is unavailable");
                    }
                    ServiceError::from(err)
                })
            }
        };
        let outcome = match &result {
            Ok(_) => AuditOutcome::Success,
            Err(ServiceError::RotationInProgress) => AuditOutcome::Conflict,
            Err(ServiceError::RotationUnsupported(_)) => AuditOutcome::Rejected,
            Err(ServiceError::Unavailable(_)) => AuditOutcome::Unavailable,
            Err(_) => AuditOutcome::Error,
        };
        rotation_metric("master_key", false, outcome);
        self.audit
            .record(self.event(ctx, AuditAction::MasterKeyRotate, outcome));
        result
    }

    /// Gives a tenant a new data key; the old one decrypts until the re-encryption job has
    /// moved every ciphertext off it, and is then destroyed.
    pub async fn rotate_data_key(
        &self,
        ctx: &RequestContext,
        slug: &TenantSlug,
    ) -> Result<DataKeyRotationReport, ServiceError> {
        self.ensure_auditable()?;
        let tenant = store::tenants::by_slug(&self.pool, slug)
            .await?
            .ok_or(ServiceError::TenantNotFound)?;
        let result = rotation::rotate_data_key(
            &self.pool,
            &self.data_keys,
            TenantId(tenant.id),
            None,
            false,
            self.rotation.origin,
        )
        .await
        .map_err(ServiceError::from)
        .and_then(|r| r.ok_or_else(|| ServiceError::internal(RotationSkipped)));
        let outcome = if result.is_ok() {
            AuditOutcome::Success
        } else {
            AuditOutcome::Error
        };
        rotation_metric("data_key", false, outcome);
        let mut e = self.event(ctx, AuditAction::DataKeyRotate, outcome);
        e.tenant_id = Some(tenant.id);
        e.tenant_slug = Some(tenant.slug.clone());
        self.audit.record(e);
        let rotated: DataKeyRotation = result?;
        self.rotation.reencrypt_wakeup.notify_one();
        Ok(DataKeyRotationReport {
            tenant: tenant.slug,
            previous_version: rotated.previous_version,
            version: rotated.version,
            to_reencrypt: rotated.to_reencrypt,
        })
    }

    /// A data key reached its encryption ceiling: rotate it, unless someone already did.
    pub(crate) async fn retire_exhausted_data_key(
        &self,
        tenant: TenantId,
        key: DataKeyId,
    ) -> Result<(), ServiceError> {
        let rotated = rotation::rotate_data_key(
            &self.pool,
            &self.data_keys,
            tenant,
            Some(key),
            true,
            self.rotation.origin,
        )
        .await?;
        if let Some(r) = rotated {
            tracing::info!(tenant = %tenant.0, previous_version = r.previous_version, version = r.version, "data key reached its encryption ceiling and was rotated");
            rotation_metric("data_key", true, AuditOutcome::Success);
            let mut e = self.event(
                &RequestContext::default(),
                AuditAction::DataKeyRotate,
                AuditOutcome::Success,
            );
            e.tenant_id = Some(tenant.0);
            self.audit.record(e);
            self.rotation.reencrypt_wakeup.notify_one();
        }
        Ok(())
    }
}

/// `tenant_vault_key_rotations_total`: rotation events by kind, trigger and outcome.
fn rotation_metric(kind: &'static str, automatic: bool, outcome: AuditOutcome) {
    metrics::counter!(
        "tenant_vault_key_rotations_total",
        "kind" => kind,
        "automatic" => if automatic { "true" } else { "false" },
        "outcome" => outcome.as_str()
    )
    .increment(1);
}
