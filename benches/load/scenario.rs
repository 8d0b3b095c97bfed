//! The run: infrastructure, seeding, each sweep point's phases, and the report.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hyper::header::HeaderValue;
use hyper::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tenant_vault::infisical::emulator::{Emulator, EmulatorConfig, FaultsPatch, Seed};
use tenant_vault::pg::{ClusterOptions, PgBinaries, PostgresCluster};

use crate::ceiling::CeilingMap;
use crate::client::{self, bearer, PhaseStats, Req, Workload};
use crate::openbao::{self, Bao, Storage};
use crate::procs::{self, Service, ServiceSpec};
use crate::report;
use crate::{Args, SWEEP_PHASES};

const PROJECT_ID: &str = "7d5e2b9c-0000-4000-8000-00000000be4c";
const CLIENT_ID: &str = "tenant-vault-bench";
const CLIENT_SECRET: &str = "bench-client-secret";
const INFISICAL_ENV: &str = "dev";
/// Emulator latency for the `infisical` phase: a realistic round trip to a hosted Infisical.
const INFISICAL_LATENCY_MS: u64 = 20;

const KEY_NAMES: &[&str] = &[
    "STRIPE_SECRET_KEY",
    "SENDGRID_API_KEY",
    "DATABASE_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "GITHUB_TOKEN",
    "SLACK_WEBHOOK_URL",
    "TWILIO_AUTH_TOKEN",
    "OPENAI_API_KEY",
    "JWT_SIGNING_SECRET",
    "SMTP_PASSWORD",
];

fn key_name(j: usize) -> String {
    match KEY_NAMES.get(j) {
        Some(k) => (*k).to_string(),
        None => format!("SERVICE_{j:04}_API_KEY"),
    }
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// A realistic secret value: 40 to 200 URL-safe characters (API keys, passwords, URLs).
fn random_value(rng: &mut impl Rng) -> String {
    let len = rng.gen_range(40..=200);
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn slug(i: usize) -> String {
    format!("t{i:05}")
}

pub struct Tenant {
    pub slug: String,
    pub token: String,
    pub auth: HeaderValue,
    pub values: Vec<String>,
}

/// One tenant count's data.
pub struct Dataset {
    pub tenants: Vec<Tenant>,
    pub keys: Vec<String>,
}

/// Which server a read workload talks to: the same tenants and keys, each server's own
/// path and token.
#[derive(Clone)]
enum Api {
    TenantVault,
    /// OpenBao KV v2, with each tenant's OpenBao token (in `Dataset::tenants` order).
    OpenBao(Arc<Vec<HeaderValue>>),
}

impl Api {
    fn get(&self, data: &Dataset, t: usize, k: usize, expect: Option<&'static str>) -> Req {
        let tenant = &data.tenants[t];
        let (path, auth) = match self {
            Api::TenantVault => (
                format!("/v1/tenants/{}/secrets/{}", tenant.slug, data.keys[k]),
                tenant.auth.clone(),
            ),
            Api::OpenBao(auth) => (
                crate::openbao::kv_path(&tenant.slug, &data.keys[k]),
                auth[t].clone(),
            ),
        };
        Req {
            method: Method::GET,
            path,
            auth,
            body: None,
            expect_source: expect,
        }
    }
}

/// A rotation's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Rotation {
    pub client_ms: f64,
    pub server_elapsed_ms: Option<f64>,
    pub rewrapped_data_keys: Option<u64>,
    pub previous_version: Option<i64>,
    pub version: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub name: String,
    /// ok | skipped | failed
    pub status: String,
    pub note: Option<String>,
    pub stats: Option<PhaseStats>,
    pub rotation: Option<Rotation>,
}

impl PhaseResult {
    fn ok(name: &str, stats: PhaseStats) -> Self {
        Self {
            name: name.into(),
            status: "ok".into(),
            note: None,
            stats: Some(stats),
            rotation: None,
        }
    }
    fn skipped(name: &str, why: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: "skipped".into(),
            note: Some(why.into()),
            stats: None,
            rotation: None,
        }
    }
    fn failed(name: &str, why: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            status: "failed".into(),
            note: Some(why.into()),
            stats: None,
            rotation: None,
        }
    }
    pub fn errors(&self) -> u64 {
        let stats = self.stats.as_ref().map_or(0, |s| s.errors);
        stats + u64::from(self.status == "failed")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PointResult {
    pub tenants: usize,
    pub secrets_per_tenant: usize,
    /// all | sweep | rotate-only
    pub kind: String,
    pub seed_s: f64,
    pub seed_requests: u64,
    pub warm_s: f64,
    /// Peak RSS (VmHWM) of the caching service right after every key was warmed, KiB.
    pub service_rss_after_warm_kib: Option<u64>,
    /// Peak RSS over the whole point, read just before the service is stopped, KiB.
    pub service_rss_peak_kib: Option<u64>,
    /// The OpenBao servers of `--compare openbao`, how they were loaded and their memory.
    pub openbao: Vec<OpenBaoRun>,
    pub phases: Vec<PhaseResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OpenBaoRun {
    /// The phase it served.
    pub phase: String,
    /// inmem | postgresql
    pub storage: String,
    /// OpenBao's read cache in front of its storage (`disable_cache = false`).
    pub cache: bool,
    /// Loading policies, tokens and secrets (0 when it reused the storage of the one before).
    pub load_s: f64,
    pub load_requests: u64,
    pub warm_s: f64,
    /// Peak RSS (VmHWM) of the `bao` process, read just before it was stopped, KiB.
    pub rss_peak_kib: Option<u64>,
}

impl PointResult {
    pub fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.name == name)
    }
    pub fn stats(&self, name: &str) -> Option<&PhaseStats> {
        self.phase(name).and_then(|p| p.stats.as_ref())
    }
}

/// The emulator on its own thread and current-thread runtime, so serving it never competes
/// with the load generator's workers.
struct EmulatorThread {
    addr: SocketAddr,
    emulator: Emulator,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl EmulatorThread {
    fn start() -> Result<Self, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let join = std::thread::Builder::new()
            .name("infisical-emulator".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let seed = Seed::single(PROJECT_ID, CLIENT_ID, CLIENT_SECRET);
                    let emulator = Emulator::new(EmulatorConfig {
                        seed,
                        ..Default::default()
                    });
                    match emulator.spawn("127.0.0.1:0".parse().unwrap()).await {
                        Ok((addr, handle)) => {
                            let _ = tx.send(Ok((addr, handle.emulator().clone())));
                            let _ = stop_rx.await;
                            handle.shutdown().await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        let (addr, emulator) = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| format!("emulator did not start: {e}"))??;
        Ok(Self {
            addr,
            emulator,
            stop: Some(stop_tx),
            join: Some(join),
        })
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("INFISICAL_SITE_URL".into(), format!("http://{}", self.addr)),
            ("INFISICAL_CLIENT_ID".into(), CLIENT_ID.into()),
            ("INFISICAL_CLIENT_SECRET".into(), CLIENT_SECRET.into()),
            ("INFISICAL_PROJECT_ID".into(), PROJECT_ID.into()),
            ("INFISICAL_ENVIRONMENT".into(), INFISICAL_ENV.into()),
        ]
    }

    fn set_latency(&self, ms: u64) {
        let _ = self.emulator.patch_faults(FaultsPatch {
            latency_ms: Some(ms),
            ..Default::default()
        });
    }
}

impl Drop for EmulatorThread {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// PostgreSQL: ours (private, throwaway) or the one `DATABASE_URL` names.
struct Database {
    cluster: Option<PostgresCluster>,
    /// URL of the maintenance database; points are created beside it.
    admin_url: String,
}

impl Database {
    async fn start(work: &Path) -> Result<Self, String> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            println!("using the PostgreSQL in DATABASE_URL (databases tv_bench_* are created there and dropped after)");
            return Ok(Self {
                cluster: None,
                admin_url: url,
            });
        }
        let bins = PgBinaries::locate().map_err(|e| e.to_string())?;
        let mut dir = work.join("pg");
        if !tenant_vault::pg::postgres_can_reach(&dir) {
            dir =
                std::env::temp_dir().join(format!("tenant-vault-bench-pg-{}", std::process::id()));
        }
        let cluster = PostgresCluster::start(
            &bins,
            ClusterOptions {
                dir,
                port: None,
                throwaway: true,
                max_connections: 200,
                ssl: false,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        let admin_url = cluster.url("postgres");
        Ok(Self {
            cluster: Some(cluster),
            admin_url,
        })
    }

    fn url(&self, db: &str) -> String {
        let mut u = self.admin_url.clone();
        // Replace the path's database name, keep any query string.
        let (base, query) = match u.split_once('?') {
            Some((b, q)) => (b.to_string(), Some(q.to_string())),
            None => (u.clone(), None),
        };
        let cut = base
            .rfind('/')
            .filter(|&i| i > "postgres://".len())
            .unwrap_or(base.len());
        u = format!("{}/{db}", &base[..cut]);
        if let Some(q) = query {
            u = format!("{u}?{q}");
        }
        u
    }

    async fn create(&self, name: &str) -> Result<String, String> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin_url)
            .await
            .map_err(|e| format!("connecting to PostgreSQL: {e}"))?;
        let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
            .execute(&pool)
            .await;
        sqlx::query(&format!("create database {name}"))
            .execute(&pool)
            .await
            .map_err(|e| format!("create database {name}: {e}"))?;
        pool.close().await;
        Ok(self.url(name))
    }

