//! `tenant-vault infisical-emulator`: the built-in Infisical emulator as a server of its own,
//! for trying the Infisical integration without an Infisical.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

use crate::app;
use crate::infisical::{Emulator, EmulatorConfig, Seed};

#[derive(clap::Args, Debug)]
pub struct EmulatorCmd {
    /// Address to listen on.
    #[arg(
        long,
        env = "TENANT_VAULT_EMULATOR_LISTEN",
        default_value = "127.0.0.1:8211",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Seed file (identities, projects, folders, secrets; see docs/infisical-emulator.md).
    /// Without one, a single machine identity and project are made (see the flags below).
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,

    /// Client id of the default machine identity (without --seed).
    #[arg(long, default_value = "tenant-vault-dev", value_name = "ID")]
    pub client_id: String,

    /// Client secret of the default machine identity (without --seed); random if not given.
    #[arg(
        long,
        env = "TENANT_VAULT_EMULATOR_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub client_secret: Option<String>,

    /// Project id of the default project (without --seed); random if not given.
    #[arg(long, value_name = "ID")]
    pub project_id: Option<String>,
}

pub async fn run(cmd: EmulatorCmd) -> anyhow::Result<()> {
    let (seed, shown) = match &cmd.seed {
        Some(path) => (Seed::from_file(path).map_err(|e| anyhow::anyhow!(e))?, None),
        None => {
            let secret = cmd.client_secret.clone().unwrap_or_else(random_secret);
            let project = cmd
                .project_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            (
                Seed::single(&project, &cmd.client_id, &secret),
                Some((project, secret)),
            )
        }
    };
    let emulator = Emulator::try_new(EmulatorConfig {
        seed,
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let (addr, handle) = emulator
        .spawn(cmd.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cmd.listen))?;
    println!("Infisical emulator listening on http://{addr} (in memory; environments dev, staging, prod)");
    if let Some((project, secret)) = shown {
        println!("INFISICAL_SITE_URL=http://{addr}");
        println!("INFISICAL_CLIENT_ID={}", cmd.client_id);
        println!("INFISICAL_CLIENT_SECRET={secret}");
        println!("INFISICAL_PROJECT_ID={project}");
    }
    println!("Fault switches: PUT http://{addr}/_emulator/faults. Ctrl-C stops it.");
    app::shutdown_signal().await;
    handle.shutdown().await;
    Ok(())
}

/// 32 random bytes, hex: a machine identity secret for dev use.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}
