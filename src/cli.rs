//! The command line: `serve`, `migrate`, `init`, `dev`, `tenant create`, `token create`,
//! `import infisical`, `infisical-emulator`, `rotate`.

pub mod rotate;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::api::{self, AppState, HttpSettings};
use crate::app::{self, App};
use crate::config::{DatabaseArgs, HttpArgs, InfisicalArgs, KeyArgs, LogArgs, ServiceArgs};
use crate::domain::TenantSlug;
use crate::keys::MasterKeyring;
use crate::service::RequestContext;
use crate::{dev, store, telemetry};

/// Per-tenant encrypted secrets in PostgreSQL, served over HTTP.
///
/// Start here: `tenant-vault dev` runs everything on this machine with one command.
#[derive(Parser, Debug)]
#[command(name = "tenant-vault", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API (production).
    Serve(ServeCmd),
    /// Apply database migrations and exit.
    Migrate(MigrateCmd),
    /// Create the first master key (in Infisical by default) and record it. Run once.
    Init(InitCmd),
    /// One-command local vault: private PostgreSQL, dev master key, admin token, dev.env.
    Dev(dev::DevArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Issue access tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Rotate the master key or tenants' data keys.
    #[command(subcommand)]
    Rotate(rotate::RotateCmd),
    /// Import secrets from elsewhere into the database.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Run the built-in Infisical emulator (for development and tests; in memory).
    InfisicalEmulator(crate::emulator_cmd::EmulatorCmd),
}

