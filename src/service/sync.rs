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
//! created with `infisical_import: true`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use super::fallback::{FallbackError, RemoteSecret};
use super::{DependencyError, RequestContext, ServiceError, TenantRef, Vault};
use crate::audit::{AuditAction, AuditOutcome};
use crate::cache::CachedSecret;
use crate::crypto::SecretValue;
use crate::domain::{InfisicalMode, SecretKey, SecretOrigin, SecretSource, TenantId, TenantSlug};
use crate::infisical::webhook;
use crate::store::notify::SecretChange;
use crate::store::sync::Origin;
use crate::store::{self, StoreError};

/// Re-reads waiting for the worker; more are dropped (the re-check catches them).
const QUEUE_CAPACITY: usize = 10_000;

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

/// The re-read queue: folders named by webhooks, each queued once until it is read.
pub struct SyncQueue {
    tx: mpsc::Sender<TenantSlug>,
    rx: Mutex<Option<mpsc::Receiver<TenantSlug>>>,
    pending: Mutex<HashSet<TenantSlug>>,
}

impl Default for SyncQueue {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
            pending: Mutex::new(HashSet::new()),
        }
    }
}

impl SyncQueue {
    /// Queues a re-read of `slug`'s folder unless one is queued already.
    fn push(&self, slug: TenantSlug) -> bool {
        if !self.pending.lock().unwrap().insert(slug.clone()) {
            return true;
        }
        match self.tx.try_send(slug.clone()) {
            Ok(()) => true,
            Err(_) => {
                self.pending.lock().unwrap().remove(&slug);
                false
            }
        }
    }

    fn done(&self, slug: &TenantSlug) {
        self.pending.lock().unwrap().remove(slug);
    }
}

