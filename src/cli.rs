//! The command line: `serve`, `migrate`, `dev`, `tenant create`, `token create`, `rotate`.

pub mod rotate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::api::HttpSettings;
use crate::app::{self, App};
use crate::config::{DatabaseArgs, HttpArgs, KeyArgs, LogArgs, ServiceArgs};
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
        Command::Tenant(TenantCmd::Create {
            slug,
            name,
            db,
            keys,
        }) => {
            let slug =
                TenantSlug::parse(&slug).map_err(|e| anyhow::anyhow!("invalid slug: {e}"))?;
            let pool = connect(&db).await?;
            let source = app::key_source(&keys)?;
            let app = App::build(pool, source, &keys.data_dir, &default_service()).await?;
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

fn default_service() -> ServiceArgs {
    ServiceArgs {
        cache_ttl_secs: 0,
        cache_max_entries: 1000,
        max_value_bytes: 65_536,
        data_key_max_encryptions: 1 << 31,
        version_retention: 10,
    }
}

async fn connect(db: &DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    store::connect(&db.database_url.0, db.db_max_connections)
        .await
        .context("cannot connect to the database (check DATABASE_URL)")
}

async fn serve(cmd: ServeCmd) -> anyhow::Result<()> {
    let pool = connect(&cmd.db).await?;
    if !cmd.skip_migrations {
        store::migrate(&pool).await.context("migration failed")?;
    }
    let source = app::key_source(&cmd.keys)?;
    let app = App::build(pool, source, &cmd.keys.data_dir, &cmd.service).await?;
    let listener = tokio::net::TcpListener::bind(cmd.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cmd.http.listen))?;
    tracing::info!(addr = %cmd.http.listen, "tenant-vault listening");
    let http = HttpSettings {
        request_timeout: Duration::from_secs(cmd.http.request_timeout_secs),
    };
    app.serve(listener, http, app::shutdown_signal()).await
}

/// The data dir default, shared with `dev`.
pub fn default_dev_dir() -> PathBuf {
    PathBuf::from("./.tenant-vault-dev")
}
