//! `tenant-vault import infisical`: walks `/tenants/*` in Infisical and imports every secret
//! into the database (creating missing tenants), then verifies counts and values. A progress
//! bar on a terminal, a summary table at the end, exit status 1 on any mismatch.

use anyhow::Context as _;

use clap::Subcommand;

use super::{connect, default_service, VaultArgs};
use crate::app::{self, App};
use crate::domain::TenantSlug;
use crate::infisical::{tenant_folder, InfisicalClient};
use crate::service::import::TenantImport;
use crate::service::RequestContext;

#[derive(Subcommand, Debug)]
pub enum ImportCmd {
    /// Copy every secret under /tenants/* in Infisical into the database, creating missing
    /// tenants, then verify counts and values. Safe to re-run; never deletes from Infisical.
    Infisical(ImportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Import only this tenant's folder (/tenants/SLUG).
    #[arg(long, value_name = "SLUG")]
    pub tenant: Option<String>,
    /// Report what would be imported, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub vault: VaultArgs,
}

pub async fn run(cmd: ImportCmd) -> anyhow::Result<()> {
    let ImportCmd::Infisical(args) = cmd;
    let client = app::infisical_client(&args.vault.infisical)?.context(
        "import needs Infisical: set INFISICAL_SITE_URL and the other INFISICAL_* variables",
    )?;
    let pool = connect(&args.vault.db).await?;
    app::migrate_if_pending(&pool).await?;
    let parts = args.vault.parts()?;
    let data_dir = &args.vault.keys.data_dir;
    let app = App::build(pool, parts.source, data_dir, &default_service()).await?;
    let result = import_all(&app, &client, args.tenant.as_deref(), args.dry_run).await;
    app.shutdown().await;
    let reports = result?;
    print_summary(&reports, args.dry_run);
    let failed = reports
        .iter()
        .filter(|r| !args.dry_run && !r.is_clean())
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} tenant(s) did not verify; see the table above");
    }
    Ok(())
}

/// Imports every tenant folder (or one). Returns one report per tenant.
pub async fn import_all(
    app: &App,
    client: &InfisicalClient,
    only: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<Vec<TenantImport>> {
    let folders: Vec<String> = match only {
        Some(slug) => vec![slug.to_owned()],
        None => client
            .list_folders("/tenants")
            .await
            .context("listing /tenants in Infisical")?
            .into_iter()
            .map(|f| f.name)
            .collect(),
    };
    let bar = super::progress(folders.len(), "tenants");
    let ctx = RequestContext::cli();
    let mut reports = Vec::new();
    for name in folders {
        bar.set_message(name.clone());
        let Ok(slug) = TenantSlug::parse(&name) else {
            reports.push(TenantImport {
                slug: name.clone(),
                skipped: vec![("(folder)".into(), "not a valid tenant slug".into())],
                ..Default::default()
            });
            bar.inc(1);
            continue;
        };
        let folder = tenant_folder(&slug);
        let secrets = client
            .list_secrets(&folder)
            .await
            .with_context(|| format!("listing {folder}"))?
            .into_iter()
            .map(crate::service::fallback::remote)
            .collect();
        let report = app
            .vault
            .import_tenant(&ctx, &slug, secrets, dry_run)
            .await
            .map_err(|e| anyhow::anyhow!("importing {slug}: {e}"))?;
        reports.push(report);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(reports)
}

fn print_summary(reports: &[TenantImport], dry_run: bool) {
    println!(
        "{:<32} {:>9} {:>8} {:>8} {:>10} {:>8} {:>9}  status",
        "tenant", "infisical", "created", "updated", "unchanged", "skipped", "verified"
    );
    let mut total = TenantImport::default();
    for r in reports {
        let status = if dry_run {
            if r.created_tenant {
                "dry run (new tenant)"
            } else {
                "dry run"
            }
        } else if r.is_clean() {
            "ok"
        } else {
            "MISMATCH"
        };
        println!(
            "{:<32} {:>9} {:>8} {:>8} {:>10} {:>8} {:>9}  {status}",
            r.slug,
            r.source_count,
            r.created,
            r.updated,
            r.unchanged,
            r.skipped.len(),
            r.verified
        );
        for (key, why) in r.skipped.iter().take(5) {
            println!("    skipped {key}: {why}");
        }
        for key in r.mismatched.iter().take(5) {
            println!("    mismatch {key}");
        }
        total.source_count += r.source_count;
        total.created += r.created;
        total.updated += r.updated;
        total.unchanged += r.unchanged;
        total.verified += r.verified;
        total.skipped.extend(r.skipped.iter().cloned());
    }
    println!(
        "{:<32} {:>9} {:>8} {:>8} {:>10} {:>8} {:>9}",
        format!("total ({} tenants)", reports.len()),
        total.source_count,
        total.created,
        total.updated,
        total.unchanged,
        total.skipped.len(),
        total.verified
    );
}
