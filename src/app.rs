//! Composition root: turns settings into a running vault (pool, master keys, caches, audit
//! writer, Infisical) and serves it until shutdown. The commands in `cli` call this module;
//! it is the only one that builds the HTTP router for serving.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::api::{self, AppState, HttpSettings};
use crate::audit;
use crate::cache::SecretCache;
use crate::config::{
    DatabaseArgs, HttpArgs, InfisicalArgs, KeyArgs, MasterKeySourceKind, ServiceArgs, TlsArgs,
};
use crate::infisical::{InfisicalClient, InfisicalConfig};
use crate::keys::master;
pub use crate::keys::master::Initialised;
use crate::keys::{
    DevFileSource, EnvSource, InfisicalSource, KeyError, MasterKeySource, MasterKeyring,
    SourceError,
};
use crate::service::fallback::{InfisicalFallback, SecretFallback};
use crate::service::sync::SyncSettings;
use crate::service::{Limits, Vault};
use crate::store;
use crate::tls::{ServerTls, TlsListener};

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
}

impl Parts {
    pub fn keys_only(source: Arc<dyn MasterKeySource>) -> Self {
        Self {
            source,
            fallback: None,
            sync: SyncSettings::default(),
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
        let vault = Arc::get_mut(&mut app.vault).expect("not shared yet");
        vault.set_sync_settings(parts.sync);
        if let Some(fallback) = parts.fallback {
            vault.set_fallback(fallback, Duration::from_secs(service.not_found_cache_secs));
        }
        Ok(app)
    }

    /// A vault without master keys, for commands that wrap no key (issuing a token).
    pub fn without_master_key(pool: PgPool, service: &ServiceArgs) -> App {
        let keyring = Arc::new(MasterKeyring::from_keys(Vec::new()));
        Self::with_keyring(pool, keyring, None, Path::new("."), service)
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
        let cache = SecretCache::new(service.cache_ttl_secs, service.cache_max_entries)
            .with_max_stale(
                Duration::from_secs(service.max_stale_secs),
                service.cache_max_entries,
            );
        let limits = Limits {
            max_value_bytes: service.max_value_bytes as usize,
            data_key_max_encryptions: service.data_key_max_encryptions,
            version_retention: service.version_retention,
            batch_get_max_items: service.client_api.batch_get_max_items as usize,
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
    }

    /// Serves HTTP (HTTPS with `tls`) on `listener` until `shutdown` resolves, then drains
    /// requests and flushes the audit trail.
    pub async fn serve(
        mut self,
        listener: TcpListener,
        http: HttpSettings,
        tls: Option<Arc<ServerTls>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.start_background();
        let max_value_bytes = self.vault.limits().max_value_bytes;
        let server = Server::start(
            listener,
            AppState::ready(self.vault.clone()),
            &http,
            max_value_bytes,
            tls,
        );
        shutdown.await;
        // Open event streams would hold up the graceful shutdown.
        self.vault.events().close();
        let served = server.stop().await;
        self.shutdown().await;
        served
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

/// The HTTP server: the router, built once around `state`, served until `stop`.
struct Server {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    fn start(
        listener: TcpListener,
        state: AppState,
        http: &HttpSettings,
        max_value_bytes: usize,
        tls: Option<Arc<ServerTls>>,
    ) -> Self {
        let router = api::router_with_state(state, http, max_value_bytes);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            match tls {
                // The TLS hook: the same server on a listener that yields TLS streams.
                Some(tls) => {
                    axum::serve(TlsListener::new(listener, tls)?, router)
                        .with_graceful_shutdown(stopped)
                        .await
                }
                None => {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(stopped)
                        .await
                }
            }
        });
        Self { stop, task }
    }

    /// Stops accepting, drains the requests in flight, and says how serving ended.
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .context("HTTP server task failed")?
            .context("HTTP server failed")
    }
}

/// What `tenant-vault serve` runs with.
pub struct ServeSettings {
    pub http: HttpArgs,
    pub db: DatabaseArgs,
    pub keys: KeyArgs,
    pub infisical: InfisicalArgs,
    pub service: ServiceArgs,
    pub tls: TlsArgs,
    /// Apply pending migrations at start-up.
    pub migrate: bool,
}

/// Serves at once (`/healthz`, and `/readyz` saying why it is not ready yet), then loads and
/// verifies the master key, retrying while PostgreSQL or Infisical is unreachable. A wrong
/// master key stops the process. Runs until SIGINT or SIGTERM.
pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let ServeSettings {
        http,
        db,
        keys,
        infisical,
        service,
        tls,
        migrate,
    } = settings;
    // Settings errors are permanent: report them before listening.
    parts(&keys, &infisical)?;
    let tls = server_tls(&tls, http.listen)?;
    let pool = store::connect_lazy(db.database_url.expose(), db.db_max_connections)
        .context("invalid DATABASE_URL")?;
    let listener = TcpListener::bind(http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", http.listen))?;
    // The bound address, so `--listen 127.0.0.1:0` logs the port it got.
    let bound = listener.local_addr().unwrap_or(http.listen);
    let state = AppState::starting("loading and verifying the master key");
    let server = Server::start(
        listener,
        state.clone(),
        &HttpSettings {
            request_timeout: Duration::from_secs(http.request_timeout_secs),
        },
        service.max_value_bytes as usize,
        tls.clone(),
    );
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(addr = %bound, scheme, "tenant-vault listening (not ready until the master key is verified)");

    let build = build_with_retry(&state, || async {
        store::ping(&pool)
            .await
            .map_err(|e| anyhow::Error::new(KeyError::Store(e)))?;
        if migrate {
            self::migrate(&pool).await?;
        }
        let parts = parts(&keys, &infisical)?;
        App::build_with(pool.clone(), parts, &keys.data_dir, &service).await
    });
    let built = tokio::select! {
        built = build => Some(built),
        _ = shutdown_signal() => None,
    };
    let mut app = match built {
        Some(Ok(app)) => app,
        Some(Err(err)) => {
            let _ = server.stop().await;
            return Err(err);
        }
        None => {
            let _ = server.stop().await;
            return Ok(());
        }
    };
    // The change listener and the re-encryption worker.
    app.start_background();
    state.set_vault(app.vault.clone());
    tracing::info!("tenant-vault ready");
    shutdown_signal().await;
    app.vault.events().close(); // open event streams would hold up the graceful shutdown
    server.stop().await?;
    app.shutdown().await;
    Ok(())
}

/// The TLS settings `serve` runs with: checked (see `TlsArgs::check`), loaded, reloaded on
/// SIGHUP from here on; `None` for plain HTTP, which the log flags when others can reach it.
fn server_tls(
    args: &TlsArgs,
    listen: std::net::SocketAddr,
) -> anyhow::Result<Option<Arc<ServerTls>>> {
    let Some(files) = args.check(listen)? else {
        if !listen.ip().is_loopback() {
            tracing::warn!(addr = %listen, "--insecure-no-tls: serving plain HTTP on an address other machines can reach; tokens and secrets cross the network in clear unless a TLS-terminating proxy on a private network is in front");
        }
        return Ok(None);
    };
    let tls = ServerTls::load(files)?;
    tls.reload_on_sighup()
        .context("cannot install the SIGHUP handler for TLS reloads")?;
    let files = tls.files();
    tracing::info!(
        cert = %files.cert.display(),
        client_ca = files.client_ca.as_ref().map(|p| p.display().to_string()),
        "TLS on (1.2 and 1.3); SIGHUP reloads the certificate"
    );
    Ok(Some(tls))
}

/// A pool for `url`, connected now (one-shot commands and dev mode).
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    store::connect(url, max_connections).await
}

