//! Per-tenant storage quotas (number of current secrets, their stored bytes), checked in the
//! writing transaction; and the admin side of the per-tenant limits (rates and quotas).
//! Concurrent first writes of different keys may each pass the count check: a quota can be
//! overshot by the writes in flight at that moment, never more.

use sqlx::{PgConnection, Postgres, Transaction};

use super::limits::{EffectiveLimits, TenantLimits};
use super::{InputError, RequestContext, ServiceError, TenantRef, Vault};
use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::TenantSlug;
use crate::store;

/// Largest rate or burst accepted (requests per second; far above any one replica).
const MAX_RATE: u32 = 1_000_000;

/// A tenant's overrides and what applies to it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantLimitsView {
    pub tenant: String,
    pub overrides: TenantLimits,
    pub effective: EffectiveLimits,
}

fn check_range(field: &'static str, v: Option<u64>, min: u64, max: u64) -> Result<(), InputError> {
    match v {
        Some(v) if v < min || v > max => Err(InputError::OutOfRange { field, min, max }),
        _ => Ok(()),
    }
}

impl Vault {
    /// Refuses a write that would take the tenant past its quotas. `replaced` is the stored
    /// size of the value being overwritten (None: a new key), `stored` the new one's.
    pub(super) async fn check_quota(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        tenant: &TenantRef,
        replaced: Option<usize>,
        stored: usize,
    ) -> Result<(), ServiceError> {
        let limits = self.effective_limits(&tenant.slug).await?;
        if limits.max_secrets == 0 && limits.max_bytes == 0 {
            return Ok(());
        }
        let conn: &mut PgConnection = tx;
        let (secrets, bytes) = store::limits::usage(conn, tenant.id).await?;
        if replaced.is_none() && limits.max_secrets > 0 && secrets >= limits.max_secrets {
            metrics::counter!("tenant_vault_quota_refusals_total", "quota" => "secrets")
                .increment(1);
            return Err(ServiceError::QuotaExceeded(format!(
                "tenant {} holds {secrets} secrets, its quota is {}; delete some or ask an \
                 admin to raise max_secrets",
                tenant.slug, limits.max_secrets
            )));
        }
        let after = bytes - replaced.unwrap_or(0) as u64 + stored as u64;
        if limits.max_bytes > 0 && after > limits.max_bytes {
            metrics::counter!("tenant_vault_quota_refusals_total", "quota" => "bytes").increment(1);
            return Err(ServiceError::QuotaExceeded(format!(
                "this write would bring tenant {}'s stored secrets to {after} bytes, its quota \
                 is {} bytes; delete some or ask an admin to raise max_bytes",
                tenant.slug, limits.max_bytes
            )));
        }
        Ok(())
    }

    /// A tenant's overrides and effective limits.
    pub async fn tenant_limits(&self, slug: &TenantSlug) -> Result<TenantLimitsView, ServiceError> {
        store::tenants::by_slug(&self.pool, slug)
            .await?
            .ok_or(ServiceError::TenantNotFound)?;
        let overrides = store::limits::by_slug(&self.pool, slug)
            .await?
            .unwrap_or_default();
        Ok(TenantLimitsView {
            tenant: slug.to_string(),
            effective: self.rate_limits.apply_overrides(&overrides),
            overrides,
        })
    }

    /// Replaces a tenant's overrides (None fields: the settings apply). This replica applies
    /// them at once, the others within half a minute.
    pub async fn set_tenant_limits(
        &self,
        ctx: &RequestContext,
        slug: &TenantSlug,
        overrides: TenantLimits,
    ) -> Result<TenantLimitsView, ServiceError> {
        let rate = |v: Option<u32>| v.map(u64::from);
        check_range("tenant_rps", rate(overrides.tenant_rps), 0, MAX_RATE.into())?;
        check_range(
            "tenant_burst",
            rate(overrides.tenant_burst),
            1,
            MAX_RATE.into(),
        )?;
        check_range("token_rps", rate(overrides.token_rps), 0, MAX_RATE.into())?;
        check_range(
            "token_burst",
            rate(overrides.token_burst),
            1,
            MAX_RATE.into(),
        )?;
        check_range("max_secrets", overrides.max_secrets, 0, i64::MAX as u64)?;
        check_range("max_bytes", overrides.max_bytes, 0, i64::MAX as u64)?;
        let tenant = store::tenants::by_slug(&self.pool, slug)
            .await?
            .ok_or(ServiceError::TenantNotFound)?;
        store::limits::put(&self.pool, crate::domain::TenantId(tenant.id), &overrides).await?;
        self.rate_limits.forget_tenant(slug);
        let mut e = self.event(ctx, AuditAction::TenantLimits, AuditOutcome::Updated);
        e.tenant_id = Some(tenant.id);
        e.tenant_slug = Some(tenant.slug);
        self.audit.record(e);
        Ok(TenantLimitsView {
            tenant: slug.to_string(),
            effective: self.rate_limits.apply_overrides(&overrides),
            overrides,
        })
    }
}