    async fn drop_db(&self, name: &str) {
        if let Ok(pool) = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin_url)
            .await
        {
            let _ = sqlx::query(&format!("drop database if exists {name} with (force)"))
                .execute(&pool)
                .await;
            pool.close().await;
        }
    }

    async fn version(&self) -> Option<String> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin_url)
            .await
            .ok()?;
        let v: Option<String> = sqlx::query_scalar("show server_version")
            .fetch_one(&pool)
            .await
            .ok();
        pool.close().await;
        v
    }

    async fn stop(self) {
        if let Some(c) = self.cluster {
            if let Err(e) = c.stop().await {
                eprintln!("stopping PostgreSQL: {e}");
            }
        }
    }
}

/// Everything shared by the points of one run.
struct Ctx {
    args: Args,
    binary: PathBuf,
    /// The `bao` binary, when the run compares with OpenBao.
    bao_bin: Option<PathBuf>,
    work: PathBuf,
    db: Database,
    emulator: EmulatorThread,
    http: reqwest::Client,
}

fn target_dir() -> PathBuf {
    // <target>/release/deps/load-<hash>
    std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// The release tenant-vault binary: `TENANT_VAULT_BENCH_BINARY`, else the one cargo built
/// for this bench, else `target/release/tenant-vault`, built now if missing.
fn service_binary() -> Result<PathBuf, String> {
    // Another build to measure (e.g. a branch built elsewhere).
    if let Some(p) = std::env::var_os("TENANT_VAULT_BENCH_BINARY") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "TENANT_VAULT_BENCH_BINARY: {} is not a file",
                p.display()
            ))
        };
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_tenant-vault") {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target dir")?
        .to_path_buf();
    let candidate = release.join("tenant-vault");
    if !candidate.is_file() {
        println!(
            "building the release tenant-vault binary (cargo build --release --bin tenant-vault)"
        );
        let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
            .args(["build", "--release", "--bin", "tenant-vault"])
            .env("CARGO_TARGET_DIR", target_dir())
            .status()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() || !candidate.is_file() {
            return Err(format!("could not build {}", candidate.display()));
        }
    }
    Ok(candidate)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `work-<pid>` dirs of earlier runs whose process is gone (killed with SIGKILL).
fn remove_stale_work_dirs(out_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(out_dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("work-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub async fn run(args: Args) -> Result<bool, String> {
    let started = Instant::now();
    let target = target_dir();
    let out_dir = args.out_dir.clone().unwrap_or_else(|| target.join("bench"));
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    remove_stale_work_dirs(&out_dir);
    let work = out_dir.join(format!("work-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    // Removed however the run ends (error, panic, Ctrl-C), after everything else is dropped.
    let _work_guard = RemoveOnDrop(work.clone());
    let binary = service_binary()?;
    // Before anything starts: a missing `bao` fails here, with what to do about it.
    let bao_bin = if args.compare_openbao {
        Some(openbao::locate()?)
    } else {
        None
    };
    let mut machine = report::machine_facts();
    if let Some(bin) = &bao_bin {
        machine["openbao"] = json!(openbao::version(bin));
    }
    println!(
        "tenant-vault load bench: {} | {} cores, {}, {} GiB",
        args.command_line,
        machine["cores"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["memory_gib"]
    );

    let db = Database::start(&work).await?;
    let emulator = EmulatorThread::start()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| e.to_string())?;
    let pg_version = db.version().await;
    let ctx = Ctx {
        args: args.clone(),
        binary,
        bao_bin,
        work: work.clone(),
        db,
        emulator,
        http,
    };

    // Points: the sweep plus --tenants; every phase at --tenants, the sweep phases elsewhere;
    // and rotation once more at the smallest count with 10x the secrets per tenant.
    let mut counts: Vec<usize> = ctx.args.sweep.clone();
    counts.push(ctx.args.tenants);
    counts.sort_unstable();
    counts.dedup();
    let mut plan: Vec<(usize, usize, &str)> = Vec::new();
    for &n in &counts {
        let kind = if n == ctx.args.tenants {
            "all"
        } else {
            "sweep"
        };
        plan.push((n, ctx.args.secrets_per_tenant, kind));
    }
    if ctx.args.sweep.len() > 1 && ctx.args.phases.contains("rotate") {
        plan.insert(
            1,
            (counts[0], ctx.args.secrets_per_tenant * 10, "rotate-only"),
        );
    }

    let mut points = Vec::new();
    let mut failure = None;
    for (i, (n, spt, kind)) in plan.iter().enumerate() {
        println!(
            "\n== point {}/{}: {n} tenants x {spt} secrets ({kind}) ==",
            i + 1,
            plan.len()
        );
        let db_name = format!("tv_bench_{n}_{spt}");
        match run_point(&ctx, *n, *spt, kind, &db_name).await {
            Ok(p) => {
                report::print_point(&p);
                points.push(p);
            }
            Err(e) => {
                eprintln!("point {n} x {spt} failed: {e}");
                failure = Some(e);
            }
        }
        ctx.db.drop_db(&db_name).await;
        ctx.db.drop_db(&format!("{db_name}_bao")).await;
        if failure.is_some() {
            break;
        }
    }

    let Ctx {
        db, emulator, work, ..
    } = ctx;
    drop(emulator);
    db.stop().await;
    let _ = std::fs::remove_dir_all(&work);

    let total_s = started.elapsed().as_secs_f64();
    let doc = report::Report {
        args: &args,
        machine,
        pg_version,
        points: &points,
        total_s,
        failure: failure.clone(),
    };
    doc.write(&out_dir)?;
    println!("\n{}", doc.summary_text());
    println!(
        "wrote {}/load.json, load.md, load.svg in {total_s:.0} s",
        out_dir.display()
    );
    if let Some(e) = failure {
        return Err(e);
    }
    let errors: u64 = points
        .iter()
        .flat_map(|p| p.phases.iter())
        .map(PhaseResult::errors)
        .sum();
    Ok(errors == 0)
}

/// `data_dir`: the server's, whose dev master key unwraps the audit key the token's audit
/// row is chained under.
async fn admin_token(ctx: &Ctx, database_url: &str, data_dir: &Path) -> Result<String, String> {
    let out = tokio::process::Command::new(&ctx.binary)
        .args(["token", "create", "--admin", "--description", "load bench"])
        .env("DATABASE_URL", database_url)
        .env("TENANT_VAULT_MASTER_KEY_SOURCE", "dev-file")
        .env("TENANT_VAULT_DATA_DIR", data_dir)
        .env("TENANT_VAULT_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("tenant-vault token create: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "tenant-vault token create --admin failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if token.is_empty() {
        return Err("tenant-vault token create --admin printed nothing".into());
    }
    Ok(token)
}

pub fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {msg:<28} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap()
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// Runs `f` over `items` with `concurrency` in flight; first error wins.
pub async fn for_each<T, F, Fut>(
    items: Vec<T>,
    concurrency: usize,
    bar: &indicatif::ProgressBar,
    f: F,
) -> Result<(), String>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut stream = futures::stream::iter(items.into_iter().map(f)).buffer_unordered(concurrency);
    while let Some(r) = stream.next().await {
        r?;
        bar.inc(1);
    }
    Ok(())
}

async fn post_json(
    http: &reqwest::Client,
    url: String,
    token: &str,
    body: Value,
) -> Result<Value, String> {
    let r = http
        .post(&url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("POST {url}: HTTP {status} {v}"));
    }
    Ok(v)
}

/// Tenants, their tokens and secrets, all through the HTTP API.
async fn seed(
    ctx: &Ctx,
    addr: SocketAddr,
    admin: &str,
    n: usize,
    spt: usize,
) -> Result<(Dataset, u64), String> {
    let conc = ctx.args.concurrency.clamp(8, 64);
    let base = format!("http://{addr}");
    let http = &ctx.http;
    let bar = progress(n as u64, "tenants and tokens");
    let tokens: Arc<std::sync::Mutex<Vec<Option<String>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; n]));
    for_each((0..n).collect(), conc, &bar, |i| {
        let (base, tokens) = (base.clone(), tokens.clone());
        async move {
            let s = slug(i);
            post_json(
                http,
                format!("{base}/v1/admin/tenants"),
                admin,
                json!({"slug": s, "name": format!("Bench tenant {i}")}),
            )
            .await?;
            let v = post_json(
                http,
                format!("{base}/v1/admin/tenants/{s}/tokens"),
                admin,
                json!({"description": "load bench"}),
            )
            .await?;
            let token = v["token"].as_str().ok_or("no token in answer")?.to_string();
            tokens.lock().unwrap()[i] = Some(token);
            Ok(())
        }
    })
    .await?;
    bar.finish();
    let tokens: Vec<String> = std::mem::take(&mut *tokens.lock().unwrap())
        .into_iter()
        .map(|t| t.expect("every tenant got a token"))
        .collect();
    let keys: Vec<String> = (0..spt).map(key_name).collect();
    let mut rng = StdRng::seed_from_u64(n as u64 * 1_000_003 + spt as u64);
    let tenants: Vec<Tenant> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| Tenant {
            slug: slug(i),
            auth: bearer(&token),
            token,
            values: (0..spt).map(|_| random_value(&mut rng)).collect(),
        })
        .collect();
    let bar = progress((n * spt) as u64, "secrets");
    let work: Vec<(usize, usize)> = (0..n).flat_map(|t| (0..spt).map(move |k| (t, k))).collect();
    let tenants_ref = &tenants;
    let keys_ref = &keys;
    for_each(work, conc, &bar, |(t, k)| {
        let base = base.clone();
        async move {
            let tenant = &tenants_ref[t];
            let url = format!("{base}/v1/tenants/{}/secrets/{}", tenant.slug, keys_ref[k]);
            let r = http
                .put(&url)
                .bearer_auth(&tenant.token)
                .json(&json!({"value": tenant.values[k]}))
                .send()
                .await
                .map_err(|e| format!("PUT {url}: {e}"))?;
            if !r.status().is_success() {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                return Err(format!("PUT {url}: HTTP {status} {text}"));
            }
            Ok(())
        }
    })
    .await?;
    bar.finish();
    let requests = (2 * n + n * spt) as u64;
    Ok((Dataset { tenants, keys }, requests))
}

