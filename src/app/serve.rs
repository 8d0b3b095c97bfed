//! Serving: the HTTP server started before the vault is ready, the retrying build, TLS, and
//! shutdown on a signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::{archive_client, migrate_if_pending, migration_pool, parts, warn_if_privileged, App};
use crate::api::{self, AppState, HttpSettings};
use crate::config::{
    ArchiveArgs, DatabaseArgs, HttpArgs, InfisicalArgs, KeyArgs, ServiceArgs, TlsArgs,
};
use crate::keys::KeyError;
use crate::store;
use crate::tls::ServerTls;

impl App {
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
        let http = with_stream_room(http, self.vault.events().settings().heartbeat);
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
}

/// An event stream is quiet but for its heartbeat: the idle timeout must leave room for two,
/// or it would cut healthy streams.
fn with_stream_room(mut http: HttpSettings, heartbeat: Duration) -> HttpSettings {
    let floor = heartbeat * 2;
    if http.edge.idle_timeout < floor {
        tracing::warn!(
            idle_secs = http.edge.idle_timeout.as_secs(),
            heartbeat_secs = heartbeat.as_secs(),
            "TENANT_VAULT_HTTP_IDLE_TIMEOUT_SECS is below twice the event heartbeat; using twice the heartbeat"
        );
        http.edge.idle_timeout = floor;
    }
    http
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
        let edge = http.edge.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let stopped = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            crate::server::serve(listener, router, tls, edge, stopped).await
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
    pub archive: ArchiveArgs,
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
        archive,
        migrate,
    } = settings;
    // Settings errors are permanent: report them before listening.
    parts(&keys, &infisical)?;
    let archive = archive_client(&archive)?;
    service.tokens.check()?;
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
        &with_stream_room(
            HttpSettings::from_args(&http),
            Duration::from_secs(service.client_api.events_heartbeat_secs),
        ),
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
            match &db.migrate_database_url {
                Some(_) => {
                    let owner = migration_pool(&db).await?;
                    let migrated = migrate_if_pending(&owner).await;
                    owner.close().await;
                    migrated?;
                }
                None => migrate_if_pending(&pool).await?,
            }
        }
        let parts = parts(&keys, &infisical)?.with_archive(archive.clone());
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
    warn_if_privileged(&pool).await;
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
