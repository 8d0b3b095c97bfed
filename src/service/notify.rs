//! Replicas agree at once: every change sends `NOTIFY tenant_vault` inside its transaction
//! (see `store::notify`), and every replica runs `listen`, which drops exactly the cache
//! entries a change makes stale and loads new master key versions. While the listening
//! connection is down notifications are lost, so the caches are dropped whole when the loss
//! is seen and again once listening resumes. Every notification, this replica's own
//! included, then goes to the replica's event streams (`events.rs`); a loss sends them
//! `reset`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgConnection;

use super::{ServiceError, TenantRef, Vault};
use crate::domain::{DataKeyId, SecretKey, TenantId, TokenId};
use crate::store::notify::{Event, Notification, SecretChange};
use crate::store::{self, StoreError};

/// `application_name` of the listening connection.
pub const LISTENER_APPLICATION_NAME: &str = "tenant-vault-listener";

#[derive(Default)]
pub struct ListenerStats {
    /// Times this replica (re)started listening.
    pub subscriptions: AtomicU64,
    /// Notifications handled.
    pub received: AtomicU64,
}

impl Vault {
    /// Announces a secret change; `version` is the new current version (none for a delete).
    pub(crate) async fn notify_secret(
        &self,
        tx: &mut PgConnection,
        tenant: &TenantRef,
        key: &SecretKey,
        change: SecretChange,
        version: Option<i32>,
    ) -> Result<(), StoreError> {
        store::notify::event(
            tx,
            self.rotation.origin,
            &Event::Secret {
                tenant: tenant.id.0,
                key: key.to_string(),
                slug: Some(tenant.slug.to_string()),
                change: Some(change),
                version,
            },
        )
        .await
    }

    /// Announces a tenant's creation or deletion.
    pub(crate) async fn notify_tenant(
        &self,
        tx: &mut PgConnection,
        tenant: TenantId,
        slug: &str,
        destroyed: &[DataKeyId],
        deleted: bool,
    ) -> Result<(), StoreError> {
        store::notify::event(
            tx,
            self.rotation.origin,
            &Event::Tenant {
                tenant: tenant.0,
                destroyed_keys: destroyed.iter().map(|id| id.0).collect(),
                slug: Some(slug.to_owned()),
                deleted: Some(deleted),
            },
        )
        .await
    }

    /// Announces a token's revocation, in the transaction that revokes it: every replica
    /// forgets its cached check, and its event streams (`token.revoked`) end.
    pub async fn notify_token_revoked(
        &self,
        tx: &mut PgConnection,
        token: TokenId,
        tenant: Option<&TenantRef>,
    ) -> Result<(), StoreError> {
        store::notify::event(
            tx,
            self.rotation.origin,
            &Event::TokenRevoked {
                token_id: token.0,
                tenant: tenant.map(|t| t.id.0),
                slug: tenant.map(|t| t.slug.to_string()),
            },
        )
        .await
    }

    /// (subscriptions, notifications handled) so far: for `GET /v1/admin/keys` and tests.
    pub fn listener_stats(&self) -> (u64, u64) {
        let s = &self.rotation.listener;
        (
            s.subscriptions.load(Ordering::SeqCst),
            s.received.load(Ordering::SeqCst),
        )
    }

    /// Applies one change made by any replica (this one included).
    pub async fn apply_event(&self, event: Event) {
        match event {
            Event::Secret { tenant, key, .. } => {
                if let Ok(key) = SecretKey::parse(&key) {
                    self.cache.invalidate(TenantId(tenant), &key).await;
                    self.not_found.forget(TenantId(tenant), &key).await;
                }
            }
            Event::Tenant {
                tenant,
                destroyed_keys,
                ..
            } => {
                let tenant = TenantId(tenant);
                let ids: Vec<DataKeyId> = destroyed_keys.into_iter().map(DataKeyId).collect();
                self.data_keys.forget(tenant, &ids).await;
                self.cache.invalidate_tenant(tenant);
                self.tokens.forget_tenant(tenant);
            }
            Event::DataKey {
                tenant,
                destroyed_keys,
            } => {
                let ids: Vec<DataKeyId> = destroyed_keys.into_iter().map(DataKeyId).collect();
                self.data_keys.forget(TenantId(tenant), &ids).await;
            }
            Event::TokenRevoked { .. } | Event::TokenUpdated { .. } => {
                // Token checks are cached by hash, not id: forget them all (revocations are rare).
                self.tokens.forget_all();
            }
            Event::MasterKey { version } => {
                if let Err(e) = self.masters().refresh(&self.pool).await {
                    tracing::error!(version, error = %e, "could not load the new master key version; it will be retried on first need");
                }
            }
        }
    }

    /// Forgets everything cached: secrets, keys found nowhere, token checks, unwrapped keys.
    pub fn drop_caches(&self) {
        self.cache.invalidate_all();
        self.not_found.forget_all();
        self.tokens.forget_all();
        self.data_keys.forget_everything();
    }
}

async fn subscribe(vault: &Vault) -> Result<PgListener, ServiceError> {
    let options = (*vault.pool.connect_options())
        .clone()
        .application_name(LISTENER_APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy_with(options);
    let mut listener = PgListener::connect_with(&pool)
        .await
        .map_err(StoreError::from)?;
    listener
        .listen(store::notify::CHANNEL)
        .await
        .map_err(StoreError::from)?;
    Ok(listener)
}

/// Listens until the task is aborted, re-subscribing (with backoff) after a lost connection.
pub fn spawn_listener(vault: Arc<Vault>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut first = true;
        loop {
            let mut listener = match subscribe(&vault).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot listen for changes; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            if !first {
                // Changes made while we were not listening were not announced to us.
                vault.drop_caches();
                vault.events().publish_reset("missed_changes");
                if let Err(e) = vault.masters().refresh(&vault.pool).await {
                    tracing::warn!(error = %e, "master key refresh after reconnect failed");
                }
                tracing::info!("listening for changes again; caches dropped");
            }
            first = false;
            vault
                .rotation
                .listener
                .subscriptions
                .fetch_add(1, Ordering::SeqCst);
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        match Notification::parse(n.payload()) {
                            Some(n) => {
                                // Its sender applied it already (right after its commit).
                                if n.origin != vault.rotation.origin {
                                    vault.apply_event(n.event.clone()).await;
                                }
                                // Streams hear of it after this replica's caches dropped it,
                                // so a client that re-reads at once gets the new value.
                                vault.events().publish_change(&n.event);
                            }
                            None => tracing::debug!("ignoring an unknown notification"),
                        }
                        vault
                            .rotation
                            .listener
                            .received
                            .fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(None) | Err(_) => {
                        tracing::warn!(
                            "lost the connection that listens for changes; dropping caches"
                        );
                        vault.drop_caches();
                        vault.events().publish_reset("missed_changes");
                        break;
                    }
                }
            }
        }
    })
}
