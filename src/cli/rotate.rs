//! `tenant-vault rotate master-key` and `tenant-vault rotate data-keys`.

use anyhow::Context as _;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};

use super::VaultArgs;
use crate::app::App;
use crate::domain::{TenantId, TenantSlug};
use crate::service::RequestContext;

#[derive(Subcommand, Debug)]
pub enum RotateCmd {
    /// Rotate the master key: the source creates the next version (Infisical:
    /// MASTER_ENCRYPTION_KEY_V2, _V3, ...), then one transaction re-wraps every data key under it.
    /// No secret is re-encrypted. Running servers pick the new version up at once.
    MasterKey {
        #[command(flatten)]
        vault: VaultArgs,
    },
    /// Give tenants new data keys, then move their secrets (and kept versions) to them and
    /// destroy the old keys, showing progress.
    DataKeys {
        /// Rotate this tenant's data key.
        #[arg(
            long,
            value_name = "SLUG",
            conflicts_with = "all",
            required_unless_present = "all"
        )]
        tenant: Option<String>,
        /// Rotate every live tenant's data key.
        #[arg(long)]
        all: bool,
        /// Only rotate; leave the re-encryption to the servers' background job.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        vault: VaultArgs,
    },
}

pub async fn run(cmd: RotateCmd) -> anyhow::Result<()> {
    match cmd {
        RotateCmd::MasterKey { vault } => {
            let app = vault.open().await?;
            let result = app.vault.rotate_master_key(&RequestContext::cli()).await;
            app.shutdown().await;
            let done = result.map_err(|e| anyhow::anyhow!("master key rotation failed: {e}"))?;
            println!("{}", serde_json::to_string(&done)?);
            eprintln!(
                "master key rotated from version {} to {}: {} data keys re-wrapped in {} ms",
                done.previous_version, done.version, done.rewrapped_data_keys, done.elapsed_ms
            );
            Ok(())
        }
        RotateCmd::DataKeys {
            tenant,
            all,
            no_wait,
            vault,
        } => {
            let only = match tenant {
                Some(s) => {
                    Some(TenantSlug::parse(&s).map_err(|e| anyhow::anyhow!("invalid slug: {e}"))?)
                }
                None => {
                    debug_assert!(all);
                    None
                }
            };
            let app = vault.open().await?;
            let result = rotate_data_keys(&app, only, no_wait).await;
            app.shutdown().await;
            result
        }
    }
}

/// Rotates `only` (or every live tenant's) data key, then, unless `no_wait`, re-encrypts.
async fn rotate_data_keys(
    app: &App,
    only: Option<TenantSlug>,
    no_wait: bool,
) -> anyhow::Result<()> {
    let slugs = match only {
        Some(slug) => vec![slug],
        None => app
            .vault
            .live_tenants()
            .await
            .context("cannot list tenants")?,
    };
    let ctx = RequestContext::cli();
    for slug in &slugs {
        let r = app
            .vault
            .rotate_data_key(&ctx, slug)
            .await
            .map_err(|e| anyhow::anyhow!("{slug}: data key rotation failed: {e}"))?;
        eprintln!(
            "{}: data key version {} -> {} ({} ciphertexts to re-encrypt)",
            r.tenant, r.previous_version, r.version, r.to_reencrypt
        );
    }
    if no_wait {
        eprintln!("re-encryption left to the servers' background job (see GET /v1/admin/keys)");
        return Ok(());
    }
    // Everything still under old keys, including work an earlier run left unfinished.
    let mut tenants: Vec<TenantId> = app
        .vault
        .tenants_to_reencrypt()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if slugs.len() == 1 {
        let only = app
            .vault
            .tenant_by_slug(&slugs[0])
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .map(|t| t.id);
        tenants.retain(|t| Some(*t) == only);
    }
    let total = app
        .vault
        .reencryption_remaining(&tenants)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let bar = ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        ProgressStyle::with_template("re-encrypting {bar:40} {pos}/{len} ciphertexts ({eta} left)")
            .expect("valid template"),
    );
    let mut moved = 0;
    for t in &tenants {
        moved += app
            .vault
            .reencrypt_tenant(*t, &|n| bar.inc(n))
            .await
            .map_err(|e| anyhow::anyhow!("re-encryption failed: {e}"))?;
    }
    bar.finish_and_clear();
    println!(
        "{}",
        serde_json::json!({"rotated_tenants": slugs.len(), "reencrypted": moved})
    );
    eprintln!("{moved} ciphertexts re-encrypted; old data keys destroyed");
    Ok(())
}
