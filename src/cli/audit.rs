//! `tenant-vault audit verify` and `tenant-vault audit export` (README, "The audit trail").

use std::io::Write;

use anyhow::Context as _;
use futures::StreamExt;

use super::{connect, default_service};
use crate::app::{self, App};

#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// Check the whole audit trail: every row's chain value (HMAC under the audit key), the
    /// links between rows, and the checkpoints kept outside the database (the data dir's
    /// audit-checkpoint.json; with Infisical, the master key folder). Exits non-zero, naming
    /// the row, on an edited or missing row, a cut tail, a truncated table or a chain
    /// recomputed without the key.
    Verify(AuditTarget),
    /// Write every audit row, oldest first, to stdout.
    Export {
        /// Output format: one JSON object per line.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        #[command(flatten)]
        target: AuditTarget,
    },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ExportFormat {
    Jsonl,
}

/// The database and the key source (the master key unwraps the audit key).
pub type AuditTarget = super::VaultArgs;

pub async fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify(target) => verify(target).await,
        AuditCmd::Export {
            format: ExportFormat::Jsonl,
            target,
        } => export(target).await,
    }
}

async fn open(target: &AuditTarget) -> anyhow::Result<(App, Vec<app::FoundCheckpoint>)> {
    let pool = connect(&target.db).await?;
    let parts = target.parts()?;
    // Read before the table: a checkpoint newer than the rows read would look like a cut.
    let stores = app::checkpoint_stores(&target.keys.data_dir, &parts.source);
    let checkpoints = app::load_checkpoints(&stores).await?;
    let app = App::build(
        pool,
        parts.source,
        &target.keys.data_dir,
        &default_service(),
    )
    .await?;
    Ok((app, checkpoints))
}

async fn verify(target: AuditTarget) -> anyhow::Result<()> {
    let (app, checkpoints) = open(&target).await?;
    if checkpoints.is_empty() {
        eprintln!(
            "warning: no audit checkpoint found in {}; a cut tail or a truncated table cannot be detected without one",
            target.keys.data_dir.display()
        );
    }
    let result = app.vault.verify_audit(&checkpoints).await;
    app.shutdown().await;
    let report = result.context("audit verification FAILED")?;
    println!(
        "audit trail OK: {} rows ({} keyed), last id {}, {} checkpoint(s) matched",
        report.rows,
        report.keyed_rows,
        report
            .last_id
            .map_or_else(|| "-".to_owned(), |id| id.to_string()),
        report.checkpoints_checked
    );
    Ok(())
}

async fn export(target: AuditTarget) -> anyhow::Result<()> {
    let (app, _) = open(&target).await?;
    let result = async {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        let mut rows = app.vault.export_audit();
        let mut n = 0u64;
        while let Some(record) = rows.next().await {
            let record = record.map_err(|e| anyhow::anyhow!("reading the audit table: {e}"))?;
            serde_json::to_writer(&mut out, &record)?;
            out.write_all(b"\n")?;
            n += 1;
        }
        out.flush()?;
        Ok::<_, anyhow::Error>(n)
    }
    .await;
    app.shutdown().await;
    let n = result?;
    eprintln!("exported {n} audit rows");
    Ok(())
}
