//! `tenant-vault archive init`: sets up the cold vault in OpenBao (KV v2 mount, policy,
//! AppRole role) with a root or admin token, and hands over the role id and a secret id,
//! printed or written to files only their owner can read.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::archive::admin::{self, InitRequest};
use crate::archive::server::write_private;
use crate::crypto::SecretValue;

#[derive(clap::Subcommand, Debug)]
pub enum ArchiveCmd {
    /// Create the archive's KV v2 mount, its policy and an AppRole role in OpenBao (needs a
    /// root or admin token); print the role id and a new secret id, or write them to files.
    /// Safe to run again: it updates the policy and role and issues another secret id.
    Init(InitCmd),
}

#[derive(clap::Args, Debug)]
pub struct InitCmd {
    /// OpenBao address.
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_ADDR", value_name = "URL")]
    pub addr: String,

    /// A root or admin token for the set-up (used once, never stored).
    #[arg(long, env = "BAO_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<SecretValue>,

    /// File holding the root or admin token (instead of --token).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// The KV v2 mount to create (or reuse).
    #[arg(
        long,
        env = "TENANT_VAULT_ARCHIVE_MOUNT",
        default_value = "tenant-vault-archive",
        value_name = "PATH"
    )]
    pub mount: String,

    /// Name of the policy (limited to the mount's `tenants/` paths).
    #[arg(long, default_value = "tenant-vault-archive", value_name = "NAME")]
    pub policy: String,

    /// Name of the AppRole role.
    #[arg(long, default_value = "tenant-vault-archive", value_name = "NAME")]
    pub role: String,

    /// Days the archive keeps a version (the mount's `delete_version_after`).
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_RETENTION_DAYS", default_value_t = 1825,
          value_parser = clap::value_parser!(u32).range(1..=36_500), value_name = "DAYS")]
    pub retention_days: u32,

    /// PEM CA certificate(s) to trust for an https:// address.
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_CACERT", value_name = "PEM")]
    pub cacert: Option<PathBuf>,

    /// TTL of the role's tokens (tenant-vault renews them).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=31_536_000), value_name = "SECS")]
    pub token_ttl_secs: u64,

    /// Longest a role token lives through renewals (then tenant-vault logs in again).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..=31_536_000), value_name = "SECS")]
    pub token_max_ttl_secs: u64,

    /// Write the role id to this file (mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub role_id_file: Option<PathBuf>,

    /// Write the secret id to this file (mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub secret_id_file: Option<PathBuf>,
}

pub async fn run(cmd: ArchiveCmd) -> anyhow::Result<()> {
    match cmd {
        ArchiveCmd::Init(cmd) => init(cmd).await,
    }
}

async fn init(cmd: InitCmd) -> anyhow::Result<()> {
    let token = match (&cmd.token, &cmd.token_file) {
        (Some(_), Some(_)) => anyhow::bail!("give --token (BAO_TOKEN) or --token-file, not both"),
        (Some(t), None) => t.clone(),
        (None, Some(path)) => SecretValue::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("--token-file: cannot read {}", path.display()))?
                .trim()
                .to_string(),
        ),
        (None, None) => anyhow::bail!(
            "archive init needs a root or admin token: BAO_TOKEN, --token or --token-file"
        ),
    };
    if cmd.token_max_ttl_secs < cmd.token_ttl_secs {
        anyhow::bail!("--token-max-ttl-secs must be at least --token-ttl-secs");
    }
    let ca_cert_pem = match &cmd.cacert {
        Some(p) => Some(
            std::fs::read(p).with_context(|| format!("--cacert: cannot read {}", p.display()))?,
        ),
        None => None,
    };
    let outcome = admin::init(&InitRequest {
        addr: cmd.addr.clone(),
        token,
        ca_cert_pem,
        mount: cmd.mount.clone(),
        policy: cmd.policy.clone(),
        role: cmd.role.clone(),
        retention: Duration::from_secs(u64::from(cmd.retention_days) * 86_400),
        token_ttl: Duration::from_secs(cmd.token_ttl_secs),
        token_max_ttl: Duration::from_secs(cmd.token_max_ttl_secs),
    })
    .await
    .context("archive init failed")?;
    eprintln!(
        "archive ready: KV v2 mount {} ({}), policy {}, AppRole role {}, retention {} days",
        cmd.mount,
        if outcome.mount_created {
            "created"
        } else {
            "already there"
        },
        cmd.policy,
        cmd.role,
        cmd.retention_days
    );
    match &cmd.role_id_file {
        Some(path) => {
            write_private(path, outcome.role_id.as_bytes()).map_err(anyhow::Error::msg)?;
            eprintln!(
                "role id written to {} (TENANT_VAULT_ARCHIVE_ROLE_ID_FILE)",
                path.display()
            );
        }
        None => println!("TENANT_VAULT_ARCHIVE_ROLE_ID={}", outcome.role_id),
    }
    match &cmd.secret_id_file {
        Some(path) => {
            write_private(path, outcome.secret_id.expose().as_bytes())
                .map_err(anyhow::Error::msg)?;
            eprintln!(
                "secret id written to {} (TENANT_VAULT_ARCHIVE_SECRET_ID_FILE)",
                path.display()
            );
        }
        // Shown once, like a new token.
        None => println!(
            "TENANT_VAULT_ARCHIVE_SECRET_ID={}",
            outcome.secret_id.expose()
        ),
    }
    Ok(())
}
