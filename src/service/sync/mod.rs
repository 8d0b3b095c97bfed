//! Keeping Infisical and tenant-vault in step (issue 11).
//!
//! Every secret records its origin: written through tenant-vault, or imported from the
//! tenant's Infisical folder (with the Infisical secret id and version). In `follow` mode
//! (the default) Infisical stays the source of truth of the secrets imported from it: a
//! re-read of the folder stores changed values as new versions and removes secrets deleted
//! there. In `import-once` mode they are imported on first read and left alone after.
//! Secrets written through tenant-vault are never touched by a re-read.
//!
//! A re-read is triggered by Infisical's webhook (`POST /v1/hooks/infisical`, queued here and
//! answered at once), by the periodic re-check of followed folders (the safety net, since
//! Infisical does not retry webhooks), or by `tenant-vault sync infisical`. One replica at a
//! time re-reads a folder (advisory lock).
//!
//! Deletes stick: deleting a secret through tenant-vault leaves a tombstone, so the lookup's
//! Infisical step does not import it again. In follow mode a newer Infisical version (an edit
//! made there after the delete) brings it back, audited as `secret.sync` / `restored`.
//! A tenant created over a deleted one with the same slug does not read the folder unless
//! created with `infisical_import: true`.//!
//! By concern: this file holds the settings, the tenant's mode and the one write of a remote
//! value; `import` brings in single secrets (the lookup's Infisical step, `import
//! infisical`) and keeps origins and tombstones; `webhook` receives Infisical's webhook and
//! queues re-reads; `reread` re-reads a folder (worker and periodic re-check).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::fallback::RemoteSecret;
use super::{RequestContext, ServiceError, TenantRef, Vault};
use crate::audit::{AuditAction, AuditOutcome};
use crate::config::SyncArgs;
use crate::crypto::SecretValue;
use crate::domain::{InfisicalMode, SecretKey, TenantId, TenantSlug};
use crate::store;
use crate::store::notify::SecretChange;
use crate::store::sync::Origin;

mod import;
mod reread;
mod webhook;

pub use reread::spawn_rechecker;
pub use webhook::{spawn_sync_worker, SyncQueue, WebhookOutcome};

#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// The mode of tenants that set none.
    pub mode: InfisicalMode,
    /// `TENANT_VAULT_INFISICAL_WEBHOOK_SECRET`; None: the receiver answers 404.
    pub webhook_secret: Option<SecretValue>,
    /// How far a webhook's timestamp may be from now.
    pub replay_window_secs: u64,
    /// How often each followed folder is re-read without a webhook (zero: never).
    pub recheck: Duration,
    /// Most re-check list calls per minute, across all replicas (Infisical's rate limits).
    pub recheck_per_minute: u32,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            mode: InfisicalMode::Follow,
            webhook_secret: None,
            replay_window_secs: 300,
            recheck: Duration::from_secs(300),
            recheck_per_minute: 30,
        }
    }
}

/// What one folder re-read did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SyncReport {
    pub tenant: String,
    /// Stored as a new version (changed in Infisical), restored after a tombstone included.
    pub changed: usize,
    pub deleted: usize,
    pub unchanged: usize,
    /// Why nothing was read (tenant does not read Infisical, or another replica is on it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
}

impl SyncSettings {
    /// The settings `--infisical-*` ask for (an unknown mode: `follow`).
    pub fn from_args(args: &SyncArgs) -> Self {
        Self {
            mode: InfisicalMode::parse(&args.infisical_mode).unwrap_or(InfisicalMode::Follow),
            webhook_secret: args.infisical_webhook_secret.clone(),
            replay_window_secs: args.infisical_webhook_window_secs,
            recheck: Duration::from_secs(args.infisical_recheck_secs),
            recheck_per_minute: args.infisical_recheck_per_minute,
        }
    }
}

/// Where a value read from Infisical came from: its folder, secret id and version.
fn infisical_origin(folder: String, remote: &RemoteSecret) -> Origin {
    Origin::Infisical {
        folder,
        secret_id: remote.id.clone(),
        version: remote.version,
    }
}

impl Vault {
    pub fn set_sync_settings(&mut self, settings: SyncSettings) {
        self.sync_settings = settings;
    }

    pub fn sync_settings(&self) -> &SyncSettings {
        &self.sync_settings
    }

    /// The mode that applies to a tenant.
    async fn tenant_mode(&self, tenant: TenantId) -> Result<Option<InfisicalMode>, ServiceError> {
        let settings = store::sync::tenant_settings(&self.pool, tenant).await?;
        Ok(settings
            .filter(|s| s.import)
            .map(|s| s.mode.unwrap_or(self.sync_settings.mode)))
    }

    /// Stores Infisical's value of `key` as the next version if the secret is still at
    /// `expected` (0: absent; None: any), recording where it came from.
    async fn write_remote(
        &self,
        tenant: &TenantRef,
        key: &SecretKey,
        folder: String,
        remote: &RemoteSecret,
        expected: Option<i32>,
    ) -> Result<(i32, DateTime<Utc>), ServiceError> {
        self.write_secret_from(
            tenant,
            key,
            &remote.value,
            expected,
            SecretChange::Synced,
            &infisical_origin(folder, remote),
        )
        .await
    }

    fn sync_event(
        &self,
        ctx: &RequestContext,
        action: AuditAction,
        outcome: AuditOutcome,
        tenant: &TenantRef,
        key: Option<&SecretKey>,
    ) {
        self.audit
            .record(self.secret_event(ctx, action, outcome, tenant, key));
    }

    /// Re-reads every live tenant that reads Infisical (or one), for `sync infisical`.
    pub async fn synced_tenants(&self) -> Result<Vec<TenantSlug>, ServiceError> {
        let rows = store::sync::importing_tenants(&self.pool).await?;
        Ok(rows
            .into_iter()
            .filter_map(|s| TenantSlug::parse(&s).ok())
            .collect())
    }

    /// Sets (or clears, with None) a tenant's Infisical mode.
    pub async fn set_tenant_infisical_mode(
        &self,
        ctx: &RequestContext,
        slug: &TenantSlug,
        mode: Option<InfisicalMode>,
    ) -> Result<InfisicalMode, ServiceError> {
        let row = store::tenants::by_slug(&self.pool, slug)
            .await?
            .ok_or(ServiceError::TenantNotFound)?;
        let tenant = TenantRef {
            id: TenantId(row.id),
            slug: slug.clone(),
        };
        let result = async {
            if !store::sync::set_mode(&self.pool, tenant.id, mode).await? {
                return Err(ServiceError::TenantNotFound);
            }
            Ok(mode.unwrap_or(self.sync_settings.mode))
        }
        .await;
        self.sync_event(
            ctx,
            AuditAction::TenantInfisicalMode,
            super::secrets::outcome(&result),
            &tenant,
            None,
        );
        result
    }
}
