//! Composition root: turns settings into a running vault (pool, master keys, caches, audit
//! writer, Infisical) and serves it until shutdown. The commands in `cli` call this module;
//! it is the only one that builds the HTTP router for serving.
//!
//! By concern: this file builds the vault (`App`, `Parts`); `checkpoints` wires the audit
//! writer's key and checkpoint stores; `settings` turns flags into clients and key sources;
//! `database` connects, migrates and sets up roles; `serve` runs the HTTP server until a
//! signal. Everything public is re-exported here, so callers keep writing `app::parts`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::archive::ArchiveClient;
use crate::audit;
pub use crate::audit::FoundCheckpoint;
use crate::cache::SecretCache;
use crate::config::ServiceArgs;
pub use crate::keys::master::Initialised;
use crate::keys::{InternalKeyPurpose, InternalKeys, MasterKeySource, MasterKeyring};
use crate::service::fallback::SecretFallback;
use crate::service::sync::SyncSettings;
use crate::service::{Limits, Vault};

mod checkpoints;
mod database;
mod serve;
mod settings;

use checkpoints::AuditWiring;
pub use checkpoints::{checkpoint_stores, load_checkpoints, AUDIT_CHECKPOINT_SECRET};
pub use database::{
    connect, create_database_if_missing, ensure_dev_roles, grant_runtime_role, migrate,
    migrate_if_pending, migration_pool, runtime_grants_sql, warn_if_privileged,
};
pub use serve::{build_with_retry, is_transient, serve, shutdown_signal, ServeSettings};
pub use settings::{
    archive_client, infisical_client, initialise_master_key, parts, verify_master_keys,
};

/// A built vault and its background audit writer.
pub struct App {
    pub vault: Arc<Vault>,
    audit_task: tokio::task::JoinHandle<()>,
    background: BackgroundTasks,
}
/// The change listener and the re-encryption worker; aborted when dropped.
#[derive(Default)]
struct BackgroundTasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// What a vault is built from besides the database.
pub struct Parts {
    pub source: Arc<dyn MasterKeySource>,
    pub fallback: Option<Arc<dyn SecretFallback>>,
    /// Infisical sync (webhook, re-check, mode).
    pub sync: SyncSettings,
    /// The cold vault (OpenBao), when configured.
    pub archive: Option<ArchiveClient>,
}

impl Parts {
    pub fn keys_only(source: Arc<dyn MasterKeySource>) -> Self {
        Self {
            source,
            fallback: None,
            sync: SyncSettings::default(),
            archive: None,
        }
    }

    /// Adds the archive (see `archive_client`).
    pub fn with_archive(mut self, archive: Option<ArchiveClient>) -> Self {
        self.archive = archive;
        self
    }
}

impl App {
    /// Loads and verifies the master key, then wires the service together.
    pub async fn build(
        pool: PgPool,
        source: Arc<dyn MasterKeySource>,
        data_dir: &Path,
        service: &ServiceArgs,
    ) -> anyhow::Result<App> {
        Self::build_with(pool, Parts::keys_only(source), data_dir, service).await
    }

    pub async fn build_with(
        pool: PgPool,
        parts: Parts,
        data_dir: &Path,
        service: &ServiceArgs,
    ) -> anyhow::Result<App> {
        let masters = Arc::new(
            MasterKeyring::load(&pool, parts.source.as_ref())
                .await
                .context("refusing to start")?,
        );
        // The audit chain's HMAC key, wrapped by the master key (created on first start).
        let audit_key = InternalKeys::new(pool.clone(), masters.clone())
            .get(InternalKeyPurpose::Audit)
            .await
            .context("cannot load the audit key")?;
        let checkpoints = checkpoint_stores(data_dir, &parts.source);
        let mut app = Self::with_keyring(
            pool,
            masters,
            Some(parts.source),
            data_dir,
            service,
            AuditWiring {
                key: audit_key,
                checkpoints,
            },
        );
        let vault = Arc::get_mut(&mut app.vault).expect("not shared yet");
        vault.set_sync_settings(parts.sync);
        if let Some(fallback) = parts.fallback {
            vault.set_fallback(fallback, Duration::from_secs(service.not_found_cache_secs));
        }
        if let Some(archive) = parts.archive {
            tracing::info!(mount = archive.mount(), "cold vault: OpenBao archive on");
            vault.set_archive(archive);
        }
        // The token key exists from start-up on; creating it gives tokens issued before
        // verifiers existed theirs (see `Vault::token_key`).
        app.vault
            .load_token_key()
            .await
            .context("cannot load the token key")?;
        Ok(app)
    }