#[derive(clap::Args, Debug)]
pub struct InitCmd {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub infisical: InfisicalArgs,
    /// Adopt this existing secret in the master key folder (e.g. MASTER_ENCRYPTION_KEY) as
    /// version 1 instead of creating MASTER_ENCRYPTION_KEY_V1.
    #[arg(long, value_name = "NAME")]
    pub adopt: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ImportCmd {
    /// Copy every secret under /tenants/* in Infisical into the database, creating missing
    /// tenants, then verify counts and values. Safe to re-run; never deletes from Infisical.
    Infisical(crate::import_cmd::ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeCmd {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub infisical: InfisicalArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Do not apply pending migrations at start-up.
    #[arg(long, env = "TENANT_VAULT_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
}

#[derive(clap::Args, Debug)]
pub struct MigrateCmd {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

#[derive(Subcommand, Debug)]
pub enum TenantCmd {
    /// Create a tenant and its first data key.
    Create {
        /// The tenant's slug (its subdomain): a-z, 0-9 and '-', 1 to 63 characters.
        slug: String,
        /// Display name (defaults to the slug).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        infisical: InfisicalArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create a token and print it once. Only its hash is stored.
    Create {
        /// A token for this tenant's secrets.
        #[arg(
            long,
            value_name = "SLUG",
            conflicts_with = "admin",
            required_unless_present = "admin"
        )]
        tenant: Option<String>,
        /// An admin token (manages tenants and tokens; cannot read secrets).
        #[arg(long)]
        admin: bool,
        /// A note stored with the token, e.g. who it is for.
        #[arg(long)]
        description: Option<String>,
        /// Expire the token after this many seconds (default: never).
        #[arg(long, value_name = "SECS")]
        ttl_secs: Option<u64>,
        #[command(flatten)]
        db: DatabaseArgs,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(&cli.log);
    match cli.command {
        Command::Serve(cmd) => serve(cmd).await,
        Command::Migrate(cmd) => {
            let pool = connect(&cmd.db).await?;
            store::migrate(&pool).await.context("migration failed")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Dev(args) => dev::run(args).await,
        Command::Rotate(cmd) => rotate::run(cmd).await,
        Command::Init(cmd) => init(cmd).await,
        Command::Import(ImportCmd::Infisical(args)) => crate::import_cmd::run(args).await,
        Command::InfisicalEmulator(cmd) => crate::emulator_cmd::run(cmd).await,
        Command::Tenant(TenantCmd::Create {
            slug,
            name,
            db,
            keys,
            infisical,
        }) => {
            let slug =
                TenantSlug::parse(&slug).map_err(|e| anyhow::anyhow!("invalid slug: {e}"))?;
            let pool = connect(&db).await?;
            let parts = app::parts(&keys, &infisical)?;
            let app = App::build(pool, parts.source, &keys.data_dir, &default_service()).await?;
            let result = app
                .vault
                .create_tenant(
                    &RequestContext::default(),
                    &slug,
                    name.as_deref().unwrap_or(slug.as_str()),
                )
                .await;
            app.shutdown().await;
            let tenant = result.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created tenant {} ({})", tenant.slug, tenant.id);
            Ok(())
        }
        Command::Token(TokenCmd::Create {
            tenant,
            admin: _,
            description,
            ttl_secs,
            db,
        }) => {
            let tenant = tenant
                .map(|s| TenantSlug::parse(&s).map_err(|e| anyhow::anyhow!("invalid slug: {e}")))
                .transpose()?;
            let pool = connect(&db).await?;
            // Issuing a token wraps no key, so no master key is needed here.
            let keyring = Arc::new(MasterKeyring::from_keys(Vec::new()));
            let app = App::with_keyring(
                pool,
                keyring,
                None,
                std::path::Path::new("."),
                &default_service(),
            );
            let result = app
                .vault
                .create_token(
                    &RequestContext::default(),
                    tenant.as_ref(),
                    description.as_deref(),
                    ttl_secs.map(Duration::from_secs),
                )
                .await;
            app.shutdown().await;
            let issued = result.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", issued.text.as_str());
            eprintln!("token {} created; it is shown only this once", issued.id);
            Ok(())
        }
    }
}

/// Settings for one-shot commands: no cache worth keeping.
pub fn default_service() -> ServiceArgs {
    ServiceArgs {
        cache_ttl_secs: 0,
        cache_max_entries: 1000,
        not_found_cache_secs: 0,
        max_value_bytes: 65_536,
        data_key_max_encryptions: 1 << 31,
        version_retention: 10,
    }
}

pub async fn connect(db: &DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    store::connect(db.database_url.expose(), db.db_max_connections)
        .await
        .context("cannot connect to the database (check DATABASE_URL)")
}

/// Serves at once (`/healthz`, and `/readyz` saying why it is not ready yet), then loads and
/// verifies the master key, retrying while PostgreSQL or Infisical is unreachable. A wrong
/// master key stops the process.
async fn serve(cmd: ServeCmd) -> anyhow::Result<()> {
    // Settings errors are permanent: report them before listening.
    app::parts(&cmd.keys, &cmd.infisical)?;
    let pool = store::connect_lazy(cmd.db.database_url.expose(), cmd.db.db_max_connections)
        .context("invalid DATABASE_URL")?;
    let listener = tokio::net::TcpListener::bind(cmd.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cmd.http.listen))?;
    let http = HttpSettings {
        request_timeout: Duration::from_secs(cmd.http.request_timeout_secs),
    };
    let state = AppState::starting("loading and verifying the master key");
    let router = api::router_with_state(state.clone(), &http, cmd.service.max_value_bytes as usize);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(async move {
        let mut stopped = stopped;
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    tracing::info!(addr = %cmd.http.listen, "tenant-vault listening (not ready until the master key is verified)");

    let build = app::build_with_retry(&state, || async {
        store::ping(&pool)
            .await
            .map_err(|e| anyhow::Error::new(crate::keys::KeyError::Store(e)))?;
        if !cmd.skip_migrations {
            store::migrate(&pool).await.context("migration failed")?;
        }
        let parts = app::parts(&cmd.keys, &cmd.infisical)?;
        App::build_with(pool.clone(), parts, &cmd.keys.data_dir, &cmd.service).await
    });
    let built = tokio::select! {
        built = build => Some(built),
        _ = app::shutdown_signal() => None,
    };
    let mut app = match built {
        Some(Ok(app)) => app,
        Some(Err(err)) => {
            let _ = stop.send(true);
            let _ = server.await;
            return Err(err);
        }
        None => {
            let _ = stop.send(true);
            let _ = server.await;
            return Ok(());
        }
    };
    // The change listener and the re-encryption worker.
    app.start_background();
    state.set_vault(app.vault.clone());
    tracing::info!("tenant-vault ready");
    app::shutdown_signal().await;
    let _ = stop.send(true);
    server
        .await
        .context("HTTP server task failed")?
        .context("HTTP server failed")?;
    app.shutdown().await;
    Ok(())
}

/// `tenant-vault init`: creates (or adopts) master key version 1 and records it.
async fn init(cmd: InitCmd) -> anyhow::Result<()> {
    let pool = connect(&cmd.db).await?;
    store::migrate(&pool).await.context("migration failed")?;
    let existing = store::master_keys::all(&pool).await?;
    if let Some(last) = existing.last() {
        anyhow::bail!(
            "already initialised: master key version {} is recorded (source {}); nothing to do",
            last.version,
            last.source
        );
    }
    let parts = app::parts(&cmd.keys, &cmd.infisical)?;
    let created = match (&cmd.adopt, cmd.keys.master_key_source) {
        (Some(name), crate::config::MasterKeySourceKind::Infisical) => {
            let client = app::infisical_client(&cmd.infisical)?.expect("checked by parts");
            let source =
                crate::keys::InfisicalSource::new(client, &cmd.infisical.master_key_folder)
                    .map_err(|e| anyhow::anyhow!(e))?;
            source
                .adopt(name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
        }
        (Some(_), _) => anyhow::bail!("--adopt needs --master-key-source infisical"),
        (None, _) => parts
            .source
            .create(1)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let name = created.secret_name.clone();
    let recorded = crate::keys::master::record_first(&pool, parts.source.as_ref(), created).await?;
    if !recorded {
        anyhow::bail!("another process initialised the master key at the same time");
    }
    // Prove the round trip: what is recorded loads and verifies.
    MasterKeyring::load(&pool, parts.source.as_ref()).await?;
    println!(
        "master key version 1 initialised in {}{}",
        parts.source.describe(),
        name.map(|n| format!(" as {n}")).unwrap_or_default()
    );
    Ok(())
}