/// GET of random (tenant, key) pairs: the read mix of every read phase, whatever the server.
fn random_gets(data: &Arc<Dataset>, expect: Option<&'static str>) -> Workload {
    random_gets_on(Api::TenantVault, data, expect)
}

fn random_gets_on(api: Api, data: &Arc<Dataset>, expect: Option<&'static str>) -> Workload {
    let data = data.clone();
    Arc::new(move |rng: &mut StdRng| {
        let t = rng.gen_range(0..data.tenants.len());
        let k = rng.gen_range(0..data.keys.len());
        Some(api.get(&data, t, k, expect))
    })
}

/// GET of every (tenant, key) pair once, in order (a finite workload).
fn each_key_once(data: &Arc<Dataset>, keys_per_tenant: usize) -> Workload {
    each_key_once_on(Api::TenantVault, data, keys_per_tenant)
}

fn each_key_once_on(api: Api, data: &Arc<Dataset>, keys_per_tenant: usize) -> Workload {
    let data = data.clone();
    let next = Arc::new(AtomicUsize::new(0));
    let per = keys_per_tenant.min(data.keys.len());
    Arc::new(move |_rng: &mut StdRng| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let (t, k) = (i / per, i % per);
        (t < data.tenants.len()).then(|| api.get(&data, t, k, None))
    })
}

/// `put_per_mille` of requests are PUTs of a new version, the rest GETs.
fn mixed(data: &Arc<Dataset>, put_per_mille: u32) -> Workload {
    let data = data.clone();
    let mut rng = StdRng::seed_from_u64(42);
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..256)
            .map(|_| Bytes::from(json!({"value": random_value(&mut rng)}).to_string()))
            .collect(),
    );
    Arc::new(move |rng: &mut StdRng| {
        let t = &data.tenants[rng.gen_range(0..data.tenants.len())];
        let k = &data.keys[rng.gen_range(0..data.keys.len())];
        let path = format!("/v1/tenants/{}/secrets/{k}", t.slug);
        if rng.gen_range(0..1000) < put_per_mille {
            Some(Req {
                method: Method::PUT,
                path,
                auth: t.auth.clone(),
                body: Some(bodies[rng.gen_range(0..bodies.len())].clone()),
                expect_source: None,
            })
        } else {
            Some(Req {
                method: Method::GET,
                path,
                auth: t.auth.clone(),
                body: None,
                expect_source: None,
            })
        }
    })
}

fn announce(name: &str) {
    use std::io::Write as _;
    print!("  {name:<14} ... ");
    let _ = std::io::stdout().flush();
}

fn done(r: &PhaseResult) {
    match (&r.stats, &r.rotation) {
        (_, Some(rot)) if r.stats.is_none() => println!(
            "rotation {:.0} ms (server {}), {} data keys re-wrapped",
            rot.client_ms,
            rot.server_elapsed_ms
                .map_or("-".into(), |v| format!("{v:.0} ms")),
            rot.rewrapped_data_keys
                .map_or("-".into(), |v| v.to_string())
        ),
        (Some(s), _) => println!(
            "{:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms  errors {}",
            s.rps, s.p50_ms, s.p99_ms, s.errors
        ),
        _ => println!("{}", r.note.clone().unwrap_or_else(|| r.status.clone())),
    }
    if let Some(s) = &r.stats {
        for e in &s.error_samples {
            println!("      error: {e}");
        }
    }
}

/// What one side of a measurement drives: an HTTP server, or PostgreSQL through sqlx.
enum Driver {
    Http(SocketAddr, Workload),
    Db {
        pool: PgPool,
        ids: Arc<Vec<uuid::Uuid>>,
        keys: Arc<Vec<String>>,
    },
    /// `db-write-ceiling`: a PUT's transaction, statement for statement, through sqlx.
    DbWrite {
        pool: PgPool,
        ids: Arc<Vec<uuid::Uuid>>,
        /// Each tenant's active data key (same order as `ids`).
        data_keys: Arc<Vec<uuid::Uuid>>,
        keys: Arc<Vec<String>>,
    },
}

impl Driver {
    async fn drive(&self, concurrency: usize, duration: Duration) -> client::Raw {
        let before = procs::CpuSnapshot::take();
        let mut raw = match self {
            Driver::Http(addr, workload) => {
                client::run_raw(
                    *addr,
                    concurrency,
                    duration,
                    workload.clone(),
                    Arc::new(AtomicBool::new(false)),
                )
                .await
            }
            Driver::Db { pool, ids, keys } => db_load(pool, ids, keys, concurrency, duration).await,
            Driver::DbWrite {
                pool,
                ids,
                data_keys,
                keys,
            } => db_write_load(pool, ids, data_keys, keys, concurrency, duration).await,
        };
        raw.cpu_secs = procs::CpuSnapshot::take().cpu_secs_since(&before);
        raw
    }
}

/// Slices per side when a phase and its ceiling are measured in turns.
const SLICES: u32 = 5;

