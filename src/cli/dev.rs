//! `tenant-vault dev`: the one-command local vault, like `vault server -dev`. Starts (or
//! reuses) a private PostgreSQL under the data dir unless DATABASE_URL is set, migrates,
//! keeps a dev master key in the data dir, issues an admin token, writes `dev.env`, prints a
//! how-to, and on Ctrl-C stops everything it started. A second run reuses the same data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::api::HttpSettings;
use crate::app::{self, App, Initialised};
use crate::config::ServiceArgs;
use crate::config::{HttpArgs, InfisicalArgs, KeyArgs, MasterKeySourceKind};
use crate::crypto::SecretValue;
use crate::infisical::{Emulator, EmulatorConfig, EmulatorHandle, Seed};
use crate::pg::{self, ClusterOptions, PgBinaries, PostgresCluster};
use crate::service::RequestContext;
use crate::tls::{LocalCa, ServerTls, TlsFiles};

const DEV_DATABASE: &str = "tenant_vault";
/// With its private PostgreSQL, dev mode runs like production: migrations as the owner role,
/// the server as the runtime role with `db grant`'s rights (README, "Database roles").
const DEV_OWNER_ROLE: &str = "tenant_vault_owner";
const DEV_RUNTIME_ROLE: &str = "tenant_vault_runtime";

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

    #[command(flatten)]
    pub http: HttpArgs,

    /// Use this PostgreSQL instead of starting a private one.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: Option<SecretValue>,

    /// Infisical to use. Without INFISICAL_SITE_URL, dev mode starts the built-in emulator
    /// (its data is saved in the data dir between runs).
    #[command(flatten)]
    pub infisical: InfisicalArgs,

    #[command(flatten)]
    pub service: ServiceArgs,

    /// Serve HTTPS with a certificate from a local CA kept in the data dir (`tls/ca.crt`,
    /// created on first use); dev.env then says TENANT_VAULT_CACERT=<that file>.
    #[arg(long, env = "TENANT_VAULT_DEV_TLS")]
    pub tls: bool,

    /// Also run a local OpenBao (the `bao` binary; scripts/install-deps installs it) as the
    /// cold vault, kept in the data dir's `openbao/` with its audit log there; dev.env then
    /// carries the TENANT_VAULT_ARCHIVE_* settings.
    #[arg(long, env = "TENANT_VAULT_DEV_ARCHIVE")]
    pub archive: bool,
}

pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    if !args.tls && !args.http.listen.ip().is_loopback() {
        anyhow::bail!(
            "dev mode serves plain HTTP only on a loopback address, not on {}; add --tls",
            args.http.listen
        );
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;

    let (cluster, database_url) = match &args.database_url {
        Some(url) => (None, url.expose().to_owned()),
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
            ssl: false,
        },
    )
    .await?;
    app::create_database_if_missing(&cluster.url("postgres"), DEV_DATABASE).await?;
    Ok(cluster)
}

