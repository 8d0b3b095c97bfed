//! `tenant-vault serve`: the production server (see `app::serve`).

use super::VaultArgs;
use crate::app::{self, ServeSettings};
use crate::config::{ArchiveArgs, HttpArgs, ServiceArgs, TlsArgs};

#[derive(clap::Args, Debug)]
pub struct ServeCmd {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub vault: VaultArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub archive: ArchiveArgs,
    /// Do not apply pending migrations at start-up.
    #[arg(long, env = "TENANT_VAULT_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
}

pub async fn run(cmd: ServeCmd) -> anyhow::Result<()> {
    app::serve(ServeSettings {
        http: cmd.http,
        db: cmd.vault.db,
        keys: cmd.vault.keys,
        infisical: cmd.vault.infisical,
        service: cmd.service,
        tls: cmd.tls,
        archive: cmd.archive,
        migrate: !cmd.skip_migrations,
    })
    .await
}