/// Measures several sides in alternating slices (a, b, c, a, b, c, ...), each side
/// `duration` in all, so a burst of other work on the machine lands on all of them and
/// their ratios hold. One side alone runs in one go.
async fn in_turns(ctx: &Ctx, sides: &[&Driver]) -> Vec<PhaseStats> {
    let (conc, duration) = (ctx.args.concurrency, ctx.args.duration);
    if let [one] = sides {
        return vec![one.drive(conc, duration).await.finish()];
    }
    let mut raws: Vec<client::Raw> = sides.iter().map(|_| client::Raw::new()).collect();
    for _ in 0..SLICES {
        for (side, raw) in sides.iter().zip(raws.iter_mut()) {
            raw.merge(side.drive(conc, duration / SLICES).await);
        }
    }
    raws.into_iter().map(client::Raw::finish).collect()
}

/// Runs the sides that started in turns; a side that could not start is a failed phase.
async fn run_group(ctx: &Ctx, sides: Vec<(&str, Result<Driver, String>)>) -> Vec<PhaseResult> {
    let ready: Vec<&Driver> = sides.iter().filter_map(|(_, d)| d.as_ref().ok()).collect();
    if ready.len() > 1 {
        let names: Vec<&str> = sides
            .iter()
            .filter(|(_, d)| d.is_ok())
            .map(|(n, _)| *n)
            .collect();
        println!("  {}, in turns ({SLICES} slices each):", names.join(", "));
    }
    let mut stats = in_turns(ctx, &ready).await.into_iter();
    sides
        .into_iter()
        .map(|(name, d)| match d {
            Ok(_) => PhaseResult::ok(name, stats.next().expect("one result per side")),
            Err(e) => PhaseResult::failed(name, e),
        })
        .collect()
}

async fn load(ctx: &Ctx, addr: SocketAddr, duration: Duration, workload: Workload) -> PhaseStats {
    Driver::Http(addr, workload)
        .drive(ctx.args.concurrency, duration)
        .await
        .finish()
}

async fn run_point(
    ctx: &Ctx,
    n: usize,
    spt: usize,
    kind: &str,
    db_name: &str,
) -> Result<PointResult, String> {
    let args = &ctx.args;
    let wants = |p: &str| {
        args.phases.contains(p) && (kind == "all" || (kind == "sweep" && SWEEP_PHASES.contains(&p)))
    };
    let database_url = ctx.db.create(db_name).await?;
    let dir = ctx.work.join(db_name);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cache_entries = ((n * spt * 2 + 20_000) as u64).max(100_000);
    let service = Service::start(ServiceSpec {
        binary: &ctx.binary,
        name: "tenant-vault",
        database_url: &database_url,
        data_dir: &dir.join("data"),
        log_file: dir.join("tenant-vault.log"),
        cache_ttl_secs: 3600,
        cache_max_entries: cache_entries,
        db_max_connections: args.concurrency as u32,
        infisical: ctx.emulator.env(),
        default_limits: false,
        audit_mode: "batched",
    })
    .await?;
    let result = point_phases(
        ctx,
        &service,
        n,
        spt,
        kind,
        db_name,
        &database_url,
        &dir,
        &wants,
    )
    .await;
    let peak = service.guard.memory_kib().map(|(hwm, _)| hwm);
    let log = dir.join("tenant-vault.log");
    service.guard.stop().await;
    let mut result =
        result.map_err(|e| format!("{e}\nservice log tail:\n{}", procs::tail(&log, 15)))?;
    result.service_rss_peak_kib = peak;
    Ok(result)
}

#[allow(clippy::too_many_arguments)]
async fn point_phases(
    ctx: &Ctx,
    service: &Service,
    n: usize,
    spt: usize,
    kind: &str,
    db_name: &str,
    database_url: &str,
    dir: &Path,
    wants: &dyn Fn(&str) -> bool,
) -> Result<PointResult, String> {
    let args = &ctx.args;
    let duration = args.duration;
    let admin = admin_token(ctx, database_url, &dir.join("data")).await?;
    let t0 = Instant::now();
    let (data, seed_requests) = seed(ctx, service.addr, &admin, n, spt).await?;
    let seed_s = t0.elapsed().as_secs_f64();
    println!(
        "  seeded {n} tenants, {} secrets, {} tokens in {seed_s:.1} s",
        n * spt,
        n
    );
    let data = Arc::new(data);
    let mut point = PointResult {
        tenants: n,
        secrets_per_tenant: spt,
        kind: kind.into(),
        seed_s,
        seed_requests,
        warm_s: 0.0,
        service_rss_after_warm_kib: None,
        service_rss_peak_kib: None,
        openbao: Vec::new(),
        phases: Vec::new(),
    };

    if kind != "rotate-only" {
        // Warm every key (and every token and data key) into the caching service, and check
        // a sample of values byte for byte.
        let t0 = Instant::now();
        let warm = load(
            ctx,
            service.addr,
            Duration::from_secs(600),
            each_key_once(&data, spt),
        )
        .await;
        point.warm_s = t0.elapsed().as_secs_f64();
        if warm.errors > 0 {
            return Err(format!("warming failed: {:?}", warm.error_samples));
        }
        verify_sample(ctx, service.addr, &data).await?;
        point.service_rss_after_warm_kib = service.guard.memory_kib().map(|(hwm, _)| hwm);
        println!(
            "  warmed {} keys in {:.1} s; service peak RSS {} MiB",
            warm.requests,
            point.warm_s,
            point
                .service_rss_after_warm_kib
                .map_or("?".into(), |k| format!("{:.1}", k as f64 / 1024.0))
        );
    }

    // Each phase runs in turns with its ceiling and, with `--compare openbao`, with OpenBao
    // (see `in_turns`): answered from memory, then answered from PostgreSQL.
    let mut group = Vec::new();
    let mut ceiling_guard = None;
    if wants("http-ceiling") {
        match start_http_ceiling(ctx, dir, &data).await {
            Ok((guard, driver)) => {
                ceiling_guard = Some(guard);
                group.push(("http-ceiling", Ok(driver)));
            }
            Err(e) => group.push(("http-ceiling", Err(e))),
        }
    }
    if wants("hot") {
        group.push((
            "hot",
            Ok(Driver::Http(
                service.addr,
                random_gets(&data, Some("cache")),
            )),
        ));
    }
    // The same reads on a second replica with the default rate limits on, in turns with
    // `hot`: what the limits cost (same run, same machine, same database).
    let mut limited = None;
    if wants("hot-limits") {
        match start_limited(ctx, dir, database_url, &data, spt).await {
            Ok(svc) => {
                group.push((
                    "hot-limits",
                    Ok(Driver::Http(svc.addr, random_gets(&data, Some("cache")))),
                ));
                limited = Some(svc);
            }
            Err(e) => group.push(("hot-limits", Err(e))),
        }
    }
    let mut strict_service = None;
    if wants("hot-strict") {
        match start_strict_service(ctx, database_url, dir, &data).await {
            Ok((svc, driver)) => {
                strict_service = Some(svc);
                group.push(("hot-strict", Ok(driver)));
            }
            Err(e) => group.push(("hot-strict", Err(e))),
        }
    }
    let inmem = if wants("openbao-inmem") {
        let r = start_openbao(ctx, dir, &data, "openbao-inmem", &Storage::InMemory).await;
        group.push((
            "openbao-inmem",
            r.as_ref().map(|s| s.driver(&data)).map_err(Clone::clone),
        ));
        Some(r)
    } else {
        None
    };
    let (want_pg, want_pg_nocache) = (wants("openbao-pg"), wants("openbao-pg-nocache"));
    let pg_storage = |url: &str, cache: bool| Storage::Postgres {
        url: url.to_string(),
        cache,
        // The same pool size as tenant-vault's (TENANT_VAULT_DB_MAX_CONNECTIONS).
        max_parallel: args.concurrency,
    };
    let mut pg = None;
    if want_pg || want_pg_nocache {
        let r = async {
            let url = ctx.db.create(&format!("{db_name}_bao")).await?;
            openbao::create_pg_table(&url).await?;
            let url = format!("{url}?sslmode=disable");
            let name = if want_pg {
                "openbao-pg"
            } else {
                "openbao-pg-nocache"
            };
            let side = start_openbao(ctx, dir, &data, name, &pg_storage(&url, want_pg)).await?;
            Ok::<_, String>((url, side))
        }
        .await;
        if want_pg {
            group.push((
                "openbao-pg",
                r.as_ref()
                    .map(|(_, s)| s.driver(&data))
                    .map_err(Clone::clone),
            ));
        }
        pg = Some(r);
    }
    let mut results = run_group(ctx, group).await;
    if let Some(g) = ceiling_guard {
        g.stop().await;
    }
    if let Some(svc) = limited {
        svc.guard.stop().await;
    }
    if let Some(svc) = strict_service {
        svc.guard.stop().await;
    }
    if let Some(Ok(side)) = inmem {
        side.finish(&mut results, &mut point);
        side.bao.guard.stop().await;
    }
    // OpenBao on PostgreSQL once more with its own cache off, on the same storage: every
    // read and every token lookup is then a select, as every read is in `database`.
    let mut pg_nocache = None;
    if let Some(r) = pg {
        match r {
            Ok((url, side)) => {
                let side = if want_pg {
                    side.finish(&mut results, &mut point);
                    if want_pg_nocache {
                        Some(
                            side.restart(
                                ctx,
                                &data,
                                "openbao-pg-nocache",
                                &pg_storage(&url, false),
                            )
                            .await,
                        )
                    } else {
                        side.bao.guard.stop().await;
                        None
                    }
                } else {
                    Some(Ok(side))
                };
                pg_nocache = side;
            }
            Err(e) if want_pg_nocache => pg_nocache = Some(Err(e)),
            Err(_) => {}
        }
    }
    for r in results {
        announce(&r.name);
        done(&r);
        point.phases.push(r);
    }

    let mut group = Vec::new();
    if wants("db-ceiling") {
        group.push((
            "db-ceiling",
            start_db_ceiling(ctx, database_url, &data).await,
        ));
    }
    let mut nocache_service = None;
    if wants("database") {
        match start_nocache_service(ctx, database_url, dir, &data).await {
            Ok((svc, driver)) => {
                nocache_service = Some(svc);
                group.push(("database", Ok(driver)));
            }
            Err(e) => group.push(("database", Err(e))),
        }
    }
    if let Some(r) = &pg_nocache {
        group.push((
            "openbao-pg-nocache",
            r.as_ref().map(|s| s.driver(&data)).map_err(Clone::clone),
        ));
    }
    let mut results = run_group(ctx, group).await;
    if let Some(svc) = nocache_service {
        svc.guard.stop().await;
    }
    if let Some(Ok(side)) = pg_nocache {
        side.finish(&mut results, &mut point);
        side.bao.guard.stop().await;
    }
    for r in results {
        announce(&r.name);
        done(&r);
        point.phases.push(r);
    }
    if wants("infisical") {
        announce("infisical");
        let r = infisical_phase(ctx, service.addr, &data).await;
        done(&r);
        point.phases.push(r);
    }
    // `write` in turns with its ceiling, as `hot` and `database` are with theirs.
    let mut group = Vec::new();
    let mut write_ceiling_pool = None;
    if wants("db-write-ceiling") {
        let driver = start_db_write_ceiling(ctx, database_url, &data).await;
        if let Ok(Driver::DbWrite { pool, .. }) = &driver {
            write_ceiling_pool = Some(pool.clone());
        }
        group.push(("db-write-ceiling", driver));
    }
    if wants("write") {
        group.push(("write", Ok(Driver::Http(service.addr, mixed(&data, 1000)))));
    }
    let results = run_group(ctx, group).await;
    if let Some(pool) = write_ceiling_pool {
        drop_write_ceiling_rows(&pool).await?;
    }
    for r in results {
        announce(&r.name);
        done(&r);
        point.phases.push(r);
    }
    if wants("mixed") {
        announce("mixed");
        let s = load(ctx, service.addr, duration, mixed(&data, 50)).await;
        let r = PhaseResult::ok("mixed", s);
        done(&r);
        point.phases.push(r);
    }
    if wants("rotate") || (kind == "rotate-only" && args.phases.contains("rotate")) {
        announce("rotate");
        let r = match rotate(ctx, service.addr, &admin).await {
            Ok(Some(rot)) => PhaseResult {
                rotation: Some(rot),
                ..PhaseResult::skipped("rotate", "")
            },
            Ok(None) => PhaseResult::skipped(
                "rotate",
                "skipped (POST /v1/admin/master-key/rotate answered 404: rotation not available)",
            ),
            Err(e) => PhaseResult::failed("rotate", e),
        };
        let r = if r.rotation.is_some() {
            PhaseResult {
                status: "ok".into(),
                note: None,
                ..r
            }
        } else {
            r
        };
        done(&r);
        point.phases.push(r);
    }
    if wants("rotate+mixed") {
        announce("rotate+mixed");
        let r = rotate_under_load(ctx, service.addr, &admin, &data).await;
        done(&r);
        point.phases.push(r);
    }
    Ok(point)
}

