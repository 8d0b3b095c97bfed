//! `tenant-vault token create`.

use std::time::Duration;

use clap::Subcommand;

use super::{connect, default_service};
use crate::app::{self, App};
use crate::config::{DatabaseArgs, InfisicalArgs, KeyArgs};
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
        /// The master key unwraps the audit key that chains the trail's rows.
        #[command(flatten)]
        keys: KeyArgs,
        #[command(flatten)]
        infisical: InfisicalArgs,
    },
}

pub async fn run(cmd: TokenCmd) -> anyhow::Result<()> {
    let TokenCmd::Create {
        tenant,
        admin: _,
        description,
        ttl_secs,
        db,
        keys,
        infisical,
    } = cmd;
    let tenant = tenant
        .map(|s| TenantSlug::parse(&s).map_err(|e| anyhow::anyhow!("invalid slug: {e}")))
        .transpose()?;
    let pool = connect(&db).await?;
    // Issuing a token wraps no key, but its audit row is chained under the audit key, which
    // the master key unwraps.
    let parts = app::parts(&keys, &infisical)?;
    let app = App::build(pool, parts.source, &keys.data_dir, &default_service()).await?;
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
