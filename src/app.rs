//! Composition root: turns settings into a running vault (pool, master keys, caches, audit
//! writer, Infisical) and serves it until shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::api::{self, AppState, HttpSettings};
use crate::audit;
use crate::cache::SecretCache;
use crate::config::{InfisicalArgs, KeyArgs, MasterKeySourceKind, ServiceArgs};
use crate::infisical::{InfisicalClient, InfisicalConfig};
use crate::keys::{
    DevFileSource, EnvSource, InfisicalSource, KeyError, MasterKeySource, MasterKeyring,
};
use crate::service::fallback::{InfisicalFallback, SecretFallback};
use crate::service::{Limits, Vault};
use crate::store::StoreError;

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
}

impl Parts {
    pub fn keys_only(source: Arc<dyn MasterKeySource>) -> Self {
        Self {
            source,
            fallback: None,
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
        Self::build_with(pool, Parts::keys_only(source), data_dir, service).await
    }

    pub async fn build_with(
        pool: PgPool,
        parts: Parts,
        data_dir: &Path,
        service: &ServiceArgs,
    ) -> anyhow::Result<App> {
        let masters = MasterKeyring::load(&pool, parts.source.as_ref())
            .await
            .context("refusing to start")?;
        let mut app = Self::with_keyring(
            pool,
            Arc::new(masters),
            Some(parts.source),
            data_dir,
            service,
        );
        if let Some(fallback) = parts.fallback {
            let vault = Arc::get_mut(&mut app.vault).expect("not shared yet");
            vault.set_fallback(fallback, Duration::from_secs(service.not_found_cache_secs));
        }
        Ok(app)
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

/// True for start-up failures that may clear by themselves (a dependency still coming up).
pub fn is_transient(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<KeyError>() {
        Some(KeyError::Source { transient, .. }) => *transient,
        Some(KeyError::Store(StoreError::Unavailable(_))) => true,
        _ => false,
    }
}

/// Builds the vault, retrying with backoff while a dependency (Infisical, PostgreSQL) is
/// unreachable and reporting why through `state` (so `/readyz` can say). A wrong master key
/// or any other permanent problem ends the retries at once.
pub async fn build_with_retry<F, Fut>(state: &AppState, mut build: F) -> anyhow::Result<App>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<App>>,
{
    let mut delay = Duration::from_millis(500);
    loop {
        match build().await {
            Ok(app) => return Ok(app),
            Err(err) if is_transient(&err) => {
                let why = format!("{err:#}");
                tracing::warn!(error = %why, retry_in_ms = delay.as_millis() as u64, "not ready; retrying");
                state.set_starting(format!("waiting for a dependency: {why}"));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(err) => return Err(err),
        }
    }
}

/// An Infisical client when INFISICAL_SITE_URL is set; a clear error if it is half set.
pub fn infisical_client(args: &InfisicalArgs) -> anyhow::Result<Option<InfisicalClient>> {
    let Some(site) = args
        .infisical_site_url
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    else {
        return Ok(None);
    };
    let missing = |name: &str| anyhow::anyhow!("INFISICAL_SITE_URL is set but {name} is not");
    let client_id = args
        .infisical_client_id
        .clone()
        .ok_or_else(|| missing("INFISICAL_CLIENT_ID"))?;
    let secret = args
        .infisical_client_secret
        .clone()
        .ok_or_else(|| missing("INFISICAL_CLIENT_SECRET"))?;
    let project = args
        .infisical_project_id
        .clone()
        .ok_or_else(|| missing("INFISICAL_PROJECT_ID"))?;
    let mut config = InfisicalConfig::new(
        site,
        client_id,
        secret.expose().to_owned(),
        project,
        &args.infisical_environment,
    );
    config.request_timeout = Duration::from_millis(args.infisical_timeout_ms);
    Ok(Some(
        InfisicalClient::new(config).context("invalid Infisical settings")?,
    ))
}

/// The master key source the settings ask for, and the lookup fallback if configured.
pub fn parts(keys: &KeyArgs, infisical: &InfisicalArgs) -> anyhow::Result<Parts> {
    let client = infisical_client(infisical)?;
    let source: Arc<dyn MasterKeySource> = match keys.master_key_source {
        MasterKeySourceKind::Infisical => {
            let client = client.clone().context(
                "the master key source is Infisical (the default) but INFISICAL_SITE_URL is not \
                 set; set the INFISICAL_* variables, or choose --master-key-source env with \
                 TENANT_VAULT_MASTER_KEY",
            )?;
            let source = InfisicalSource::new(client, &infisical.master_key_folder)
                .map_err(|e| anyhow::anyhow!(e))?;
            tracing::info!(folder = source.folder(), "master key source: Infisical");
            Arc::new(source)
        }
        MasterKeySourceKind::Env => {
            let key = keys.master_key.clone().context(
                "--master-key-source env needs TENANT_VAULT_MASTER_KEY (32 bytes as hex or base64, \
                 or a passphrase of 16+ characters); `tenant-vault dev` makes one for you",
            )?;
            tracing::warn!("master key source: the TENANT_VAULT_MASTER_KEY variable (explicitly configured fallback; it cannot rotate)");
            Arc::new(EnvSource::new(key.into_zeroizing()))
        }
        MasterKeySourceKind::DevFile => {
            tracing::warn!(dir = %keys.data_dir.display(), "master key source: dev key files (not for production)");
            Arc::new(DevFileSource::new(keys.data_dir.clone()))
        }
    };
    let fallback = match client {
        Some(client) if infisical.infisical_fallback => {
            Some(Arc::new(InfisicalFallback::new(client)) as Arc<dyn SecretFallback>)
        }
        _ => None,
    };
    Ok(Parts { source, fallback })
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