/// What a webhook led to (both answer 202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A re-read of this tenant's folder is queued.
    Queued(TenantSlug),
    /// Not for us (other event, project, environment or folder); counted, not acted on.
    Ignored(&'static str),
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

    /// The lookup's third step: the tenant's Infisical folder, unless the tenant does not
    /// read it or a tombstone says the key was deleted here.
    pub(super) async fn load_from_fallback(
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
        let origin = Origin::Infisical {
            folder: fallback.folder(&tenant.slug),
            secret_id: remote.id.clone(),
            version: remote.version,
        };
        // Imported as version 1; if a writer created the key meanwhile, theirs wins.
        let result = self
            .write_secret_from(
                tenant,
                key,
                &remote.value,
                Some(0),
                SecretChange::Synced,
                &origin,
            )
            .await;
        let outcome = match (&result, action) {
            (Ok(_), AuditAction::SecretSync) => AuditOutcome::Restored,
            _ => super::secrets::outcome(&result),
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

    fn sync_event(
        &self,
        ctx: &RequestContext,
        action: AuditAction,
        outcome: AuditOutcome,
        tenant: &TenantRef,
        key: Option<&SecretKey>,
    ) {
        let mut e = self.event(ctx, action, outcome);
        e.tenant_id = Some(tenant.id.0);
        e.tenant_slug = Some(tenant.slug.to_string());
        e.secret_key = key.map(|k| k.to_string());
        self.audit.record(e);
    }

    /// In the writing transaction: where the value came from; the key exists again, so a
    /// tombstone goes.
    pub(super) async fn record_origin(
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
    pub(super) async fn leave_tombstone(
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

    /// Checks an Infisical webhook and queues the re-read it asks for. A bad signature is
    /// `InvalidSignature` (401); everything it names that is not one of our tenant folders in
    /// the configured project and environment is ignored (and counted).
    pub fn receive_infisical_webhook(
        &self,
        ctx: &RequestContext,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookOutcome, ServiceError> {
        let Some(secret) = &self.sync_settings.webhook_secret else {
            return Err(ServiceError::NotConfigured(
                "the Infisical webhook receiver (set TENANT_VAULT_INFISICAL_WEBHOOK_SECRET)",
            ));
        };
        let verified = webhook::verify(
            secret.expose().as_bytes(),
            signature,
            body,
            Utc::now().timestamp_millis(),
            self.sync_settings.replay_window_secs,
        );
        let payload = match verified {
            Ok(p) => p,
            Err(e) => {
                metrics::counter!("tenant_vault_infisical_webhooks_total", "outcome" => "invalid_signature").increment(1);
                self.audit.record(self.event(
                    ctx,
                    AuditAction::InfisicalWebhook,
                    AuditOutcome::Denied,
                ));
                return Err(ServiceError::InvalidSignature(e));
            }
        };
        let outcome = self.route_webhook(&payload);
        let (label, audit_outcome, slug) = match &outcome {
            WebhookOutcome::Queued(slug) => ("queued", AuditOutcome::Queued, Some(slug)),
            WebhookOutcome::Ignored(why) => (*why, AuditOutcome::Rejected, None),
        };
        metrics::counter!("tenant_vault_infisical_webhooks_total", "outcome" => label).increment(1);
        let mut e = self.event(ctx, AuditAction::InfisicalWebhook, audit_outcome);
        e.tenant_slug = slug.map(|s| s.to_string());
        self.audit.record(e);
        Ok(outcome)
    }

    fn route_webhook(&self, payload: &webhook::WebhookPayload) -> WebhookOutcome {
        if payload.event != "secrets.modified" {
            return WebhookOutcome::Ignored("ignored_event");
        }
        let Some(fallback) = &self.fallback else {
            return WebhookOutcome::Ignored("ignored_no_infisical");
        };
        let Some(project) = &payload.project else {
            return WebhookOutcome::Ignored("ignored_project");
        };
        if let Some((want_project, want_env)) = fallback.scope() {
            if project.project() != Some(want_project.as_str()) {
                return WebhookOutcome::Ignored("ignored_project");
            }
            if project.environment.as_deref() != Some(want_env.as_str()) {
                return WebhookOutcome::Ignored("ignored_environment");
            }
        }
        let slug = project
            .secret_path
            .as_deref()
            .map(|p| p.strip_suffix('/').unwrap_or(p))
            .and_then(|p| p.strip_prefix("/tenants/"))
            .and_then(|s| TenantSlug::parse(s).ok());
        let Some(slug) = slug else {
            return WebhookOutcome::Ignored("ignored_folder");
        };
        if self.sync_queue.push(slug.clone()) {
            WebhookOutcome::Queued(slug)
        } else {
            metrics::counter!("tenant_vault_infisical_sync_queue_full_total").increment(1);
            WebhookOutcome::Ignored("queue_full")
        }
    }

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
        let origin = Origin::Infisical {
            folder: folder.to_owned(),
            secret_id: secret.id.clone(),
            version: secret.version,
        };
        let result = self
            .write_secret_from(
                tenant,
                key,
                &secret.value,
                expected,
                SecretChange::Synced,
                &origin,
            )
            .await;
        self.cache.invalidate(tenant.id, key).await;
        self.not_found.forget(tenant.id, key).await;
        let outcome = match (&result, expected) {
            (Ok(_), Some(0)) => AuditOutcome::Restored,
            (Ok(_), _) => AuditOutcome::Updated,
            (Err(e), _) => super::secrets::outcome_of(e),
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
        let removed = store::sync::delete_if_synced(&mut *tx, tenant.id, key, version).await?;
        if removed {
            self.notify_secret(&mut tx, tenant, key, SecretChange::Deleted, None)
                .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        self.cache.invalidate(tenant.id, key).await;
        if removed {
            self.sync_event(
                ctx,
                AuditAction::SecretSync,
                AuditOutcome::Deleted,
                tenant,
                Some(key),
            );
        }
        Ok(removed)
    }

    /// Records that a stored secret equals Infisical's `remote` (origin, id, version).
    pub(super) async fn mark_imported(
        &self,
        tenant: &TenantRef,
        key: &SecretKey,
        remote: &RemoteSecret,
    ) -> Result<(), ServiceError> {
        let origin = Origin::Infisical {
            folder: crate::infisical::tenant_folder(&tenant.slug),
            secret_id: remote.id.clone(),
            version: remote.version,
        };
        Ok(store::sync::set_origin(&self.pool, tenant.id, key, &origin).await?)
    }

    /// Writes one secret brought in by `import infisical`, recording its Infisical origin.
    pub(super) async fn import_one(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
        remote: &RemoteSecret,
    ) -> Result<i32, ServiceError> {
        self.ensure_auditable()?;
        let origin = Origin::Infisical {
            folder: crate::infisical::tenant_folder(&tenant.slug),
            secret_id: remote.id.clone(),
            version: remote.version,
        };
        let result = self
            .write_secret_from(
                tenant,
                key,
                &remote.value,
                None,
                SecretChange::Synced,
                &origin,
            )
            .await
            .map(|(v, _)| v);
        self.cache.invalidate(tenant.id, key).await;
        self.not_found.forget(tenant.id, key).await;
        self.audited(ctx, AuditAction::SecretImport, tenant, Some(key), result)
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

/// The worker that runs queued re-reads, one at a time, on a serving replica.
pub fn spawn_sync_worker(vault: Arc<Vault>) -> Option<tokio::task::JoinHandle<()>> {
    let mut rx = vault.sync_queue.rx.lock().unwrap().take()?;
    Some(tokio::spawn(async move {
        while let Some(slug) = rx.recv().await {
            vault.sync_queue.done(&slug);
            let ctx = RequestContext::default();
            match vault.sync_tenant(&ctx, &slug).await {
                Ok(r) => {
                    tracing::info!(tenant = %slug, changed = r.changed, deleted = r.deleted, unchanged = r.unchanged, skipped = r.skipped, "Infisical folder re-read")
                }
                Err(e) => {
                    tracing::warn!(tenant = %slug, error = %e, "Infisical folder re-read failed")
                }
            }
        }
    }))
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
