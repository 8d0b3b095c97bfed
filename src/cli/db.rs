//! `tenant-vault db grant`: the runtime role's grants (see README, "Database roles").

use crate::app;
use crate::crypto::SecretValue;

#[derive(clap::Subcommand, Debug)]
pub enum DbCmd {
    /// Grant a runtime role what `serve` needs and nothing more: rows of every table (audit
    /// events: insert and select only), the sequences, and the same on tables later
    /// migrations add. Run after `tenant-vault migrate`, as the owner of the tables.
    Grant(GrantCmd),
}

#[derive(clap::Args, Debug)]
pub struct GrantCmd {
    /// The role `serve` connects as (it must exist: `create role NAME login password '...'`).
    #[arg(long, value_name = "NAME")]
    pub runtime_role: String,

    /// Print the SQL instead of running it (for review, or to apply with psql as the owner).
    #[arg(long)]
    pub print: bool,

    /// With --print: the owner of the tables, whose future tables the default privileges
    /// cover. Unset, they cover tables created by whoever runs the printed SQL.
    #[arg(long, value_name = "NAME", requires = "print")]
    pub owner_role: Option<String>,

    /// PostgreSQL URL to apply the grants with (the owner role, or a superuser).
    #[arg(
        long,
        env = "TENANT_VAULT_MIGRATE_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub migrate_database_url: Option<SecretValue>,

    /// Used when TENANT_VAULT_MIGRATE_DATABASE_URL is not set.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<SecretValue>,
}

pub async fn run(cmd: DbCmd) -> anyhow::Result<()> {
    let DbCmd::Grant(cmd) = cmd;
    if cmd.print {
        let sql = app::runtime_grants_sql(&cmd.runtime_role, cmd.owner_role.as_deref())?;
        println!(
            "-- tenant-vault grants for the runtime role {}",
            cmd.runtime_role
        );
        if cmd.owner_role.is_none() {
            println!("-- run as the role that owns the tables and runs migrations");
        }
        for statement in sql {
            println!("{statement};");
        }
        return Ok(());
    }
    // Check the name before connecting anywhere.
    app::runtime_grants_sql(&cmd.runtime_role, None)?;
    let url = cmd
        .migrate_database_url
        .or(cmd.database_url)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "set TENANT_VAULT_MIGRATE_DATABASE_URL (the owner role) or DATABASE_URL, or use --print"
            )
        })?;
    let pool = app::connect(url.expose(), 1)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
    let applied = app::grant_runtime_role(&pool, &cmd.runtime_role).await?;
    pool.close().await;
    println!(
        "granted {} the runtime rights ({} statements); serve with DATABASE_URL as that role",
        cmd.runtime_role,
        applied.len()
    );
    Ok(())
}