/// A loaded OpenBao server and each tenant's token for it.
struct OpenBaoSide {
    bao: Bao,
    auth: Arc<Vec<HeaderValue>>,
    run: OpenBaoRun,
}

impl OpenBaoSide {
    /// The read mix of `hot` and `database`, as KV v2 reads with the tenants' tokens.
    fn driver(&self, data: &Arc<Dataset>) -> Driver {
        Driver::Http(
            self.bao.addr,
            random_gets_on(Api::OpenBao(self.auth.clone()), data, None),
        )
    }

    /// Notes its memory on its phase and keeps its figures in the point.
    fn finish(&self, results: &mut [PhaseResult], point: &mut PointResult) {
        let mut run = self.run.clone();
        run.rss_peak_kib = self.bao.guard.memory_kib().map(|(hwm, _)| hwm);
        if let Some(r) = results.iter_mut().find(|r| r.name == run.phase) {
            if let Some(k) = run.rss_peak_kib {
                r.note = Some(format!("OpenBao peak RSS {:.1} MiB", k as f64 / 1024.0));
            }
        }
        point.openbao.push(run);
    }

    /// The same storage under another server (e.g. with OpenBao's cache off), warmed as
    /// `database` is: one read per tenant.
    async fn restart(
        self,
        ctx: &Ctx,
        data: &Arc<Dataset>,
        name: &str,
        storage: &Storage,
    ) -> Result<Self, String> {
        let bao = self.bao.restart(&ctx.http, name, storage).await?;
        let mut run = self.run;
        run.phase = name.to_string();
        run.cache = matches!(storage, Storage::Postgres { cache: true, .. });
        (run.load_s, run.load_requests) = (0.0, 0);
        let mut side = Self {
            bao,
            auth: self.auth,
            run,
        };
        side.run.warm_s = side.warm(ctx, data, 1).await?;
        Ok(side)
    }

    async fn warm(
        &self,
        ctx: &Ctx,
        data: &Arc<Dataset>,
        keys_per_tenant: usize,
    ) -> Result<f64, String> {
        let t0 = Instant::now();
        let warm = load(
            ctx,
            self.bao.addr,
            Duration::from_secs(600),
            each_key_once_on(Api::OpenBao(self.auth.clone()), data, keys_per_tenant),
        )
        .await;
        if warm.errors > 0 {
            return Err(format!(
                "warming {} failed: {:?}",
                self.run.phase, warm.error_samples
            ));
        }
        Ok(t0.elapsed().as_secs_f64())
    }
}