    /// Wires the service around an already loaded keyring.
    fn with_keyring(
        pool: PgPool,
        masters: Arc<MasterKeyring>,
        source: Option<Arc<dyn MasterKeySource>>,
        data_dir: &Path,
        service: &ServiceArgs,
        audit: AuditWiring,
    ) -> App {
        let (sink, audit_task) = audit::spawn_writer(
            pool.clone(),
            audit::WriterSettings {
                journal: data_dir.join("audit-journal.jsonl"),
                mode: service.audit.audit_mode,
                key: audit.key,
                checkpoint_every: Duration::from_secs(service.audit.audit_checkpoint_secs),
                checkpoints: audit.checkpoints,
            },
        );
        let cache = SecretCache::with_max_bytes(
            service.cache_ttl_secs,
            service.cache_max_entries,
            service.limits.cache_max_bytes,
        )
        .with_max_stale(
            Duration::from_secs(service.max_stale_secs),
            service.cache_max_entries,
            service.limits.cache_max_bytes,
        );
        let limits = Limits {
            max_value_bytes: service.max_value_bytes as usize,
            data_key_max_encryptions: service.data_key_max_encryptions,
            version_retention: service.version_retention,
            batch_get_max_items: service.client_api.batch_get_max_items as usize,
            token_default_ttl_secs: service.tokens.token_default_ttl_secs,
            token_max_ttl_secs: service.tokens.token_max_ttl_secs,
        };
        let mut vault = Vault::new(
            pool,
            masters,
            source,
            cache,
            sink,
            limits,
            service.cache_max_entries,
        );
        vault.set_limits(&service.limits);
        vault.set_event_settings(crate::service::events::EventSettings::from_args(
            &service.client_api,
        ));
        App {
            vault: Arc::new(vault),
            audit_task,
            background: BackgroundTasks::default(),
        }
    }

    /// Starts what a serving replica runs beside requests: the listener that keeps its
    /// caches in step with the other replicas, and the re-encryption worker. One-shot
    /// commands (`tenant create`, `token create`) do without.
    pub fn start_background(&mut self) {
        if !self.background.0.is_empty() {
            return;
        }
        self.background
            .0
            .push(crate::service::notify::spawn_listener(self.vault.clone()));
        self.background
            .0
            .push(crate::service::reencrypt::spawn_reencryption_worker(
                self.vault.clone(),
            ));
        // Infisical sync: webhook re-reads, and the periodic re-check.
        let sync = [
            crate::service::sync::spawn_sync_worker(self.vault.clone()),
            crate::service::sync::spawn_rechecker(self.vault.clone()),
        ];
        self.background.0.extend(sync.into_iter().flatten());
        if let Some(worker) = crate::service::archive::spawn_archive_worker(self.vault.clone()) {
            self.background.0.push(worker);
        }
    }

    /// Flushes audit events and stops the writer.
    pub async fn shutdown(self) {
        self.vault.audit().flush().await;
        let App {
            vault,
            audit_task,
            background,
        } = self;
        drop(background);
        drop(vault);
        // The writer exits once every sink is gone; don't hang if a clone lingers.
        let _ = tokio::time::timeout(Duration::from_secs(5), audit_task).await;
    }
}
