//! `tenant-vault init`: creates (or adopts) master key version 1 and records it.

use super::{connect, VaultArgs};
use crate::app::{self, Initialised};

#[derive(clap::Args, Debug)]
pub struct InitCmd {
    #[command(flatten)]
    pub vault: VaultArgs,
    /// Adopt this existing secret in the master key folder (e.g. MASTER_ENCRYPTION_KEY) as
    /// version 1 instead of creating MASTER_ENCRYPTION_KEY_V1.
    #[arg(long, value_name = "NAME")]
    pub adopt: Option<String>,
}

pub async fn run(cmd: InitCmd) -> anyhow::Result<()> {
    let pool = connect(&cmd.vault.db).await?;
    app::migrate_if_pending(&pool).await?;
    let parts = cmd.vault.parts()?;
    let infisical = &cmd.vault.infisical;
    let initialised =
        app::initialise_master_key(&pool, &parts, infisical, cmd.adopt.as_deref()).await?;
    let name = match initialised {
        Initialised::Created { secret_name } => secret_name,
        Initialised::Already { version, source } => anyhow::bail!(
            "already initialised: master key version {version} is recorded (source {source}); \
             nothing to do"
        ),
        Initialised::Raced => {
            anyhow::bail!("another process initialised the master key at the same time")
        }
    };
    // Prove the round trip: what is recorded loads and verifies.
    app::verify_master_keys(&pool, &parts).await?;
    println!(
        "master key version 1 initialised in {}{}",
        parts.source.describe(),
        name.map(|n| format!(" as {n}")).unwrap_or_default()
    );
    Ok(())
}