fn path_hash(p: &Path) -> u64 {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(p.as_os_str().as_encoded_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

async fn run_with_database(
    args: &DevArgs,
    data_dir: &Path,
    database_url: &str,
    private_pg: bool,
) -> anyhow::Result<()> {
    let (pool, database_url, owner_url) = if private_pg {
        let (runtime_url, owner_url) = dev_roles(database_url).await?;
        let pool = app::connect(&runtime_url, 16)
            .await
            .context("cannot connect to PostgreSQL as the runtime role")?;
        (pool, runtime_url, Some(owner_url))
    } else {
        let pool = app::connect(database_url, 16)
            .await
            .context("cannot connect to PostgreSQL")?;
        app::migrate(&pool).await?;
        app::warn_if_privileged(&pool).await;
        (pool, database_url.to_owned(), None)
    };
    let database_url = database_url.as_str();
    let mut infisical = start_infisical(&args.infisical, data_dir).await?;
    // Dev mode always looks secrets up in Infisical after the database.
    infisical.args.infisical_fallback = true;
    let keys = KeyArgs {
        master_key_source: MasterKeySourceKind::Infisical,
        master_key: None,
        data_dir: data_dir.to_path_buf(),
    };
    let mut archive = match args.archive {
        true => Some(start_archive(data_dir).await?),
        false => None,
    };
    let parts = app::parts(&keys, &infisical.args)?
        .with_archive(archive.as_ref().map(|a| a.client.clone()));
    // First run: create the master key in Infisical, like `tenant-vault init`.
    let initialised = app::initialise_master_key(&pool, &parts, &infisical.args, None).await?;
    if !matches!(initialised, Initialised::Already { .. }) {
        infisical.save_snapshot();
        eprintln!(
            "created master key version 1 in {}",
            parts.source.describe()
        );
    }
    let app = App::build_with(pool, parts, data_dir, &args.service).await?;

    let env_path = data_dir.join("dev.env");
    let admin_token = match reusable_admin_token(&app, &env_path).await {
        Some(token) => token,
        None => app
            .vault
            .create_token(&RequestContext::cli(), None, Some("tenant-vault dev"), None)
            .await
            .map_err(|e| anyhow::anyhow!("cannot create the admin token: {e}"))?
            .text
            .to_string(),
    };

    let listener = tokio::net::TcpListener::bind(args.http.listen)
        .await
        .with_context(|| format!("cannot listen on {} (use --listen)", args.http.listen))?;
    let tls = match args.tls {
        true => Some(dev_tls(data_dir, args.http.listen)?),
        false => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addr = format!("{scheme}://{}", listener.local_addr()?);
    let cacert = tls.as_ref().map(|(_, ca)| ca.display().to_string());
    let mut vars = vec![("TENANT_VAULT_ADDR", addr.as_str())];
    if let Some(ca) = &cacert {
        vars.push(("TENANT_VAULT_CACERT", ca.as_str()));
    }
    if let Some(a) = &archive {
        vars.extend(a.env.iter().map(|(k, v)| (*k, v.as_str())));
    }
    write_env_file(
        &env_path,
        &[
            vars.as_slice(),
            &[
                ("TENANT_VAULT_ADMIN_TOKEN", admin_token.as_str()),
                ("DATABASE_URL", database_url),
                (
                    "TENANT_VAULT_MIGRATE_DATABASE_URL",
                    owner_url.as_deref().unwrap_or(database_url),
                ),
                ("INFISICAL_SITE_URL", infisical.site_url()),
                (
                    "INFISICAL_CLIENT_ID",
                    infisical.args.infisical_client_id.as_deref().unwrap_or(""),
                ),
                (
                    "INFISICAL_CLIENT_SECRET",
                    infisical
                        .args
                        .infisical_client_secret
                        .as_ref()
                        .map(|s| s.expose())
                        .unwrap_or(""),
                ),
                (
                    "INFISICAL_PROJECT_ID",
                    infisical.args.infisical_project_id.as_deref().unwrap_or(""),
                ),
                (
                    "INFISICAL_ENVIRONMENT",
                    infisical.args.infisical_environment.as_str(),
                ),
            ],
        ]
        .concat(),
    )?;
    print_howto(
        &addr,
        &env_path,
        private_pg,
        infisical.emulated(),
        cacert.is_some(),
    );

    let http = HttpSettings::from_args(&args.http);
    let tls = tls.map(|(tls, _)| tls);
    let result = app.serve(listener, http, tls, app::shutdown_signal()).await;
    infisical.stop().await;
    if let Some(a) = archive.as_mut() {
        eprintln!("stopping OpenBao");
        a.bao.stop().await;
    }
    result
}

/// `dev --archive`: the local OpenBao, set up like `tenant-vault archive init` would.
struct DevArchive {
    bao: crate::archive::server::LocalBao,
    client: crate::archive::ArchiveClient,
    env: Vec<(&'static str, String)>,
}

async fn start_archive(data_dir: &Path) -> anyhow::Result<DevArchive> {
    use crate::archive::{admin, server, ArchiveClient, ArchiveConfig};
    let bin = server::locate().map_err(anyhow::Error::msg)?;
    let bao = server::LocalBao::start(&bin, &data_dir.join("openbao"), None)
        .await
        .map_err(anyhow::Error::msg)?;
    let mount = "tenant-vault-archive";
    let outcome = admin::init(&admin::InitRequest {
        addr: bao.url(),
        token: bao.root_token.clone(),
        ca_cert_pem: None,
        mount: mount.into(),
        policy: mount.into(),
        role: mount.into(),
        retention: Duration::from_secs(1825 * 86_400),
        token_ttl: Duration::from_secs(3600),
        token_max_ttl: Duration::from_secs(86_400),
    })
    .await
    .context("setting up the dev archive in OpenBao")?;
    let client = ArchiveClient::new(ArchiveConfig::new(
        &bao.url(),
        mount,
        &outcome.role_id,
        outcome.secret_id.clone(),
    ))?;
    eprintln!(
        "started OpenBao at {} (cold vault; audit log {})",
        bao.url(),
        bao.audit_log.display()
    );
    let env = vec![
        ("TENANT_VAULT_ARCHIVE_ADDR", bao.url()),
        ("TENANT_VAULT_ARCHIVE_MOUNT", mount.to_string()),
        ("TENANT_VAULT_ARCHIVE_ROLE_ID", outcome.role_id.clone()),
        (
            "TENANT_VAULT_ARCHIVE_SECRET_ID",
            outcome.secret_id.expose().to_string(),
        ),
        ("BAO_ADDR", bao.url()),
    ];
    Ok(DevArchive { bao, client, env })
}

/// The private cluster's two roles: creates them if needed, migrates as the owner, grants
/// the runtime role its rights. Returns the runtime and owner URLs.
async fn dev_roles(superuser_url: &str) -> anyhow::Result<(String, String)> {
    let as_role = |role: &str| {
        superuser_url.replacen(
            "postgres://postgres@",
            &format!("postgres://{role}:{role}@"),
            1,
        )
    };
    let admin = app::connect(superuser_url, 1)
        .await
        .context("cannot connect to PostgreSQL")?;
    app::ensure_dev_roles(&admin, DEV_OWNER_ROLE, DEV_RUNTIME_ROLE).await?;
    admin.close().await;
    let owner_url = as_role(DEV_OWNER_ROLE);
    let owner = app::connect(&owner_url, 2)
        .await
        .context("cannot connect to PostgreSQL as the owner role")?;
    app::migrate(&owner).await?;
    app::grant_runtime_role(&owner, DEV_RUNTIME_ROLE).await?;
    owner.close().await;
    Ok((as_role(DEV_RUNTIME_ROLE), owner_url))
}

/// `dev --tls`: the data dir's local CA (created on first use) and a fresh server
/// certificate from it for localhost, 127.0.0.1, ::1 and the listen address. Returns the
/// acceptor and the CA certificate's path (what clients trust).
fn dev_tls(
    data_dir: &Path,
    listen: std::net::SocketAddr,
) -> anyhow::Result<(Arc<ServerTls>, PathBuf)> {
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (ca, created) = LocalCa::load_or_create(&dir, "tenant-vault dev CA")?;
    if created {
        eprintln!("created a local CA for dev TLS in {}", dir.display());
    }
    let ip = listen.ip().to_string();
    let mut names = vec!["localhost", "127.0.0.1", "::1"];
    if !listen.ip().is_unspecified() && !names.contains(&ip.as_str()) {
        names.push(&ip);
    }
    let server = ca.issue_server(&names)?;
    let files = TlsFiles {
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        client_ca: None,
    };
    crate::tls::write_private(&files.key, server.key_pem.as_bytes())?;
    crate::tls::write_file(&files.cert, server.cert_pem.as_bytes(), 0o644)?;
    Ok((ServerTls::load(files)?, dir.join("ca.crt")))
}

/// Infisical for dev mode: the configured one, or the built-in emulator.
struct DevInfisical {
    args: InfisicalArgs,
    emulator: Option<(EmulatorHandle, PathBuf, tokio::task::JoinHandle<()>)>,
}

impl DevInfisical {
    fn site_url(&self) -> &str {
        self.args.infisical_site_url.as_deref().unwrap_or("")
    }

    fn emulated(&self) -> bool {
        self.emulator.is_some()
    }

    /// Saves the emulator's data so the next run (and the master key in it) survives.
    fn save_snapshot(&self) {
        if let Some((handle, path, _)) = &self.emulator {
            save_emulator(handle.emulator(), path);
        }
    }

    async fn stop(self) {
        if let Some((handle, path, saver)) = self.emulator {
            saver.abort();
            save_emulator(handle.emulator(), &path);
            handle.shutdown().await;
        }
    }
}

fn save_emulator(emulator: &Emulator, path: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(&emulator.snapshot()).expect("seed serialises");
    let tmp = path.with_extension("json.tmp");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()))
        .and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not save the Infisical emulator's data");
    }
}

const EMULATOR_CLIENT_ID: &str = "tenant-vault-dev";

async fn start_infisical(args: &InfisicalArgs, data_dir: &Path) -> anyhow::Result<DevInfisical> {
    if args
        .infisical_site_url
        .as_deref()
        .is_some_and(|s| !s.trim().is_empty())
    {
        eprintln!(
            "using Infisical at {}",
            args.infisical_site_url.as_deref().unwrap_or("")
        );
        return Ok(DevInfisical {
            args: args.clone(),
            emulator: None,
        });
    }
    let path = data_dir.join("infisical-emulator.json");
    let seed = if path.exists() {
        Seed::from_file(&path).map_err(|e| anyhow::anyhow!(e))?
    } else {
        let project = uuid::Uuid::new_v4().to_string();
        Seed::single(
            &project,
            EMULATOR_CLIENT_ID,
            &super::emulator::random_secret(),
        )
    };
    let identity = seed
        .identities
        .first()
        .context("the emulator seed has no identity")?;
    let project = seed
        .projects
        .first()
        .context("the emulator seed has no project")?;
    let mut resolved = args.clone();
    resolved.infisical_client_id = Some(identity.client_id.clone());
    resolved.infisical_client_secret = Some(SecretValue::new(identity.client_secret.clone()));
    resolved.infisical_project_id = Some(project.id.clone());
    let emulator = Emulator::try_new(EmulatorConfig {
        seed: seed.clone(),
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    let (addr, handle) = emulator
        .clone()
        .spawn("127.0.0.1:0".parse().expect("valid address"))
        .await
        .context("starting the Infisical emulator")?;
    resolved.infisical_site_url = Some(format!("http://{addr}"));
    eprintln!("started the Infisical emulator at http://{addr}");
    // Save now and then, so a crash loses at most a few seconds of emulator writes.
    let saver = {
        let (emulator, path) = (emulator.clone(), path.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                save_emulator(&emulator, &path);
            }
        })
    };
    Ok(DevInfisical {
        args: resolved,
        emulator: Some((handle, path, saver)),
    })
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

fn print_howto(addr: &str, env_path: &Path, private_pg: bool, emulated: bool, tls: bool) {
    let env = env_path.display();
    let pg = if private_pg {
        "a private PostgreSQL (stopped with this process)"
    } else {
        "your DATABASE_URL"
    };
    let infisical = if emulated {
        "the built-in Infisical emulator (saved in the data dir)"
    } else {
        "your Infisical"
    };
    // With --tls, curl trusts the dev CA named in dev.env.
    let curl = if tls {
        r#"curl --cacert "$TENANT_VAULT_CACERT""#
    } else {
        "curl"
    };
    let console = crate::api::console::console_url(addr);
    println!(
        r#"
tenant-vault dev is running at {addr}, on {pg} and {infisical}.
console: {console}  (sign in with TENANT_VAULT_ADMIN_TOKEN from {env})
Settings for clients are in {env}. In another shell:

  set -a; . {env}; set +a
  {curl} -s -X POST "$TENANT_VAULT_ADDR/v1/admin/tenants" \
       -H "Authorization: Bearer $TENANT_VAULT_ADMIN_TOKEN" \
       -H 'content-type: application/json' -d '{{"slug":"acme","name":"Acme Inc"}}'
  ACME=$({curl} -s -X POST "$TENANT_VAULT_ADDR/v1/admin/tenants/acme/tokens" \
       -H "Authorization: Bearer $TENANT_VAULT_ADMIN_TOKEN" | sed -E 's/.*"token":"([^"]+)".*/\1/')
  {curl} -s -X PUT "$TENANT_VAULT_ADDR/v1/tenants/acme/secrets/STRIPE_KEY" \
       -H "Authorization: Bearer $ACME" -H 'content-type: application/json' \
       -d '{{"value":"sk_test_123"}}'
  {curl} -si "$TENANT_VAULT_ADDR/v1/tenants/acme/secrets/STRIPE_KEY" -H "Authorization: Bearer $ACME"

Secrets not in the database are looked up in Infisical under /tenants/<tenant>/ (see the
README for putting one there with Infisical's API). Press Ctrl-C to stop.
"#
    );
}