/// Applies pending migrations.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    store::migrate(pool).await.context("migration failed")
}

/// `create database` if it does not exist (the name is a constant, never user input).
pub async fn create_database_if_missing(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let pool = store::connect(admin_url, 1).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&pool)
            .await?;
    if !exists {
        sqlx::query(&format!("create database \"{name}\""))
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(())
}

/// Master key version 1 for a database that has none (`init`, first `dev` run): created by
/// the configured source, or, with `adopt`, an existing secret in the Infisical master key
/// folder. `infisical` must be the settings `parts` was built from.
pub async fn initialise_master_key(
    pool: &PgPool,
    parts: &Parts,
    infisical: &InfisicalArgs,
    adopt: Option<&str>,
) -> anyhow::Result<Initialised> {
    let source = parts.source.as_ref();
    let first = async {
        let Some(name) = adopt else {
            return source.create(1).await;
        };
        if source.kind() != "infisical" {
            return Err(SourceError::Unsupported(
                "--adopt needs --master-key-source infisical",
            ));
        }
        let client = infisical_client(infisical)
            .map_err(|e| {
                SourceError::Misconfigured(Arc::from(
                    Box::<dyn std::error::Error + Send + Sync>::from(e),
                ))
            })?
            .expect("an Infisical source has a client");
        InfisicalSource::new(client, &infisical.master_key_folder)
            .map_err(|e| SourceError::Misconfigured(Arc::new(e)))?
            .adopt(name)
            .await
    };
    Ok(master::initialise_with(pool, source, first).await?)
}

/// Loads and verifies every recorded master key version, as start-up does.
pub async fn verify_master_keys(pool: &PgPool, parts: &Parts) -> anyhow::Result<()> {
    MasterKeyring::load(pool, parts.source.as_ref()).await?;
    Ok(())
}

/// True for start-up failures that may clear by themselves (a dependency still coming up).
pub fn is_transient(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<KeyError>() {
        Some(KeyError::Source { source, .. }) => source.is_transient(),
        Some(e) if e.is_database_unavailable() => true,
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
    Ok(Parts {
        source,
        fallback,
        sync: infisical.sync.settings(),
    })
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
