//! `tenant-vault dev`: the one-command local vault, like `vault server -dev`. Starts (or
//! reuses) a private PostgreSQL under the data dir unless DATABASE_URL is set, migrates,
//! keeps a dev master key in the data dir, issues an admin token, writes `dev.env`, prints a
//! how-to, and on Ctrl-C stops everything it started. A second run reuses the same data.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::api::HttpSettings;
use crate::app::{self, App};
use crate::config::{SecretString, ServiceArgs};
use crate::keys::DevFileSource;
use crate::pg::{self, ClusterOptions, PgBinaries, PostgresCluster};
use crate::service::RequestContext;
use crate::store;

const DEV_DATABASE: &str = "tenant_vault";

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Where dev mode keeps its PostgreSQL cluster, master key, audit journal and dev.env.
    #[arg(
        long,
        env = "TENANT_VAULT_DEV_DATA_DIR",
        default_value = "./.tenant-vault-dev",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,

    /// Address to listen on.
    #[arg(
        long,
        env = "TENANT_VAULT_LISTEN",
        default_value = "127.0.0.1:8210",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Use this PostgreSQL instead of starting a private one.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<SecretString>,

    #[command(flatten)]
    pub service: ServiceArgs,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;

    let (cluster, database_url) = match &args.database_url {
        Some(url) => (None, url.0.to_string()),
        None => {
            let cluster = start_private_postgres(&data_dir).await?;
            let url = cluster.url(DEV_DATABASE);
            (Some(cluster), url)
        }
    };
    let result = run_with_database(&args, &data_dir, &database_url, cluster.is_some()).await;
    if let Some(cluster) = cluster {
        eprintln!("stopping PostgreSQL");
        if let Err(e) = cluster.stop().await {
            eprintln!("warning: PostgreSQL did not stop cleanly: {e}");
        }
    }
    result
}

async fn start_private_postgres(data_dir: &Path) -> anyhow::Result<PostgresCluster> {
    let binaries = PgBinaries::locate()?;
    let mut dir = data_dir.join("postgres");
    if !pg::postgres_can_reach(&dir) {
        // Running as root in a directory the postgres user cannot enter (under /root, say).
        let alt =
            std::env::temp_dir().join(format!("tenant-vault-dev-{:016x}", path_hash(data_dir)));
        eprintln!(
            "note: the postgres user cannot reach {}, so the dev cluster lives in {}",
            dir.display(),
            alt.display()
        );
        dir = alt;
    }
    eprintln!("starting PostgreSQL in {}", dir.display());
    let cluster = PostgresCluster::start(
        &binaries,
        ClusterOptions {
            dir,
            port: None,
            throwaway: false,
            max_connections: 100,
        },
    )
    .await?;
    create_database_if_missing(&cluster.url("postgres"), DEV_DATABASE).await?;
    Ok(cluster)
}

fn path_hash(p: &Path) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(p.as_os_str().as_encoded_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// `create database` if it does not exist (the name is a constant, never user input).
pub async fn create_database_if_missing(admin_url: &str, name: &str) -> anyhow::Result<()> {
    let pool = store::connect(admin_url, 1).await?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&pool)
            .await?;
    if !exists {
        sqlx::query(&format!("create database \"{name}\""))
            .execute(&pool)
            .await?;
    }
    pool.close().await;
    Ok(())
}

async fn run_with_database(
    args: &DevArgs,
    data_dir: &Path,
    database_url: &str,
    private_pg: bool,
) -> anyhow::Result<()> {
    let pool = store::connect(database_url, 16)
        .await
        .context("cannot connect to PostgreSQL")?;
    store::migrate(&pool).await.context("migration failed")?;
    let source = Arc::new(DevFileSource::new(data_dir.to_path_buf()));
    let app = App::build(pool, source, data_dir, &args.service).await?;

    let env_path = data_dir.join("dev.env");
    let admin_token = match reusable_admin_token(&app, &env_path).await {
        Some(token) => token,
        None => app
            .vault
            .create_token(
                &RequestContext::default(),
                None,
                Some("tenant-vault dev"),
                None,
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the admin token: {e}"))?
            .text
            .to_string(),
    };

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (use --listen)", args.listen))?;
    let addr = format!("http://{}", listener.local_addr()?);
    write_env_file(
        &env_path,
        &[
            ("TENANT_VAULT_ADDR", addr.as_str()),
            ("TENANT_VAULT_ADMIN_TOKEN", admin_token.as_str()),
            ("DATABASE_URL", database_url),
        ],
    )?;
    print_howto(&addr, &env_path, private_pg);

    let http = HttpSettings {
        request_timeout: Duration::from_secs(30),
    };
    app.serve(listener, http, app::shutdown_signal()).await
}

/// The admin token from an earlier run's dev.env, if it still works.
async fn reusable_admin_token(app: &App, env_path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(env_path).ok()?;
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("TENANT_VAULT_ADMIN_TOKEN="))?
        .trim()
        .to_owned();
    let who = app.vault.authenticate(&token).await.ok()?;
    (who.kind == crate::service::PrincipalKind::Admin).then_some(token)
}

/// `NAME=value` lines, readable by `source`, `set -a`, docker's `--env-file` and dotenv.
fn write_env_file(path: &Path, vars: &[(&str, &str)]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut text = String::new();
    for (name, value) in vars {
        text.push_str(&format!("{name}={value}\n"));
    }
    let tmp = path.with_extension("env.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn print_howto(addr: &str, env_path: &Path, private_pg: bool) {
    let env = env_path.display();
    let pg = if private_pg {
        "a private PostgreSQL (stopped with this process)"
    } else {
        "your DATABASE_URL"
    };
    println!(
        r#"
tenant-vault dev is running at {addr}, on {pg}.
Settings for clients are in {env}. In another shell:

  set -a; . {env}; set +a
  curl -s -X POST "$TENANT_VAULT_ADDR/v1/admin/tenants" \
       -H "Authorization: Bearer $TENANT_VAULT_ADMIN_TOKEN" \
       -H 'content-type: application/json' -d '{{"slug":"acme","name":"Acme Inc"}}'
  ACME=$(curl -s -X POST "$TENANT_VAULT_ADDR/v1/admin/tenants/acme/tokens" \
       -H "Authorization: Bearer $TENANT_VAULT_ADMIN_TOKEN" | sed -E 's/.*"token":"([^"]+)".*/\1/')
  curl -s -X PUT "$TENANT_VAULT_ADDR/v1/tenants/acme/secrets/STRIPE_KEY" \
       -H "Authorization: Bearer $ACME" -H 'content-type: application/json' \
       -d '{{"value":"sk_test_123"}}'
  curl -si "$TENANT_VAULT_ADDR/v1/tenants/acme/secrets/STRIPE_KEY" -H "Authorization: Bearer $ACME"

The dev master key is a file in the data dir: dev mode is for development only.
Press Ctrl-C to stop.
"#
    );
}