/// Starts OpenBao, loads the dataset into KV v2 (a policy and a token per tenant), checks a
/// sample of values and warms it as its tenant-vault counterpart is warmed.
async fn start_openbao(
    ctx: &Ctx,
    dir: &Path,
    data: &Arc<Dataset>,
    name: &str,
    storage: &Storage,
) -> Result<OpenBaoSide, String> {
    let bin = ctx.bao_bin.as_deref().ok_or("no `bao` binary located")?;
    let bao = Bao::start(&ctx.http, bin, dir, name, storage, None).await?;
    let t0 = Instant::now();
    let conc = ctx.args.concurrency.clamp(8, 64);
    let loaded = bao.load(&ctx.http, data, conc).await;
    let auth = match loaded {
        Ok(a) => a,
        Err(e) => {
            bao.guard.stop().await;
            return Err(format!("loading {name}: {e}"));
        }
    };
    let load_s = t0.elapsed().as_secs_f64();
    let (n, spt) = (data.tenants.len(), data.keys.len());
    let (storage_name, cache) = match storage {
        Storage::InMemory => ("inmem", true),
        Storage::Postgres { cache, .. } => ("postgresql", *cache),
    };
    let mut side = OpenBaoSide {
        bao,
        auth,
        run: OpenBaoRun {
            phase: name.to_string(),
            storage: storage_name.into(),
            cache,
            load_s,
            load_requests: (2 * n + n * spt) as u64 + 1,
            warm_s: 0.0,
            rss_peak_kib: None,
        },
    };
    let checked = async {
        side.bao.verify_sample(&ctx.http, data, &side.auth).await?;
        // With its cache on, every key once (as `hot` is warmed); off, a read per tenant.
        side.run.warm_s = side.warm(ctx, data, if cache { spt } else { 1 }).await?;
        Ok::<_, String>(())
    }
    .await;
    if let Err(e) = checked {
        side.bao.guard.stop().await;
        return Err(e);
    }
    println!(
        "  {name}: loaded {n} policies and tokens, {} secrets in {load_s:.1} s; warmed in {:.1} s",
        n * spt,
        side.run.warm_s
    );
    Ok(side)
}

async fn verify_sample(ctx: &Ctx, addr: SocketAddr, data: &Dataset) -> Result<(), String> {
    let step = (data.tenants.len() / 200).max(1);
    for (i, t) in data.tenants.iter().enumerate().step_by(step) {
        let k = i % data.keys.len();
        let url = format!(
            "http://{addr}/v1/tenants/{}/secrets/{}",
            t.slug, data.keys[k]
        );
        let r = ctx
            .http
            .get(&url)
            .bearer_auth(&t.token)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let v: Value = r.json().await.map_err(|e| format!("GET {url}: {e}"))?;
        if v["value"].as_str() != Some(t.values[k].as_str()) {
            return Err(format!("GET {url}: value differs from what was stored"));
        }
    }
    Ok(())
}

/// Starts the http-ceiling process with every tenant's token and values, warmed up.
async fn start_http_ceiling(
    ctx: &Ctx,
    dir: &Path,
    data: &Arc<Dataset>,
) -> Result<(procs::ChildGuard, Driver), String> {
    let mut map = CeilingMap::default();
    for t in &data.tenants {
        map.tokens.insert(t.token.clone(), t.slug.clone());
        map.secrets.insert(
            t.slug.clone(),
            data.keys
                .iter()
                .cloned()
                .zip(t.values.iter().cloned())
                .collect(),
        );
    }
    let file = dir.join("ceiling.json");
    let bytes = serde_json::to_vec(&map).map_err(|e| e.to_string())?;
    std::fs::write(&file, bytes).map_err(|e| e.to_string())?;
    let started = procs::start_ceiling(&file, &dir.join("http-ceiling.log")).await;
    let _ = std::fs::remove_file(&file);
    let (guard, addr) = started?;
    // The same warm-up as the service got: one pass over every key.
    let _ = load(
        ctx,
        addr,
        Duration::from_secs(60),
        each_key_once(data, data.keys.len()),
    )
    .await;
    Ok((guard, Driver::Http(addr, random_gets(data, Some("cache")))))
}

/// A sqlx pool of `concurrency` connections to the point's database, every connection warm.
async fn start_db_ceiling(
    ctx: &Ctx,
    database_url: &str,
    data: &Arc<Dataset>,
) -> Result<Driver, String> {
    let conc = ctx.args.concurrency;
    // tenant-vault's own pool settings, so the ceiling pays what the service's pool pays.
    let pool = tenant_vault::store::pool_options(conc as u32)
        .min_connections(conc as u32)
        .connect(database_url)
        .await
        .map_err(|e| e.to_string())?;
    let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as("select id, slug from tenants")
        .fetch_all(&pool)
        .await
        .map_err(|e| e.to_string())?;
    let by_slug: std::collections::HashMap<String, uuid::Uuid> =
        rows.into_iter().map(|(id, s)| (s, id)).collect();
    let ids: Arc<Vec<uuid::Uuid>> = Arc::new(
        data.tenants
            .iter()
            .filter_map(|t| by_slug.get(&t.slug).copied())
            .collect(),
    );
    if ids.len() != data.tenants.len() {
        return Err("tenant ids missing from the database".into());
    }
    let keys = Arc::new(data.keys.clone());
    // Warm every connection (and its prepared statement).
    let _ = db_load(&pool, &ids, &keys, conc, Duration::from_millis(300)).await;
    Ok(Driver::Db { pool, ids, keys })
}

/// Prefix of the copies `db-write-ceiling` writes: its random ciphertext must never land in a
/// row tenant-vault reads.
const WRITE_CEILING_PREFIX: &str = "ZZ_WRITE_CEILING_";

/// `db-write-ceiling`: the statements of a PUT's transaction (an existing key, rate limits and
/// quotas off, no archive, as the bench's servers run) in PostgreSQL through a sqlx pool of
/// `concurrency` connections: no HTTP, no crypto (the new ciphertext is random bytes of the
/// stored one's size), no audit row (tenant-vault writes that later, in batches, outside the
/// transaction). It writes copies of the seeded rows under prefixed key names (same tenants,
/// sizes and data keys), dropped after the phase: the real secrets stay readable.
async fn start_db_write_ceiling(
    ctx: &Ctx,
    database_url: &str,
    data: &Arc<Dataset>,
) -> Result<Driver, String> {
    let conc = ctx.args.concurrency;
    // tenant-vault's own pool settings, so the ceiling pays what the service's pool pays.
    let pool = tenant_vault::store::pool_options(conc as u32)
        .min_connections(conc as u32)
        .connect(database_url)
        .await
        .map_err(|e| e.to_string())?;
    let rows: Vec<(uuid::Uuid, String, uuid::Uuid)> = sqlx::query_as(
        "select t.id, t.slug, k.id from tenants t
         join data_keys k on k.tenant_id = t.id and k.state = 'active'",
    )
    .fetch_all(&pool)
    .await
    .map_err(|e| e.to_string())?;
    let by_slug: std::collections::HashMap<String, (uuid::Uuid, uuid::Uuid)> =
        rows.into_iter().map(|(id, s, k)| (s, (id, k))).collect();
    let (ids, data_keys): (Vec<_>, Vec<_>) = data
        .tenants
        .iter()
        .filter_map(|t| by_slug.get(&t.slug).copied())
        .unzip();
    if ids.len() != data.tenants.len() {
        return Err("tenant ids or active data keys missing from the database".into());
    }
    let (ids, data_keys) = (Arc::new(ids), Arc::new(data_keys));
    sqlx::query(
        "insert into company_secrets
           (id, company_id, secret_key, secret_value_encrypted, data_key_id, version)
         select gen_random_uuid(), company_id, $1 || secret_key, secret_value_encrypted,
                data_key_id, version
         from company_secrets where not starts_with(secret_key, $1)
         on conflict (company_id, secret_key) do nothing",
    )
    .bind(WRITE_CEILING_PREFIX)
    .execute(&pool)
    .await
    .map_err(|e| e.to_string())?;
    let keys = Arc::new(
        data.keys
            .iter()
            .map(|k| format!("{WRITE_CEILING_PREFIX}{k}"))
            .collect(),
    );
    // Warm every connection (and its prepared statements).
    let _ = db_write_load(
        &pool,
        &ids,
        &data_keys,
        &keys,
        conc,
        Duration::from_millis(300),
    )
    .await;
    Ok(Driver::DbWrite {
        pool,
        ids,
        data_keys,
        keys,
    })
}

/// Removes `db-write-ceiling`'s copies (their kept versions go with them).
async fn drop_write_ceiling_rows(pool: &PgPool) -> Result<(), String> {
    sqlx::query("delete from company_secrets where starts_with(secret_key, $1)")
        .bind(WRITE_CEILING_PREFIX)
        .execute(pool)
        .await
        .map_err(|e| format!("removing db-write-ceiling's rows: {e}"))?;
    pool.close().await;
    Ok(())
}

