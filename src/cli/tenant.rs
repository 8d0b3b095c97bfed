//! `tenant-vault tenant create`.

use clap::Subcommand;

use super::VaultArgs;
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
        vault: VaultArgs,
    },
}

pub async fn run(cmd: TenantCmd) -> anyhow::Result<()> {
    let TenantCmd::Create { slug, name, vault } = cmd;
    let slug = TenantSlug::parse(&slug).map_err(|e| anyhow::anyhow!("invalid slug: {e}"))?;
    let app = vault.open().await?;
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
