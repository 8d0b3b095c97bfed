//! `tenant-vault serve`: the production server (see `app::serve`).

use crate::app::{self, ServeSettings};
use crate::config::{
    ArchiveArgs, DatabaseArgs, HttpArgs, InfisicalArgs, KeyArgs, ServiceArgs, TlsArgs,
};

#[derive(clap::Args, Debug)]
pub struct ServeCmd {
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub infisical: InfisicalArgs,
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
        db: cmd.db,
        keys: cmd.keys,
        infisical: cmd.infisical,
        service: cmd.service,
        tls: cmd.tls,
        archive: cmd.archive,
        migrate: !cmd.skip_migrations,
    })
    .await
}