/// One PUT's transaction; the statements and their order are those of
/// `Vault::write_secret_from` for an existing key.
async fn db_write_once(
    pool: &PgPool,
    tenant: uuid::Uuid,
    data_key: uuid::Uuid,
    key: &str,
    origin: uuid::Uuid,
    rng: &mut StdRng,
) -> Result<(), String> {
    let err = |e: sqlx::Error| e.to_string();
    let mut tx = pool.begin().await.map_err(err)?;
    let current: Option<SecretRow> = sqlx::query_as(
        "select id, secret_value_encrypted, data_key_id, version, updated_at
         from company_secrets where company_id = $1 and secret_key = $2 for update",
    )
    .bind(tenant)
    .bind(key)
    .fetch_optional(&mut *tx)
    .await
    .map_err(err)?;
    let (id, old, _, version, _) = current.ok_or_else(|| format!("no row for {tenant}/{key}"))?;
    let count: Option<i64> = sqlx::query_scalar(
        "update data_keys set encryption_count = encryption_count + $2
         where id = $1 and state = 'active' returning encryption_count",
    )
    .bind(data_key)
    .bind(1i64)
    .fetch_optional(&mut *tx)
    .await
    .map_err(err)?;
    if count.is_none() {
        return Err(format!("data key {data_key} is no longer active"));
    }
    let mut envelope = vec![0u8; old.len()];
    rng.fill(&mut envelope[..]);
    sqlx::query(
        "insert into company_secret_versions
           (secret_id, company_id, secret_key, version, secret_value_encrypted, data_key_id, created_at)
         select id, company_id, secret_key, version, secret_value_encrypted, data_key_id, updated_at
         from company_secrets where id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    let version = version + 1;
    let _: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "update company_secrets
         set secret_value_encrypted = $2, data_key_id = $3, version = $4, updated_at = now()
         where id = $1 and version = $4 - 1
         returning updated_at",
    )
    .bind(id)
    .bind(&envelope)
    .bind(data_key)
    .bind(version)
    .fetch_one(&mut *tx)
    .await
    .map_err(err)?;
    // Retention: tenant-vault's default keeps 10 versions.
    sqlx::query("delete from company_secret_versions where secret_id = $1 and version <= $2")
        .bind(id)
        .bind(version - 10)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    sqlx::query(
        "update company_secrets
         set origin = $3, infisical_folder = $4, infisical_secret_id = $5, infisical_version = $6
         where company_id = $1 and secret_key = $2",
    )
    .bind(tenant)
    .bind(key)
    .bind("api")
    .bind(None::<&str>)
    .bind(None::<&str>)
    .bind(None::<i64>)
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    sqlx::query("delete from secret_tombstones where company_id = $1 and secret_key = $2")
        .bind(tenant)
        .bind(key)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    // The same payload as tenant-vault's, on a channel nobody listens to: PostgreSQL's work is
    // the same, and the bench's servers do not drop cache entries for it.
    let payload = json!({
        "origin": origin, "kind": "secret", "tenant": tenant, "key": key,
        "change": "written", "version": version,
    })
    .to_string();
    sqlx::query("select pg_notify('tenant_vault_bench', $1)")
        .bind(payload)
        .execute(&mut *tx)
        .await
        .map_err(err)?;
    tx.commit().await.map_err(err)
}

async fn db_write_load(
    pool: &PgPool,
    ids: &Arc<Vec<uuid::Uuid>>,
    data_keys: &Arc<Vec<uuid::Uuid>>,
    keys: &Arc<Vec<String>>,
    conc: usize,
    duration: Duration,
) -> client::Raw {
    let started = Instant::now();
    let deadline = started + duration;
    let origin = uuid::Uuid::new_v4();
    let tasks: Vec<_> = (0..conc)
        .map(|w| {
            let (pool, ids, data_keys, keys) =
                (pool.clone(), ids.clone(), data_keys.clone(), keys.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(0xdb_1e + w as u64);
                let mut raw = client::Raw::new();
                for _ in 0..5_000_000u64 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let t = rng.gen_range(0..ids.len());
                    let key = &keys[rng.gen_range(0..keys.len())];
                    let t0 = Instant::now();
                    let r = db_write_once(&pool, ids[t], data_keys[t], key, origin, &mut rng).await;
                    raw.record(t0, r);
                }
                raw
            })
        })
        .collect();
    client::Raw::join(tasks, started).await
}

/// The columns tenant-vault reads for one secret.
type SecretRow = (
    uuid::Uuid,
    Vec<u8>,
    uuid::Uuid,
    i32,
    chrono::DateTime<chrono::Utc>,
);

async fn db_load(
    pool: &PgPool,
    ids: &Arc<Vec<uuid::Uuid>>,
    keys: &Arc<Vec<String>>,
    conc: usize,
    duration: Duration,
) -> client::Raw {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..conc)
        .map(|w| {
            let (pool, ids, keys) = (pool.clone(), ids.clone(), keys.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(0xdb + w as u64);
                let mut raw = client::Raw::new();
                for _ in 0..5_000_000u64 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let id = ids[rng.gen_range(0..ids.len())];
                    let key = &keys[rng.gen_range(0..keys.len())];
                    let t0 = Instant::now();
                    let row: Result<Option<SecretRow>, sqlx::Error> = sqlx::query_as(
                        "select id, secret_value_encrypted, data_key_id, version, updated_at
                             from company_secrets where company_id = $1 and secret_key = $2",
                    )
                    .bind(id)
                    .bind(key)
                    .fetch_optional(&pool)
                    .await;
                    let outcome = match row {
                        Ok(Some(_)) => Ok(()),
                        Ok(None) => Err(format!("no row for {id}/{key}")),
                        Err(e) => Err(e.to_string()),
                    };
                    raw.record(t0, outcome);
                }
                raw
            })
        })
        .collect();
    client::Raw::join(tasks, started).await
}

/// `database`: a second tenant-vault process on the same database with the cache off
/// (TENANT_VAULT_CACHE_TTL_SECS=0), so every read selects and decrypts. Tokens and
/// unwrapped data keys stay cached, as in production; one read per tenant warms them.
async fn start_nocache_service(
    ctx: &Ctx,
    database_url: &str,
    dir: &Path,
    data: &Arc<Dataset>,
) -> Result<(Service, Driver), String> {
    let svc = Service::start(ServiceSpec {
        binary: &ctx.binary,
        name: "tenant-vault (cache off)",
        database_url,
        data_dir: &dir.join("data"),
        log_file: dir.join("tenant-vault-nocache.log"),
        cache_ttl_secs: 0,
        cache_max_entries: ((data.tenants.len() * 2 + 20_000) as u64).max(100_000),
        db_max_connections: ctx.args.concurrency as u32,
        infisical: Vec::new(),
        default_limits: false,
        audit_mode: "batched",
    })
    .await?;
    let warm = load(
        ctx,
        svc.addr,
        Duration::from_secs(120),
        each_key_once(data, 1),
    )
    .await;
    if warm.errors > 0 {
        svc.guard.stop().await;
        return Err(format!(
            "warming the cache-off service failed: {:?}",
            warm.error_samples
        ));
    }
    let driver = Driver::Http(svc.addr, random_gets(data, Some("database")));
    Ok((svc, driver))
}

/// `hot-strict`: a second server on the same database in strict audit mode, its cache
/// warmed, so its reads differ from `hot`'s only by waiting for each audit row's commit.
async fn start_strict_service(
    ctx: &Ctx,
    database_url: &str,
    dir: &Path,
    data: &Arc<Dataset>,
) -> Result<(Service, Driver), String> {
    let svc = Service::start(ServiceSpec {
        binary: &ctx.binary,
        name: "tenant-vault (strict audit)",
        database_url,
        data_dir: &dir.join("data"),
        log_file: dir.join("tenant-vault-strict.log"),
        cache_ttl_secs: 3600,
        cache_max_entries: ((data.tenants.len() * data.keys.len() * 2 + 20_000) as u64)
            .max(100_000),
        db_max_connections: ctx.args.concurrency as u32,
        infisical: Vec::new(),
        default_limits: false,
        audit_mode: "strict",
    })
    .await?;
    let warm = load(
        ctx,
        svc.addr,
        Duration::from_secs(600),
        each_key_once(data, data.keys.len()),
    )
    .await;
    if warm.errors > 0 {
        svc.guard.stop().await;
        return Err(format!(
            "warming the strict-audit service failed: {:?}",
            warm.error_samples
        ));
    }
    let driver = Driver::Http(svc.addr, random_gets(data, Some("cache")));
    Ok((svc, driver))
}

