//! Re-reading a tenant's folder: one list call, changed values stored as new versions,
//! secrets deleted there removed; run by the webhook worker, the periodic re-check and
//! `tenant-vault sync infisical`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::SyncReport;
use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::{InfisicalMode, SecretKey, SecretOrigin, TenantId, TenantSlug};
use crate::service::fallback::{FallbackError, RemoteSecret};
use crate::service::{DependencyError, RequestContext, ServiceError, TenantRef, Vault};
use crate::store::notify::SecretChange;
use crate::store::{self, StoreError};

impl Vault {
    /// Re-reads one tenant's Infisical folder (one list call) and applies what changed there
    /// to the secrets imported from it.
    pub async fn sync_tenant(
        &self,
        ctx: &RequestContext,
        slug: &TenantSlug,
    ) -> Result<SyncReport, ServiceError> {
        let mut report = SyncReport {
            tenant: slug.to_string(),
            ..Default::default()
        };
        let Some(fallback) = self.fallback.clone() else {
            return Err(ServiceError::NotConfigured(
                "Infisical (set INFISICAL_SITE_URL)",
            ));
        };
        let row = store::tenants::by_slug(&self.pool, slug)
            .await?
            .ok_or(ServiceError::TenantNotFound)?;
        let tenant = TenantRef {
            id: TenantId(row.id),
            slug: slug.clone(),
        };
        let Some(mode) = self.tenant_mode(tenant.id).await? else {
            report.skipped = Some("the tenant does not read its Infisical folder");
            return Ok(report);
        };
        // Held until the end: one replica re-reads a folder at a time.
        let mut lock = self.pool.begin().await.map_err(StoreError::from)?;
        if !store::sync::lock_folder(&mut *lock, tenant.id).await? {
            report.skipped = Some("another replica is re-reading this folder");
            return Ok(report);
        }
        let next = Utc::now()
            + chrono::Duration::from_std(self.sync_settings.recheck.max(Duration::from_secs(1)))
                .unwrap_or(chrono::Duration::seconds(300));
        let remote = match fallback.list(slug).await {
            Ok(r) => r,
            Err(e) => {
                store::sync::mark_synced(
                    &self.pool,
                    tenant.id,
                    next,
                    Some("Infisical list failed"),
                )
                .await?;
                tracing::warn!(tenant = %slug, error = %e, "Infisical folder re-read failed");
                return Err(match e {
                    FallbackError::Unavailable(_) => ServiceError::Unavailable("Infisical"),
                    cause => DependencyError::Unimportable {
                        fallback: fallback.name(),
                        key: SecretKey::parse("_").expect("valid"),
                        cause,
                    }
                    .into(),
                });
            }
        };
        let origins: HashMap<String, store::sync::OriginRow> =
            store::sync::origins(&self.pool, tenant.id)
                .await?
                .into_iter()
                .map(|r| (r.secret_key.clone(), r))
                .collect();
        let tombstones: HashMap<String, Option<i32>> =
            store::sync::tombstones(&self.pool, tenant.id)
                .await?
                .into_iter()
                .map(|t| (t.secret_key, t.infisical_version))
                .collect();
        let folder = fallback.folder(slug);
        let mut seen = HashSet::new();
        for secret in remote {
            let Ok(key) = SecretKey::parse(&secret.key) else {
                continue;
            };
            seen.insert(secret.key.clone());
            self.not_found.forget(tenant.id, &key).await;
            match (origins.get(&secret.key), tombstones.get(&secret.key)) {
                (Some(row), _) => {
                    let follows = row.origin == SecretOrigin::Infisical
                        && mode == InfisicalMode::Follow
                        && (row.infisical_version != Some(secret.version)
                            || row.infisical_secret_id.as_deref() != Some(secret.id.as_str()));
                    if follows
                        && self
                            .apply_remote(ctx, &tenant, &key, &folder, &secret, Some(row.version))
                            .await?
                    {
                        report.changed += 1;
                    } else {
                        report.unchanged += 1;
                    }
                }
                (None, Some(None)) => {
                    store::sync::tombstone_baseline(&self.pool, tenant.id, &key, secret.version)
                        .await?;
                    report.unchanged += 1;
                }
                (None, Some(Some(deleted)))
                    if mode == InfisicalMode::Follow && secret.version > *deleted =>
                {
                    if self
                        .apply_remote(ctx, &tenant, &key, &folder, &secret, Some(0))
                        .await?
                    {
                        report.changed += 1;
                    }
                }
                (None, Some(Some(_))) => report.unchanged += 1,
                // Not read yet: the lookup imports it on first read.
                (None, None) => {}
            }
        }
        for (name, row) in &origins {
            if seen.contains(name) {
                continue;
            }
            if row.origin == SecretOrigin::Infisical && mode == InfisicalMode::Follow {
                let Ok(key) = SecretKey::parse(name) else {
                    continue;
                };
                if self.remove_synced(ctx, &tenant, &key, row.version).await? {
                    report.deleted += 1;
                    continue;
                }
            }
            report.unchanged += 1;
        }
        store::sync::mark_synced(&self.pool, tenant.id, next, None).await?;
        lock.commit().await.map_err(StoreError::from)?;
        metrics::counter!("tenant_vault_infisical_syncs_total").increment(1);
        Ok(report)
    }

