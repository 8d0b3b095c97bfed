//! `tenant-vault token create`.

use std::time::Duration;

use clap::Subcommand;

use super::{connect, default_service};
use crate::app::App;
use crate::config::DatabaseArgs;
use crate::domain::TenantSlug;
use crate::service::RequestContext;

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

pub async fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    let TokenCmd::Create {
        tenant,
        admin: _,
        description,
        ttl_secs,
        db,
    } = cmd;
    let tenant = tenant
        .map(|s| TenantSlug::parse(&s).map_err(|e| anyhow::anyhow!("invalid slug: {e}")))
        .transpose()?;
    let pool = connect(&db).await?;
    // Issuing a token wraps no key, so no master key is needed here.
    let app = App::without_master_key(pool, &default_service());
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
