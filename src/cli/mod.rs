//! The command line: `serve`, `migrate`, `init`, `dev`, `tenant create`, `token create`,
//! `import infisical`, `infisical-emulator`, `rotate`, `archive init`. A thin layer: each command parses its
//! flags, builds what it needs through `app`, calls the vault's operations, and prints.

pub mod archive;
pub mod audit;
pub mod db;
pub mod dev;
pub mod emulator;
pub mod import;
pub mod init;
pub mod rotate;
pub mod serve;
pub mod sync;
pub mod tenant;
pub mod token;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::{self, App};
use crate::config::{DatabaseArgs, InfisicalArgs, KeyArgs, LogArgs, ServiceArgs};
use crate::telemetry;

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

// Parsed once per process: the size of the largest command's settings does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API (production).
    Serve(serve::ServeCmd),
    /// Apply database migrations and exit.
    Migrate(MigrateCmd),
    /// Create the first master key (in Infisical by default) and record it. Run once.
    Init(init::InitCmd),
    /// One-command local vault: private PostgreSQL, dev master key, admin token, dev.env.
    Dev(dev::DevArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(tenant::TenantCmd),
    /// Issue access tokens.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Rotate the master key or tenants' data keys.
    #[command(subcommand)]
    Rotate(rotate::RotateCmd),
    /// Import secrets from elsewhere into the database.
    #[command(subcommand)]
    Import(import::ImportCmd),
    /// Re-read tenants' Infisical folders now (as webhooks and the re-check do).
    #[command(subcommand)]
    Sync(sync::SyncCmd),
    /// Run the built-in Infisical emulator (for development and tests; in memory).
    InfisicalEmulator(emulator::EmulatorCmd),
    /// The cold vault (OpenBao archive).
    #[command(subcommand)]
    Archive(archive::ArchiveCmd),
    /// Verify or export the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Database roles: the runtime role's grants.
    #[command(subcommand)]
    Db(db::DbCmd),
}

#[derive(clap::Args, Debug)]
pub struct MigrateCmd {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    telemetry::init(&cli.log);
    match cli.command {
        Command::Serve(cmd) => serve::run(cmd).await,
        Command::Migrate(cmd) => {
            let pool = app::migration_pool(&cmd.db).await?;
            app::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Dev(args) => dev::run(args).await,
        Command::Rotate(cmd) => rotate::run(cmd).await,
        Command::Init(cmd) => init::run(cmd).await,
        Command::Import(cmd) => import::run(cmd).await,
        Command::Sync(cmd) => sync::run(cmd).await,
        Command::InfisicalEmulator(cmd) => emulator::run(cmd).await,
        Command::Tenant(cmd) => tenant::run(cmd).await,
        Command::Token(cmd) => token::run(cmd).await,
        Command::Archive(cmd) => archive::run(cmd).await,
        Command::Db(cmd) => db::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
    }
}

/// Settings for one-shot commands: no cache worth keeping.
pub fn default_service() -> ServiceArgs {
    ServiceArgs {
        cache_ttl_secs: 0,
        cache_max_entries: 1000,
        max_stale_secs: 300,
        not_found_cache_secs: 0,
        max_value_bytes: 65_536,
        data_key_max_encryptions: 1 << 31,
        version_retention: 10,
        client_api: Default::default(),
        tokens: Default::default(),
        limits: crate::config::LimitArgs::without_rate_limits(),
        audit: Default::default(),
    }
}

/// The database of a one-shot command, connected now.
/// What a command that opens the vault needs: the database and the master key source (the
/// master key unwraps the audit key that chains every command's audit row, and the token
/// key).
#[derive(clap::Args, Debug)]
pub struct VaultArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub infisical: InfisicalArgs,
}

impl VaultArgs {
    /// The master key source and lookup fallback these settings ask for.
    pub fn parts(&self) -> anyhow::Result<app::Parts> {
        app::parts(&self.keys, &self.infisical)
    }

    /// Connects and builds the vault for a one-shot command (no background tasks).
    pub async fn open(&self) -> anyhow::Result<App> {
        self.open_with(&default_service()).await
    }

    /// `open` with other service settings.
    pub async fn open_with(&self, service: &ServiceArgs) -> anyhow::Result<App> {
        let pool = connect(&self.db).await?;
        let parts = self.parts()?;
        App::build(pool, parts.source, &self.keys.data_dir, service).await
    }
}

/// A progress bar over `len` items named `what`, on stderr when it is a terminal (hidden
/// otherwise, so logs and pipes stay clean).
pub fn progress(len: usize, what: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(len as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} {{msg}} ({{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

pub async fn connect(db: &DatabaseArgs) -> anyhow::Result<sqlx::PgPool> {
    app::connect(db.database_url.expose(), db.db_max_connections)
        .await
        .context("cannot connect to the database (check DATABASE_URL)")
}