    /// Stores Infisical's value as the next version if the secret is still at
    /// `expected` (0: absent). False when a writer got there first.
    async fn apply_remote(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
        folder: &str,
        secret: &RemoteSecret,
        expected: Option<i32>,
    ) -> Result<bool, ServiceError> {
        let result = self
            .write_remote(tenant, key, folder.to_owned(), secret, expected)
            .await;
        self.cache.invalidate(tenant.id, key).await;
        self.not_found.forget(tenant.id, key).await;
        let outcome = match (&result, expected) {
            (Ok(_), Some(0)) => AuditOutcome::Restored,
            (Ok(_), _) => AuditOutcome::Updated,
            (Err(e), _) => crate::service::secrets::outcome_of(e),
        };
        self.sync_event(ctx, AuditAction::SecretSync, outcome, tenant, Some(key));
        match result {
            Ok(_) => Ok(true),
            Err(ServiceError::CasConflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes a secret that was deleted in Infisical, if it is still the version we saw
    /// and still Infisical's. No tombstone: the deletion came from the source.
    async fn remove_synced(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
        version: i32,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        // Archive, then delete (the cold vault keeps what Infisical deleted); if the row moved
        // on meanwhile, the rollback on drop also takes the archive entry back.
        self.archive_before_delete(&mut tx, tenant.id, key).await?;
        let removed = store::sync::delete_if_synced(&mut *tx, tenant.id, key, version).await?;
        if !removed {
            return Ok(false);
        }
        self.notify_secret(&mut tx, tenant, key, SecretChange::Deleted, None)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;
        self.wake_archiver();
        self.cache.invalidate(tenant.id, key).await;
        self.sync_event(
            ctx,
            AuditAction::SecretSync,
            AuditOutcome::Deleted,
            tenant,
            Some(key),
        );
        Ok(true)
    }
}

/// The safety net: re-reads followed folders whose re-check is due, one at a time, spaced
/// so all replicas together stay within `recheck_per_minute` list calls.
pub fn spawn_rechecker(vault: Arc<Vault>) -> Option<tokio::task::JoinHandle<()>> {
    let settings = vault.sync_settings.clone();
    if vault.fallback.is_none() || settings.recheck.is_zero() {
        return None;
    }
    let spacing = Duration::from_millis(60_000 / u64::from(settings.recheck_per_minute.max(1)));
    Some(tokio::spawn(async move {
        loop {
            // Jitter so replicas started together do not poll in step.
            let jitter = rand::Rng::gen_range(
                &mut rand::thread_rng(),
                0..=spacing.as_millis() as u64 / 2 + 1,
            );
            tokio::time::sleep(spacing + Duration::from_millis(jitter)).await;
            if let Err(e) = recheck_one(&vault, spacing).await {
                tracing::debug!(error = %e, "re-check skipped");
            }
        }
    }))
}

/// Takes a slot of the shared budget and re-reads the most overdue folder, if any is due.
async fn recheck_one(vault: &Vault, spacing: Duration) -> Result<(), ServiceError> {
    let recheck = vault.sync_settings.recheck;
    // Next check: the interval, jittered by up to a tenth so folders spread out over time.
    let jitter_ms =
        rand::Rng::gen_range(&mut rand::thread_rng(), 0..=recheck.as_millis() as u64 / 10);
    let next = Utc::now()
        + chrono::Duration::from_std(recheck + Duration::from_millis(jitter_ms))
            .unwrap_or(chrono::Duration::seconds(300));
    if !store::sync::take_recheck_slot(&vault.pool, spacing.as_millis() as i64).await? {
        return Ok(());
    }
    let Some((_, slug)) =
        store::sync::claim_due(&vault.pool, next, vault.sync_settings.mode).await?
    else {
        return Ok(());
    };
    let Ok(slug) = TenantSlug::parse(&slug) else {
        return Ok(());
    };
    let report = vault.sync_tenant(&RequestContext::default(), &slug).await?;
    metrics::counter!("tenant_vault_infisical_rechecks_total").increment(1);
    tracing::debug!(tenant = %slug, changed = report.changed, deleted = report.deleted, "re-check done");
    Ok(())
}
