//! `tenant-vault sync infisical [--tenant SLUG]`: re-reads tenants' Infisical folders now,
//! as the webhook and the periodic re-check do, with a progress bar on a terminal and a
//! summary table (changed, deleted, unchanged, failed). Exit status 1 if any folder failed.

use anyhow::Context as _;
use clap::Subcommand;

use super::{connect, default_service, VaultArgs};
use crate::app::{self, App};
use crate::domain::TenantSlug;
use crate::service::sync::SyncReport;
use crate::service::RequestContext;

#[derive(Subcommand, Debug)]
pub enum SyncCmd {
    /// Re-read every followed tenant folder in Infisical (or one) and apply changes and
    /// deletes to the secrets imported from it.
    Infisical(SyncInfisicalArgs),
}

#[derive(clap::Args, Debug)]
pub struct SyncInfisicalArgs {
    /// Only this tenant's folder (/tenants/SLUG).
    #[arg(long, value_name = "SLUG")]
    pub tenant: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

/// One row of the summary.
struct Row {
    slug: String,
    result: Result<SyncReport, String>,
}

pub async fn run(cmd: SyncCmd) -> anyhow::Result<()> {
    let SyncCmd::Infisical(args) = cmd;
    app::infisical_client(&args.vault.infisical)?.context(
        "sync needs Infisical: set INFISICAL_SITE_URL and the other INFISICAL_* variables",
    )?;
    let only = match &args.tenant {
        Some(raw) => {
            Some(TenantSlug::parse(raw).map_err(|e| anyhow::anyhow!("--tenant: {}", e.0))?)
        }
        None => None,
    };
    let pool = connect(&args.vault.db).await?;
    app::migrate(&pool).await?;
    let mut parts = args.vault.parts()?;
    if parts.fallback.is_none() {
        anyhow::bail!("sync needs the Infisical lookup (TENANT_VAULT_INFISICAL_FALLBACK=true)");
    }
    // A one-shot run: no background re-check.
    parts.sync.recheck = std::time::Duration::ZERO;
    let app = App::build_with(pool, parts, &args.vault.keys.data_dir, &default_service()).await?;
    let rows = sync_all(&app, only).await;
    app.shutdown().await;
    let rows = rows?;
    print_summary(&rows);
    let failed = rows.iter().filter(|r| r.result.is_err()).count();
    if failed > 0 {
        anyhow::bail!("{failed} folder(s) failed; see the table above");
    }
    Ok(())
}

async fn sync_all(app: &App, only: Option<TenantSlug>) -> anyhow::Result<Vec<Row>> {
    let slugs = match only {
        Some(slug) => vec![slug],
        None => app
            .vault
            .synced_tenants()
            .await
            .map_err(|e| anyhow::anyhow!("listing tenants: {e}"))?,
    };
    let bar = super::progress(slugs.len(), "folders");
    let ctx = RequestContext::default();
    let mut rows = Vec::new();
    for slug in slugs {
        bar.set_message(slug.to_string());
        let result = app
            .vault
            .sync_tenant(&ctx, &slug)
            .await
            .map_err(|e| e.to_string());
        rows.push(Row {
            slug: slug.to_string(),
            result,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(rows)
}

fn print_summary(rows: &[Row]) {
    println!(
        "{:<32} {:>8} {:>8} {:>10} {:>7}  status",
        "tenant", "changed", "deleted", "unchanged", "failed"
    );
    let (mut changed, mut deleted, mut unchanged, mut failed) = (0, 0, 0, 0);
    for row in rows {
        match &row.result {
            Ok(r) => {
                let status = r.skipped.unwrap_or("ok");
                println!(
                    "{:<32} {:>8} {:>8} {:>10} {:>7}  {status}",
                    row.slug, r.changed, r.deleted, r.unchanged, 0
                );
                changed += r.changed;
                deleted += r.deleted;
                unchanged += r.unchanged;
            }
            Err(e) => {
                println!(
                    "{:<32} {:>8} {:>8} {:>10} {:>7}  failed: {e}",
                    row.slug, "-", "-", "-", 1
                );
                failed += 1;
            }
        }
    }
    println!(
        "{:<32} {:>8} {:>8} {:>10} {:>7}",
        format!("total ({} folders)", rows.len()),
        changed,
        deleted,
        unchanged,
        failed
    );
}
