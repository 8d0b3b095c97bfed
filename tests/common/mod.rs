//! Test harness: one PostgreSQL per test process (from DATABASE_URL if set, else a private
//! throwaway cluster from the machine's binaries), a migrated template database, and a fresh
//! database cloned from it for every test. `TestApp` drives the real router in-process.
#![allow(dead_code)]

pub mod archive;
pub mod faults;
pub mod infisical;
pub mod serve;

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use tenant_vault::api::{self, HttpSettings};
use tenant_vault::app::App;
use tenant_vault::config::ServiceArgs;
use tenant_vault::keys::DevFileSource;
use tenant_vault::pg::{ClusterOptions, PgBinaries, PostgresCluster};
use tenant_vault::service::{RequestContext, Vault};
use tower::ServiceExt;

struct Server {
    /// Connection options for the server's `postgres` database.
    admin: PgConnectOptions,
    template: String,
    _cluster: Mutex<Option<PostgresCluster>>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        // Start-up is async; run it on a runtime of its own, on a thread of its own, since
        // the caller is already inside a test's runtime.
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(start_server())
        })
        .join()
        .expect("test PostgreSQL failed to start")
    })
}

async fn start_server() -> Server {
    let (admin, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let opts: PgConnectOptions = url.parse().expect("DATABASE_URL is not a valid URL");
            (opts.database("postgres"), None)
        }
        Err(_) => {
            remove_stale_clusters();
            let dir =
                std::env::temp_dir().join(format!("tenant-vault-test-{}", std::process::id()));
            let binaries = PgBinaries::locate().expect("PostgreSQL binaries");
            let cluster = PostgresCluster::start(
                &binaries,
                ClusterOptions {
                    dir,
                    port: None,
                    throwaway: true,
                    max_connections: 400,
                    ssl: false,
                },
            )
            .await
            .expect("starting the test PostgreSQL");
            let opts: PgConnectOptions = cluster.url("postgres").parse().unwrap();
            (opts, Some(cluster))
        }
    };
    // One template per schema version, migrated once; each test clones it (fast).
    let template = format!("tv_template_{}", migrations_fingerprint());
    let pool = PgPool::connect_with(admin.clone())
        .await
        .expect("connect to test PostgreSQL");
    // The two roles of production (README, "Database roles"): migrations run as the owner,
    // the vault connects as the runtime role with `db grant`'s rights. Roles are per server,
    // so every test process makes sure they exist (race-safe).
    for role in [OWNER_ROLE, RUNTIME_ROLE] {
        let role = tenant_vault::store::roles::RoleName::parse(role).unwrap();
        tenant_vault::store::roles::ensure_login_role(&pool, &role, role.as_str())
            .await
            .expect("creating the test roles");
    }
    if !database_exists(&pool, &template).await {
        let building = format!("{template}_build_{}", std::process::id());
        sqlx::query(&format!("create database {building} owner {OWNER_ROLE}"))
            .execute(&pool)
            .await
            .unwrap();
        let tpool = PgPool::connect_with(as_role(&admin, OWNER_ROLE).database(&building))
            .await
            .unwrap();
        tenant_vault::store::migrate(&tpool)
            .await
            .expect("migrations apply");
        tenant_vault::app::grant_runtime_role(&tpool, RUNTIME_ROLE)
            .await
            .expect("grants apply");
        tpool.close().await;
        // A database in use cannot be renamed, and a backend can outlive its pool's `close`
        // (CI once saw "is being accessed by other users" here): end whatever is still
        // connected to the building database and try again. Another test process may have
        // won the race (a shared DATABASE_URL server); then use theirs.
        let mut tries = 0;
        loop {
            let renamed = sqlx::query(&format!("alter database {building} rename to {template}"))
                .execute(&pool)
                .await;
            let Err(err) = renamed else { break };
            let theirs = database_exists(&pool, &template).await;
            if theirs {
                break;
            }
            let lingering: Vec<String> = sqlx::query_scalar(
                "select format('%s %s (%s): %s', backend_type, pid, application_name, query)
                   from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
            )
            .bind(&building)
            .fetch_all(&pool)
            .await
            .unwrap();
            tries += 1;
            assert!(
                tries < 20,
                "renaming the template database: {err}; still connected: {lingering:?}"
            );
            eprintln!("template rename: {err}; ending {lingering:?}");
            sqlx::query(
                "select pg_terminate_backend(pid) from pg_stat_activity
                  where datname = $1 and pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&pool)
            .await
            .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    pool.close().await;
    Server {
        admin,
        template,
        _cluster: Mutex::new(cluster),
    }
}

async fn database_exists(pool: &PgPool, name: &str) -> bool {
    sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The role that owns the tables (migrations) and the one the vault connects as.
pub const OWNER_ROLE: &str = "tenant_vault_owner";
pub const RUNTIME_ROLE: &str = "tenant_vault_runtime";

/// `opts` logging in as `role` (whose password is its name).
fn as_role(opts: &PgConnectOptions, role: &str) -> PgConnectOptions {
    opts.clone().username(role).password(role)
}

/// `url` (a test database's superuser URL) as `role`.
pub fn url_as(url: &str, role: &str) -> String {
    let opts: PgConnectOptions = url.parse().unwrap();
    as_role(&opts, role).to_url_lossy().to_string()
}

/// A pool on a test database as the runtime role, the way the vault connects.
pub async fn runtime_pool(url: &str) -> PgPool {
    tenant_vault::store::connect(&url_as(url, RUNTIME_ROLE), 10)
        .await
        .expect("connect as the runtime role")
}

fn migrations_fingerprint() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // The template's recipe beyond the migrations: owned by OWNER_ROLE, runtime grants.
    h.update(b"roles-v1");
    for m in tenant_vault::store::MIGRATOR.iter() {
        h.update(&m.checksum);
    }
    hex::encode(&h.finalize()[..6])
}

/// Clusters of earlier test runs whose process is gone.
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name
            .strip_prefix("tenant-vault-test-")
            .and_then(|p| p.parse::<i32>().ok())
        {
            let alive = unsafe { libc::kill(pid, 0) } == 0;
            if !alive {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> (PgPool, String) {
    let server = server();
    let name = format!("tvtest_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect_with(server.admin.clone()).await.unwrap();
    sqlx::query(&format!(
        "create database {name} template {} owner {OWNER_ROLE}",
        server.template
    ))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    let opts = server.admin.clone().database(&name);
    let url = opts.to_url_lossy().to_string();
    let pool = tenant_vault::store::connect(&url, 10).await.unwrap();
    (pool, url)
}

pub fn service_args(cache_ttl_secs: u64) -> ServiceArgs {
    ServiceArgs {
        cache_ttl_secs,
        cache_max_entries: 10_000,
        max_stale_secs: 300,
        not_found_cache_secs: 5,
        max_value_bytes: 65_536,
        data_key_max_encryptions: 1 << 31,
        version_retention: 10,
        client_api: Default::default(),
        tokens: Default::default(),
        limits: tenant_vault::config::LimitArgs::without_rate_limits(),
        audit: Default::default(),
    }
}

/// The real application, in-process, on its own database and data dir.
pub struct TestApp {
    pub router: tenant_vault::api::App,
    pub vault: Arc<Vault>,
    /// A superuser pool on the test database, for checks and tampering.
    pub pool: PgPool,
    /// The pool the vault runs on: the runtime role.
    pub runtime_pool: PgPool,
    pub db_url: String,
    pub admin_token: String,
    pub data_dir: Arc<tempfile::TempDir>,
    service: ServiceArgs,
    /// Set when the app uses Infisical (master key and fallback).
    infisical: Option<tenant_vault::config::InfisicalArgs>,
    _app: App,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl TestResponse {
    /// Reads a whole answer.
    pub async fn read(res: axum::response::Response) -> Self {
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with_service(service_args(60)).await
    }

    pub async fn with_service(service: ServiceArgs) -> Self {
        let (pool, db_url) = fresh_database().await;
        Self::on_database(pool, db_url, service).await
    }

    /// An instance on a database the test prepared (`fresh_database`'s pool and URL).
    pub async fn on_database(pool: PgPool, db_url: String, service: ServiceArgs) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let source = Arc::new(DevFileSource::new(data_dir.path().to_path_buf()));
        let app = App::build(
            runtime_pool(&db_url).await,
            source,
            data_dir.path(),
            &service,
        )
        .await
        .unwrap();
        Self::from_app(app, pool, db_url, Arc::new(data_dir), service).await
    }

    /// The application on a database of the caller's (a private cluster, or one reached
    /// through a proxy), migrated here, with a dev key in a fresh data dir. The vault runs as
    /// that database's superuser: these clusters have no runtime role.
    pub async fn on_own_database(pool: PgPool, db_url: String, service: ServiceArgs) -> Self {
        tenant_vault::store::migrate(&pool)
            .await
            .expect("migrations apply");
        let data_dir = tempfile::tempdir().unwrap();
        let source = Arc::new(DevFileSource::new(data_dir.path().to_path_buf()));
        let app = App::build(pool.clone(), source, data_dir.path(), &service)
            .await
            .unwrap();
        Self::from_app(app, pool, db_url, Arc::new(data_dir), service).await
    }

    /// An instance whose master key comes from `source` (e.g. the env source).
    pub async fn with_source(
        service: ServiceArgs,
        source: Arc<dyn tenant_vault::keys::MasterKeySource>,
    ) -> Self {
        let (pool, db_url) = fresh_database().await;
        let data_dir = tempfile::tempdir().unwrap();
        let app = App::build(
            runtime_pool(&db_url).await,
            source,
            data_dir.path(),
            &service,
        )
        .await
        .unwrap();
        Self::from_app(app, pool, db_url, Arc::new(data_dir), service).await
    }

    /// A request with the admin token.
    pub async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> TestResponse {
        self.call(method, path, Some(&self.admin_token), body).await
    }

    /// A POST with the admin token and no body.
    pub async fn admin_post(&self, path: &str) -> TestResponse {
        self.admin_call(Method::POST, path, None).await
    }

    /// A second instance on the same database and dev key: a restart, or another replica.
    pub async fn another_instance(&self) -> Self {
        if let Some(args) = &self.infisical {
            let parts =
                tenant_vault::app::parts(&infisical_keys(self.data_dir.path()), args).unwrap();
            let app = App::build_with(
                self.runtime_pool.clone(),
                parts,
                self.data_dir.path(),
                &self.service,
            )
            .await
            .unwrap();
            let mut next = Self::from_app(
                app,
                self.pool.clone(),
                self.db_url.clone(),
                self.data_dir.clone(),
                self.service.clone(),
            )
            .await;
            next.infisical = Some(args.clone());
            return next;
        }
        let source = Arc::new(DevFileSource::new(self.data_dir.path().to_path_buf()));
        let app = App::build(
            self.runtime_pool.clone(),
            source,
            self.data_dir.path(),
            &self.service,
        )
        .await
        .unwrap();
        Self::from_app(
            app,
            self.pool.clone(),
            self.db_url.clone(),
            self.data_dir.clone(),
            self.service.clone(),
        )
        .await
    }

    async fn from_app(
        mut app: App,
        pool: PgPool,
        db_url: String,
        data_dir: Arc<tempfile::TempDir>,
        service: ServiceArgs,
    ) -> Self {
        // Like a serving replica: listening for other replicas' changes, re-encrypting.
        app.start_background();
        let vault = app.vault.clone();
        // Listening before the test goes on, so no change made from here on goes unseen.
        eventually("the replica listens for changes", || async {
            vault.listener_stats().0 >= 1
        })
        .await;
        let admin_token = vault
            .create_token(&RequestContext::default(), None, Some("test admin"), None)
            .await
            .unwrap()
            .text
            .to_string();
        let router = api::router(vault.clone(), &HttpSettings::default());
        // The vault's own pool (closing it is the database going away for this instance).
        let runtime_pool = vault.pool().clone();
        Self {
            _app: app,
            router,
            vault,
            pool,
            runtime_pool,
            db_url,
            admin_token,
            data_dir,
            service,
            infisical: None,
        }
    }

    pub async fn raw(&self, req: Request<Body>) -> TestResponse {
        let res = self.router.clone().oneshot(req).await.unwrap();
        TestResponse::read(res).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        self.raw(req).await
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn put_secret(
        &self,
        tenant: &str,
        key: &str,
        token: &str,
        body: Value,
    ) -> TestResponse {
        self.call(
            Method::PUT,
            &format!("/v1/tenants/{tenant}/secrets/{key}"),
            Some(token),
            Some(body),
        )
        .await
    }

    pub async fn get_secret(&self, tenant: &str, key: &str, token: &str) -> TestResponse {
        self.get(&format!("/v1/tenants/{tenant}/secrets/{key}"), token)
            .await
    }

    /// Creates a tenant through the admin API and returns a token for it.
    pub async fn tenant(&self, slug: &str) -> String {
        let res = self
            .call(
                Method::POST,
                "/v1/admin/tenants",
                Some(&self.admin_token),
                Some(serde_json::json!({"slug": slug, "name": slug})),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        self.token_for(slug).await
    }

    pub async fn token_for(&self, slug: &str) -> String {
        let res = self
            .call(
                Method::POST,
                &format!("/v1/admin/tenants/{slug}/tokens"),
                Some(&self.admin_token),
                None,
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.text);
        res.body["token"].as_str().unwrap().to_owned()
    }

    /// Waits for the audit writer to store everything recorded so far.
    pub async fn flush_audit(&self) {
        self.vault.audit().flush().await;
    }

    pub async fn audit_rows(&self) -> Vec<(String, String, Option<String>, Option<String>)> {
        self.flush_audit().await;
        sqlx::query_as(
            "select action, outcome, tenant_slug, secret_key from audit_events order by id",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }
}

/// Polls `check` until it returns true, failing after 20 s. For effects that arrive
/// asynchronously (notifications between replicas); the deadline is only a hang guard.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if check().await {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An in-process Infisical emulator and the settings that reach it.
pub struct TestInfisical {
    pub handle: tenant_vault::infisical::EmulatorHandle,
    pub addr: std::net::SocketAddr,
    pub args: tenant_vault::config::InfisicalArgs,
    pub project: String,
}

pub const ENVIRONMENT: &str = "prod";

impl TestInfisical {
    /// An emulator with one machine identity and project, plus `secrets` as
    /// (folder path, name, value).
    pub async fn start(secrets: &[(&str, &str, &str)]) -> Self {
        use tenant_vault::infisical::{Emulator, EmulatorConfig, Seed};
        let project = uuid::Uuid::new_v4().to_string();
        let mut seed = Seed::single(&project, "test-client", "test-client-secret-0123456789");
        for (path, name, value) in secrets {
            seed = seed.with_secret(&project, ENVIRONMENT, path, name, value);
        }
        let (addr, handle) = Emulator::new(EmulatorConfig {
            seed,
            ..Default::default()
        })
        .spawn("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
        let args = tenant_vault::config::InfisicalArgs {
            infisical_site_url: Some(format!("http://{addr}")),
            infisical_client_id: Some("test-client".into()),
            infisical_client_secret: Some("test-client-secret-0123456789".parse().unwrap()),
            infisical_project_id: Some(project.clone()),
            infisical_environment: ENVIRONMENT.into(),
            master_key_folder: "/tenant-vault".into(),
            infisical_fallback: true,
            infisical_timeout_ms: 1000,
            sync: Default::default(),
        };
        Self {
            handle,
            addr,
            args,
            project,
        }
    }

    pub fn emulator(&self) -> &tenant_vault::infisical::Emulator {
        self.handle.emulator()
    }

    pub fn faults(&self, patch: serde_json::Value) {
        let patch = serde_json::from_value(patch).unwrap();
        self.emulator().patch_faults(patch).unwrap();
    }

    pub fn requests(&self) -> u64 {
        self.emulator().stats().api_requests
    }

    /// A client for the test itself (to read or plant secrets the way a user would).
    pub fn client(&self) -> tenant_vault::infisical::InfisicalClient {
        tenant_vault::app::infisical_client(&self.args)
            .unwrap()
            .unwrap()
    }
}

impl TestApp {
    /// The application with Infisical as master key source (initialised like
    /// `tenant-vault init`) and as the lookup's third step.
    pub async fn with_infisical(infisical: &TestInfisical, service: ServiceArgs) -> Self {
        let (pool, db_url) = fresh_database().await;
        let data_dir = tempfile::tempdir().unwrap();
        let parts =
            tenant_vault::app::parts(&infisical_keys(data_dir.path()), &infisical.args).unwrap();
        let runtime = runtime_pool(&db_url).await;
        tenant_vault::keys::master::initialise(&runtime, parts.source.as_ref())
            .await
            .unwrap();
        let app = App::build_with(runtime, parts, data_dir.path(), &service)
            .await
            .unwrap();
        let mut app = Self::from_app(app, pool, db_url, Arc::new(data_dir), service).await;
        app.infisical = Some(infisical.args.clone());
        app
    }
}

pub fn infisical_keys(data_dir: &std::path::Path) -> tenant_vault::config::KeyArgs {
    tenant_vault::config::KeyArgs {
        master_key_source: tenant_vault::config::MasterKeySourceKind::Infisical,
        master_key: None,
        data_dir: data_dir.to_path_buf(),
    }
}

/// Runs the `tenant-vault` binary with exactly `env` (plus PATH); returns (success, stdout, stderr).
pub fn run_binary(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-vault"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Not the checkout's ./.tenant-vault (audit journal and checkpoint), unless `env` says.
        .env(
            "TENANT_VAULT_DATA_DIR",
            std::env::temp_dir().join(format!("tenant-vault-cli-{}", std::process::id())),
        )
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
