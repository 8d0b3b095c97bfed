//! Infisical's webhook: the signature check, routing a payload to a tenant folder, and the
//! queue and worker that re-read the folders it names.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::mpsc;

use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::TenantSlug;
use crate::infisical::webhook;
use crate::service::{RequestContext, ServiceError, Vault};

/// Re-reads waiting for the worker; more are dropped (the re-check catches them).
const QUEUE_CAPACITY: usize = 10_000;
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
impl Vault {
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