/// `infisical`: first-touch reads of keys that exist only in the emulator (20 ms latency),
/// each read once: the fallback fetches it and writes it through to PostgreSQL.
async fn infisical_phase(ctx: &Ctx, addr: SocketAddr, data: &Arc<Dataset>) -> PhaseResult {
    let args = &ctx.args;
    // Enough keys to keep every connection busy for the whole phase at the emulator's latency.
    let per_conn =
        (args.duration.as_secs_f64() * 1000.0 / INFISICAL_LATENCY_MS as f64 * 1.2).ceil() as usize;
    let count = (args.concurrency * per_conn)
        .min(data.tenants.len() * 20)
        .max(2);
    // Secrets only: re-seeding the identity would give it a new id under the service.
    let mut seed = Seed::default();
    let mut items = Vec::with_capacity(count);
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..count {
        let t = i % data.tenants.len();
        let key = format!("LEGACY_{:05}_TOKEN", i / data.tenants.len());
        let folder = format!("/tenants/{}", data.tenants[t].slug);
        seed = seed.with_secret(
            PROJECT_ID,
            INFISICAL_ENV,
            &folder,
            &key,
            &random_value(&mut rng),
        );
        items.push((t, key));
    }
    if let Err(e) = ctx.emulator.emulator.seed(&seed) {
        return PhaseResult::failed("infisical", format!("seeding the emulator: {e}"));
    }
    ctx.emulator.set_latency(INFISICAL_LATENCY_MS);
    let result = async {
        // The emulator must serve the first key (else this is the bench's fault)...
        let (t, key) = &items[0];
        emulator_has(ctx, &data.tenants[*t].slug, key).await?;
        // ...and the probe says whether tenant-vault's fallback is there at all.
        let tenant = &data.tenants[*t];
        let url = format!("http://{addr}/v1/tenants/{}/secrets/{key}", tenant.slug);
        let r = ctx
            .http
            .get(&url)
            .bearer_auth(&tenant.token)
            .send()
            .await
            .map_err(|e| format!("probe GET {url}: {e}"))?;
        let source = r
            .headers()
            .get("x-secret-source")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !r.status().is_success() || source.as_deref() != Some("infisical") {
            return Ok(PhaseResult::skipped(
                "infisical",
                format!(
                    "skipped (fallback not available: probe answered HTTP {}, source {})",
                    r.status().as_u16(),
                    source.unwrap_or_else(|| "none".into())
                ),
            ));
        }
        let items = Arc::new(items);
        let next = Arc::new(AtomicUsize::new(1));
        let tenants = data.clone();
        let workload: Workload = Arc::new(move |_rng: &mut StdRng| {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let (t, key) = items.get(i)?;
            let tenant = &tenants.tenants[*t];
            Some(Req {
                method: Method::GET,
                path: format!("/v1/tenants/{}/secrets/{key}", tenant.slug),
                auth: tenant.auth.clone(),
                body: None,
                expect_source: Some("infisical"),
            })
        });
        let s = load(ctx, addr, args.duration, workload).await;
        Ok::<_, String>(PhaseResult::ok("infisical", s))
    }
    .await;
    ctx.emulator.set_latency(0);
    result.unwrap_or_else(|e| PhaseResult::failed("infisical", e))
}

/// Reads one secret from the emulator through Infisical's own API.
async fn emulator_has(ctx: &Ctx, slug: &str, key: &str) -> Result<(), String> {
    let base = format!("http://{}", ctx.emulator.addr);
    let login: Value = ctx
        .http
        .post(format!("{base}/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}))
        .send()
        .await
        .map_err(|e| format!("emulator login: {e}"))?
        .json()
        .await
        .map_err(|e| format!("emulator login: {e}"))?;
    let token = login["accessToken"]
        .as_str()
        .ok_or_else(|| format!("emulator login answered {login}"))?;
    let r = ctx
        .http
        .get(format!("{base}/api/v3/secrets/raw/{key}"))
        .query(&[
            ("workspaceId", PROJECT_ID),
            ("environment", INFISICAL_ENV),
            ("secretPath", &format!("/tenants/{slug}")),
        ])
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("emulator read: {e}"))?;
    if !r.status().is_success() {
        return Err(format!(
            "the emulator does not serve /tenants/{slug}/{key}: HTTP {}",
            r.status()
        ));
    }
    Ok(())
}

/// One master key rotation. Ok(None) when the route does not exist (404).
async fn rotate(ctx: &Ctx, addr: SocketAddr, admin: &str) -> Result<Option<Rotation>, String> {
    let url = format!("http://{addr}/v1/admin/master-key/rotate");
    let t0 = Instant::now();
    let mut r = ctx
        .http
        .post(&url)
        .bearer_auth(admin)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if matches!(r.status().as_u16(), 400 | 415 | 422) {
        // The handler wants a JSON body: send an empty object.
        r = ctx
            .http
            .post(&url)
            .bearer_auth(admin)
            .json(&json!({}))
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .map_err(|e| format!("POST {url}: {e}"))?;
    }
    let client_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let status = r.status();
    if status.as_u16() == 404 || status.as_u16() == 405 {
        return Ok(None);
    }
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("POST {url}: HTTP {status} {v}"));
    }
    Ok(Some(Rotation {
        client_ms,
        server_elapsed_ms: v["elapsed_ms"].as_f64(),
        rewrapped_data_keys: v["rewrapped_data_keys"].as_u64(),
        previous_version: v["previous_version"].as_i64(),
        version: v["version"].as_i64(),
    }))
}

/// `rotate+mixed`: the mixed load for one phase, with a rotation a third of the way in.
async fn rotate_under_load(
    ctx: &Ctx,
    addr: SocketAddr,
    admin: &str,
    data: &Arc<Dataset>,
) -> PhaseResult {
    let stop = Arc::new(AtomicBool::new(false));
    let before = procs::CpuSnapshot::take();
    let load = tokio::spawn(client::run_raw(
        addr,
        ctx.args.concurrency,
        ctx.args.duration,
        mixed(data, 50),
        stop.clone(),
    ));
    tokio::time::sleep(ctx.args.duration / 3).await;
    let rot = rotate(ctx, addr, admin).await;
    if !matches!(rot, Ok(Some(_))) {
        stop.store(true, Ordering::Relaxed);
    }
    let stats = load.await.map(|mut raw| {
        raw.cpu_secs = procs::CpuSnapshot::take().cpu_secs_since(&before);
        raw.finish()
    });
    match (rot, stats) {
        (Ok(Some(rot)), Ok(s)) => PhaseResult {
            rotation: Some(rot),
            ..PhaseResult::ok("rotate+mixed", s)
        },
        (Ok(None), _) => PhaseResult::skipped(
            "rotate+mixed",
            "skipped (POST /v1/admin/master-key/rotate answered 404: rotation not available)",
        ),
        (Err(e), _) => PhaseResult::failed("rotate+mixed", e),
        (_, Err(e)) => PhaseResult::failed("rotate+mixed", e.to_string()),
    }
}

/// A second tenant-vault on the point's database with the settings' default rate limits and
/// quotas, warmed like the first (every key once).
async fn start_limited(
    ctx: &Ctx,
    dir: &Path,
    database_url: &str,
    data: &Arc<Dataset>,
    spt: usize,
) -> Result<Service, String> {
    let svc = Service::start(ServiceSpec {
        binary: &ctx.binary,
        name: "tenant-vault (default limits)",
        database_url,
        data_dir: &dir.join("data"),
        log_file: dir.join("tenant-vault-limits.log"),
        cache_ttl_secs: 3600,
        cache_max_entries: ((data.tenants.len() * spt * 2 + 20_000) as u64).max(100_000),
        db_max_connections: ctx.args.concurrency as u32,
        infisical: Vec::new(),
        default_limits: true,
        audit_mode: "batched",
    })
    .await?;
    let warm = load(
        ctx,
        svc.addr,
        Duration::from_secs(600),
        each_key_once(data, spt),
    )
    .await;
    if warm.errors > 0 {
        svc.guard.stop().await;
        return Err(format!(
            "warming the limited replica failed: {:?}",
            warm.error_samples
        ));
    }
    Ok(svc)
}
