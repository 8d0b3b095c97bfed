//! `tenant-vault tenant create`.

use clap::Subcommand;

use super::{connect, default_service};
use crate::app::{self, App};
use crate::config::{DatabaseArgs, InfisicalArgs, KeyArgs};
use crate::domain::TenantSlug;
use crate::service::RequestContext;

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

pub async fn run(cmd: TenantCmd) -> anyhow::Result<()> {
    let TenantCmd::Create {
        slug,
        name,
        db,
        keys,
        infisical,
    } = cmd;
    let slug = TenantSlug::parse(&slug).map_err(|e| anyhow::anyhow!("invalid slug: {e}"))?;
    let pool = connect(&db).await?;
    let parts = app::parts(&keys, &infisical)?;
    let app = App::build(pool, parts.source, &keys.data_dir, &default_service()).await?;
    let result = app
        .vault
        .create_tenant(
            &RequestContext::cli(),
            &slug,
            name.as_deref().unwrap_or(slug.as_str()),
        )
        .await;
    app.shutdown().await;
    let tenant = result.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created tenant {} ({})", tenant.slug, tenant.id);
    Ok(())
}
