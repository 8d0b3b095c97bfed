//! Composition root: turns settings into a running vault (pool, master keys, caches, audit
//! writer) and serves it until shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::api::{self, HttpSettings};
use crate::audit;
use crate::cache::SecretCache;
use crate::config::{KeyArgs, MasterKeySourceKind, ServiceArgs};
use crate::keys::{DevFileSource, EnvSource, MasterKeySource, MasterKeyring};
use crate::service::{Limits, Vault};

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

impl App {
    /// Loads and verifies the master key, then wires the service together.
    pub async fn build(
        pool: PgPool,
        source: Arc<dyn MasterKeySource>,
        data_dir: &Path,
        service: &ServiceArgs,
    ) -> anyhow::Result<App> {
        let masters = MasterKeyring::load(&pool, source.as_ref())
            .await
            .context("refusing to start")?;
        Ok(Self::with_keyring(
            pool,
            Arc::new(masters),
            Some(source),
            data_dir,
            service,
        ))
    }

    /// Wires the service around an already loaded keyring.
    pub fn with_keyring(
        pool: PgPool,
        masters: Arc<MasterKeyring>,
        source: Option<Arc<dyn MasterKeySource>>,
        data_dir: &Path,
        service: &ServiceArgs,
    ) -> App {
        let (sink, audit_task) =
            audit::spawn_writer(pool.clone(), data_dir.join("audit-journal.jsonl"));
        let cache = SecretCache::new(service.cache_ttl_secs, service.cache_max_entries);
        let limits = Limits {
            max_value_bytes: service.max_value_bytes as usize,
            data_key_max_encryptions: service.data_key_max_encryptions,
            version_retention: service.version_retention,
        };
        let vault = Vault::new(
            pool,
            masters,
            source,
            cache,
            sink,
            limits,
            service.cache_max_entries,
        );
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
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then drains requests and flushes
    /// the audit trail.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        http: HttpSettings,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.start_background();
        let router = api::router(self.vault.clone(), &http);
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server failed")?;
        self.shutdown().await;
        Ok(())
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

/// The master key source the settings ask for.
pub fn key_source(keys: &KeyArgs) -> anyhow::Result<Arc<dyn MasterKeySource>> {
    match keys.master_key_source {
        MasterKeySourceKind::Env => {
            let key = keys.master_key.clone().context(
                "--master-key-source env needs TENANT_VAULT_MASTER_KEY (32 bytes as hex or base64, \
                 or a passphrase of 16+ characters); `tenant-vault dev` makes one for you",
            )?;
            tracing::info!("master key source: the TENANT_VAULT_MASTER_KEY variable");
            Ok(Arc::new(EnvSource::new(key.0)))
        }
        MasterKeySourceKind::DevFile => {
            tracing::warn!(dir = %keys.data_dir.display(), "master key source: dev key files (not for production)");
            Ok(Arc::new(DevFileSource::new(keys.data_dir.clone())))
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
