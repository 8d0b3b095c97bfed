//! Fault scenarios under load, shared by tests/faults.rs (scaled down, asserting) and
//! `cargo bench --bench load -- --faults` (16 clients, printing the counts).
//!
//! Each client reads and writes keys of its own, one request at a time, and remembers per key
//! the last acknowledged value and the values of writes whose outcome it never learnt (an
//! error may follow a commit). A read answering anything else is a wrong value; a key whose
//! acknowledged value is gone at the end (read through a fresh replica, from the database) is
//! a lost write. Both must stay 0 whatever the fault.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;
use tenant_vault::api::{self, HttpSettings};
use tenant_vault::failpoint;
use tenant_vault::pg::{ClusterOptions, PgBinaries, PostgresCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{fresh_database, service_args, TestApp, TestInfisical};

/// The request timeout of the router under test: short, so a hang would show.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// A request not answered by then counts as hung (the router's timeout should fire first).
const HANG: Duration = Duration::from_secs(30);
/// How long recovery may take before the scenario calls it a failure (not a benchmark).
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// An error answer without the API's `{"error": {"code"}}` body.
const NO_CODE: &str = "(no error code)";
/// Between one client's requests: keeps 16 clients from starving a 2-core machine.
const PAUSE: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct Settings {
    pub clients: usize,
    pub keys_per_client: usize,
    /// Normal load before the fault and after recovery.
    pub steady: Duration,
    /// How long the fault lasts.
    pub fault: Duration,
}

#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub requests: u64,
    pub ok: u64,
    /// "503 unavailable", "408 ...", "hung": errors by kind.
    pub errors: BTreeMap<String, u64>,
    pub wrong_values: u64,
    pub lost_writes: u64,
    /// Reads answered 200 while the fault was on.
    pub reads_ok_during_fault: u64,
    pub max_latency: Duration,
    /// From the fault's end to the first acknowledged write.
    pub recovery: Option<Duration>,
    /// Extra figures of a scenario (probes, kills).
    pub extra: BTreeMap<String, String>,
    /// Broken expectations, in words. Must be empty.
    pub violations: Vec<String>,
}

impl Counts {
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    fn merge(&mut self, o: Counts) {
        self.requests += o.requests;
        self.ok += o.ok;
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.wrong_values += o.wrong_values;
        self.lost_writes += o.lost_writes;
        self.reads_ok_during_fault += o.reads_ok_during_fault;
        self.max_latency = self.max_latency.max(o.max_latency);
        self.violations.extend(o.violations);
    }

    fn violation(&mut self, what: impl Into<String>) {
        self.violations.push(what.into());
    }

    pub fn report(&self, scenario: &str) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let mut s = format!(
            "{scenario}: requests {}, ok {}, errors {} [{}], wrong values {}, lost acknowledged writes {}, \
             reads served during the fault {}, max latency {} ms, recovery {}",
            self.requests,
            self.ok,
            self.errors.values().sum::<u64>(),
            errors.join(", "),
            self.wrong_values,
            self.lost_writes,
            self.reads_ok_during_fault,
            self.max_latency.as_millis(),
            self.recovery
                .map(|d| format!("{} ms", d.as_millis()))
                .unwrap_or_else(|| "-".into()),
        );
        for (k, v) in &self.extra {
            s.push_str(&format!(", {k} {v}"));
        }
        for v in &self.violations {
            s.push_str(&format!("\n  VIOLATION: {v}"));
        }
        s
    }

    /// Panics with the report unless nothing was wrong or lost and no expectation broke.
    pub fn assert_clean(&self, scenario: &str) {
        let report = self.report(scenario);
        println!("{report}");
        assert_eq!(self.wrong_values, 0, "{report}");
        assert_eq!(self.lost_writes, 0, "{report}");
        assert!(self.violations.is_empty(), "{report}");
        assert!(!self.errors.contains_key("hung"), "{report}");
        // Every error is the API's JSON error, timeouts included.
        assert!(!self.errors.keys().any(|k| k.contains(NO_CODE)), "{report}");
    }
}

/// What one client knows about one of its keys.
#[derive(Debug, Default, Clone)]
pub struct KeyState {
    acked: Option<String>,
    /// Values of writes after `acked` whose outcome is unknown.
    maybe: Vec<String>,
}

impl KeyState {
    fn allows(&self, v: &str) -> bool {
        self.acked.as_deref() == Some(v) || self.maybe.iter().any(|m| m == v)
    }
}

/// A client's counts and what it knows of each of its keys.
type ClientResult = (Counts, Vec<(String, KeyState)>);

/// Clients driving one tenant of an app until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    fault: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<ClientResult>>,
}

impl Load {
    pub fn start(app: Arc<TestApp>, tenant: &str, token: &str, s: &Settings) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let fault = Arc::new(AtomicBool::new(false));
        let tasks = (0..s.clients)
            .map(|c| {
                let (app, stop, fault) = (app.clone(), stop.clone(), fault.clone());
                let (tenant, token, keys) =
                    (tenant.to_owned(), token.to_owned(), s.keys_per_client);
                tokio::spawn(
                    async move { client(app, &tenant, &token, c, keys, stop, fault).await },
                )
            })
            .collect();
        Self { stop, fault, tasks }
    }

    pub fn set_fault(&self, on: bool) {
        self.fault.store(on, Ordering::SeqCst);
    }

    pub async fn finish(self) -> (Counts, Vec<(String, KeyState)>) {
        self.stop.store(true, Ordering::SeqCst);
        let mut counts = Counts::default();
        let mut keys = Vec::new();
        for t in self.tasks {
            let (c, k) = t.await.expect("load client panicked");
            counts.merge(c);
            keys.extend(k);
        }
        (counts, keys)
    }
}

async fn client(
    app: Arc<TestApp>,
    tenant: &str,
    token: &str,
    c: usize,
    keys: usize,
    stop: Arc<AtomicBool>,
    fault: Arc<AtomicBool>,
) -> ClientResult {
    let mut counts = Counts::default();
    let mut states = vec![KeyState::default(); keys];
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let k = (n * 7 + c) % keys;
        let key = format!("C{c}_K{k}");
        let st = &mut states[k];
        // Even clients write a third of the time; odd ones only read (after a first write
        // of each key), so a fault that stalls writes cannot hide whether reads are served.
        let first = st.acked.is_none() && st.maybe.is_empty();
        let write = first || (c.is_multiple_of(2) && n.is_multiple_of(3));
        let in_fault = fault.load(Ordering::SeqCst);
        let value = format!("v-{c}-{k}-{n}");
        let started = Instant::now();
        let res = if write {
            tokio::time::timeout(
                HANG,
                app.put_secret(tenant, &key, token, json!({ "value": value })),
            )
            .await
        } else {
            tokio::time::timeout(HANG, app.get_secret(tenant, &key, token)).await
        };
        counts.max_latency = counts.max_latency.max(started.elapsed());
        counts.requests += 1;
        match res {
            Err(_) => {
                counts.error("hung".into());
                if write {
                    st.maybe.push(value);
                }
            }
            Ok(r) if r.status == StatusCode::OK => {
                counts.ok += 1;
                if write {
                    st.acked = Some(value);
                    st.maybe.clear();
                } else {
                    match r.body["value"].as_str() {
                        Some(v) if st.allows(v) => {
                            if in_fault {
                                counts.reads_ok_during_fault += 1;
                            }
                        }
                        _ => counts.wrong_values += 1,
                    }
                }
            }
            Ok(r) => {
                if !write && r.status == StatusCode::NOT_FOUND && st.acked.is_some() {
                    counts.wrong_values += 1;
                }
                counts.error(match r.code() {
                    "" => format!("{} {NO_CODE}", r.status.as_u16()),
                    code => format!("{} {code}", r.status.as_u16()),
                });
                if write {
                    st.maybe.push(value);
                }
            }
        }
        tokio::time::sleep(PAUSE).await;
    }
    let named = states
        .into_iter()
        .enumerate()
        .map(|(k, s)| (format!("C{c}_K{k}"), s))
        .collect();
    (counts, named)
}

/// Reads every key back through a fresh replica (an empty cache: the database's answer) and
/// counts wrong values and lost acknowledged writes.
pub async fn verify(
    app: &TestApp,
    tenant: &str,
    token: &str,
    keys: &[(String, KeyState)],
    counts: &mut Counts,
) {
    let fresh = app.another_instance().await;
    for (key, st) in keys {
        let deadline = Instant::now() + RECOVERY_BOUND;
        let res = loop {
            let r = fresh.get_secret(tenant, key, token).await;
            if !r.status.is_server_error() || Instant::now() > deadline {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match (res.status, res.body["value"].as_str()) {
            (StatusCode::OK, Some(v)) if st.allows(v) => {}
            (StatusCode::OK, _) if st.acked.is_some() => counts.lost_writes += 1,
            (StatusCode::OK, _) => counts.wrong_values += 1,
            (StatusCode::NOT_FOUND, _) if st.acked.is_some() => counts.lost_writes += 1,
            (StatusCode::NOT_FOUND, _) => {}
            (s, _) => counts.violation(format!(
                "{key} unreadable after the fault: {s} {}",
                res.code()
            )),
        }
    }
}

/// Time until a write is acknowledged again.
async fn recovery(app: &TestApp, tenant: &str, token: &str, counts: &mut Counts) {
    let started = Instant::now();
    loop {
        let r = app
            .put_secret(tenant, "PROBE", token, json!({"value": "probe"}))
            .await;
        if r.status == StatusCode::OK {
            counts.recovery = Some(started.elapsed());
            return;
        }
        if started.elapsed() > RECOVERY_BOUND {
            counts.violation(format!(
                "no acknowledged write within {RECOVERY_BOUND:?} of the fault's end"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// After the fault, a change made by another replica still reaches this one's cache (its
/// listener came back), so it cannot keep serving a value that was replaced.
async fn replicas_still_hear(app: &TestApp, tenant: &str, token: &str, counts: &mut Counts) {
    let put = |a: &'static str| json!({ "value": a });
    let r = app
        .put_secret(tenant, "COHERENT", token, put("before"))
        .await;
    let cached = app.get_secret(tenant, "COHERENT", token).await;
    if r.status != StatusCode::OK || cached.body["value"] != "before" {
        counts.violation(format!(
            "COHERENT after the fault: {} / {}",
            r.text, cached.text
        ));
        return;
    }
    let other = app.another_instance().await;
    let r = other
        .put_secret(tenant, "COHERENT", token, put("after"))
        .await;
    if r.status != StatusCode::OK {
        counts.violation(format!("COHERENT through another replica: {}", r.text));
        return;
    }
    let deadline = Instant::now() + RECOVERY_BOUND;
    while app.get_secret(tenant, "COHERENT", token).await.body["value"] != "after" {
        if Instant::now() > deadline {
            counts.violation("a replica kept serving a replaced value after the fault (its listener did not come back)");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn with_timeout(mut app: TestApp) -> TestApp {
    app.router = api::router(
        app.vault.clone(),
        &HttpSettings {
            request_timeout: REQUEST_TIMEOUT,
            ..Default::default()
        },
    );
    app
}

/// A private PostgreSQL cluster (never the shared one) restarted with a fast shutdown, the
/// way `pg_ctl restart -m fast` does it, on the same port, under load.
pub async fn pg_restart(s: &Settings) -> Counts {
    let binaries = PgBinaries::locate().expect("PostgreSQL binaries");
    let dir = std::env::temp_dir().join(format!(
        "tenant-vault-faults-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let opts = |port| ClusterOptions {
        dir: dir.clone(),
        port,
        throwaway: true,
        max_connections: 100,
        ssl: false,
    };
    let cluster = PostgresCluster::start(&binaries, opts(None))
        .await
        .expect("private PostgreSQL");
    let port = cluster.port();
    let admin = sqlx::PgPool::connect(&cluster.url("postgres"))
        .await
        .unwrap();
    sqlx::query("create database faults")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = cluster.url("faults");
    let pool = tenant_vault::store::connect(&url, 10).await.unwrap();
    let app = Arc::new(with_timeout(
        TestApp::on_own_database(pool, url, service_args(60)).await,
    ));
    let token = app.tenant("load").await;

    let load = Load::start(app.clone(), "load", &token, s);
    tokio::time::sleep(s.steady).await;
    load.set_fault(true);
    cluster.stop().await.expect("fast shutdown");
    tokio::time::sleep(s.fault).await;
    let cluster = PostgresCluster::start(&binaries, opts(Some(port)))
        .await
        .expect("PostgreSQL back");
    load.set_fault(false);
    let mut probe = Counts::default();
    recovery(&app, "load", &token, &mut probe).await;
    tokio::time::sleep(s.steady).await;
    let (mut counts, keys) = load.finish().await;
    counts.recovery = probe.recovery;
    counts.violations.extend(probe.violations);
    if counts.reads_ok_during_fault == 0 {
        counts.violation("no read was served while PostgreSQL was down");
    }
    replicas_still_hear(&app, "load", &token, &mut counts).await;
    verify(&app, "load", &token, &keys, &mut counts).await;
    drop(app);
    let _ = cluster.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    counts
}

/// Infisical down, then answering 429 with Retry-After (the emulator's switches): hits are
/// served, misses fail fast with 503, and the master-key path (new tenants, writes) works.
pub async fn infisical_outage(s: &Settings) -> Counts {
    const FOLDER: &str = "/tenants/load";
    let names: Vec<(String, String)> = (0..200)
        .map(|i| (format!("INF_{i}"), format!("from-infisical-{i}")))
        .collect();
    let seeded: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|(n, v)| (FOLDER, n.as_str(), v.as_str()))
        .collect();
    let infisical = TestInfisical::start(&seeded).await;
    let app = Arc::new(with_timeout(
        TestApp::with_infisical(&infisical, service_args(60)).await,
    ));
    let token = app.tenant("load").await;
    let mut counts = Counts::default();
    // Hits: the first ten are read (imported, cached) before the fault.
    for (n, v) in &names[..10] {
        let r = app.get_secret("load", n, &token).await;
        if r.body["value"] != v.as_str() {
            counts.violation(format!("{n} before the fault: {} {}", r.status, r.text));
        }
    }
    let load = Load::start(app.clone(), "load", &token, s);
    tokio::time::sleep(s.steady).await;
    load.set_fault(true);
    // One miss per round; the last name is kept for the recovery check.
    let mut misses = names[10..names.len() - 1].iter();
    let mut max_miss = Duration::ZERO;
    let mut tenants = 0;
    // 429 first: once `down` has opened the client's circuit breaker, no request reaches
    // Infisical until its cool-down (10 s) has passed, and a 429 would never be seen.
    for (phase, patch) in [
        ("429", json!({"rate_limit": true, "retry_after_secs": 2})),
        ("down", json!({"rate_limit": false, "down": true})),
    ] {
        infisical.faults(patch);
        let injected = infisical.emulator().stats().faults_injected;
        let until = Instant::now() + s.fault;
        while Instant::now() < until {
            for (n, v) in &names[..10] {
                let r = app.get_secret("load", n, &token).await;
                if r.status != StatusCode::OK || r.body["value"] != v.as_str() {
                    counts.violation(format!(
                        "hit {n} with Infisical {phase}: {} {}",
                        r.status, r.text
                    ));
                }
            }
            if let Some((n, _)) = misses.next() {
                let started = Instant::now();
                let r = app.get_secret("load", n, &token).await;
                max_miss = max_miss.max(started.elapsed());
                // dependency_unavailable, not the request timeout cutting a wait short.
                if r.status != StatusCode::SERVICE_UNAVAILABLE
                    || r.code() != "dependency_unavailable"
                {
                    counts.violation(format!(
                        "miss {n} with Infisical {phase}: {} {}",
                        r.status, r.text
                    ));
                }
            }
            // The master-key path: a new tenant gets a data key wrapped by the master key.
            tenants += 1;
            let slug = format!("during-{tenants}");
            let res = app
                .call(
                    Method::POST,
                    "/v1/admin/tenants",
                    Some(&app.admin_token),
                    Some(json!({"slug": slug, "name": slug})),
                )
                .await;
            if res.status != StatusCode::CREATED {
                counts.violation(format!(
                    "new tenant with Infisical {phase}: {} {}",
                    res.status, res.text
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let answered = infisical.emulator().stats().faults_injected - injected;
        counts
            .extra
            .insert(format!("infisical {phase} answers"), answered.to_string());
        if answered == 0 {
            counts.violation(format!(
                "Infisical never answered {phase}: the fault was not exercised"
            ));
        }
    }
    infisical.faults(json!({"down": false, "rate_limit": false}));
    load.set_fault(false);
    // Recovery: a miss is served from Infisical again, once the client's circuit breaker,
    // opened by the outage, lets a probe through (cool-down 10 s).
    let started = Instant::now();
    let (n, v) = names.last().expect("names");
    loop {
        let r = app.get_secret("load", n, &token).await;
        if r.status == StatusCode::OK && r.body["value"] == v.as_str() {
            counts.recovery = Some(started.elapsed());
            break;
        }
        if started.elapsed() > RECOVERY_BOUND {
            counts.violation(format!(
                "miss {n} not served within {RECOVERY_BOUND:?} of Infisical's return"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(s.steady).await;
    let (mut load_counts, keys) = load.finish().await;
    verify(&app, "load", &token, &keys, &mut load_counts).await;
    if load_counts.ok == 0 {
        load_counts.violation("the vault's own keys were not served");
    }
    load_counts.recovery = counts.recovery;
    load_counts.extra.append(&mut counts.extra);
    load_counts.merge(counts);
    load_counts.extra.insert(
        "max miss latency".into(),
        format!("{} ms", max_miss.as_millis()),
    );
    load_counts.extra.insert(
        "tenants created during the fault".into(),
        tenants.to_string(),
    );
    if max_miss > Duration::from_secs(10) {
        load_counts.violation(format!("a miss took {max_miss:?}, not fast"));
    }
    load_counts
}

/// Runs `tenant-vault rotate ...` stopped at `step`, SIGKILLs it there. False if the process
/// ended without reaching the step.
fn kill_at(app: &TestApp, args: &[&str], step: &str) -> bool {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-vault"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(rotate_env(app))
        .env(failpoint::ENV, step)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let marker = format!("{} reached: {step}", failpoint::ENV);
    let reached = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains(&marker));
    if reached {
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    }
    let status = child.wait().unwrap();
    reached && std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL)
}

fn rotate_env(app: &TestApp) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", app.db_url.clone()),
        ("TENANT_VAULT_MASTER_KEY_SOURCE", "dev-file".into()),
        (
            "TENANT_VAULT_DATA_DIR",
            app.data_dir.path().display().to_string(),
        ),
    ]
}

/// `tenant-vault rotate` killed with SIGKILL at each step of a master key rotation and of a
/// data key rotation with its re-encryption, under load; after each kill every secret reads
/// back right and the next rotation succeeds.
pub async fn kill_rotations(s: &Settings, secrets: usize) -> Counts {
    let app = Arc::new(with_timeout(TestApp::new().await));
    let big = app.tenant("big").await;
    let seeded: Vec<(String, String)> = (0..secrets)
        .map(|i| (format!("S_{i}"), format!("seeded-{i}")))
        .collect();
    for (k, v) in &seeded {
        let r = app.put_secret("big", k, &big, json!({ "value": v })).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    }
    let token = app.tenant("load").await;
    let load = Load::start(app.clone(), "load", &token, s);
    let mut counts = Counts::default();
    let mut killed = 0;
    for step in failpoint::steps::ALL {
        let args: &[&str] = if step.starts_with("master") {
            &["rotate", "master-key"]
        } else {
            &["rotate", "data-keys", "--tenant", "big"]
        };
        load.set_fault(true);
        // The in-process replica's own re-encryption sweep may take the work first; then the
        // step is not reached and a new rotation makes new work.
        let mut reached = false;
        for _ in 0..3 {
            let (a, st) = (app.clone(), step.to_string());
            let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            reached = tokio::task::spawn_blocking(move || {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                kill_at(&a, &argv, &st)
            })
            .await
            .unwrap();
            if reached {
                break;
            }
        }
        load.set_fault(false);
        if !reached {
            counts.violation(format!("step {step} never reached"));
            continue;
        }
        killed += 1;
        check_seeded(&app, &big, &seeded, step, &mut counts).await;
        let env = rotate_env(&app);
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (ok, _, err) = tokio::task::spawn_blocking(move || {
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            super::run_binary(&argv, &env)
        })
        .await
        .unwrap();
        if !ok {
            counts.violation(format!("the rotation after a kill at {step} failed: {err}"));
        }
        check_seeded(&app, &big, &seeded, step, &mut counts).await;
    }
    let (mut load_counts, keys) = load.finish().await;
    verify(&app, "load", &token, &keys, &mut load_counts).await;
    load_counts.merge(counts);
    load_counts
        .extra
        .insert("processes killed".into(), killed.to_string());
    load_counts
}

async fn check_seeded(
    app: &TestApp,
    token: &str,
    seeded: &[(String, String)],
    step: &str,
    counts: &mut Counts,
) {
    let fresh = app.another_instance().await;
    for (k, v) in seeded {
        let r = fresh.get_secret("big", k, token).await;
        if r.status != StatusCode::OK {
            counts.violation(format!(
                "after a kill at {step}: {k}: {} {}",
                r.status,
                r.code()
            ));
        } else if r.body["value"] != v.as_str() {
            counts.wrong_values += 1;
        }
    }
}

/// A TCP proxy between the vault and PostgreSQL that can stop forwarding without closing
/// anything: packets vanish, as when a network path is black-holed.
pub struct Proxy {
    pub addr: SocketAddr,
    hole: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hole = Arc::new(AtomicBool::new(false));
        let h = hole.clone();
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let hole = h.clone();
                tokio::spawn(async move {
                    let Ok(up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (dr, dw) = down.into_split();
                    let (ur, uw) = up.into_split();
                    tokio::join!(pump(dr, uw, hole.clone()), pump(ur, dw, hole));
                });
            }
        });
        Self { addr, hole, task }
    }

    pub fn black_hole(&self, on: bool) {
        self.hole.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while hole.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// The vault's connection to PostgreSQL black-holed, then restored: no request outlives the
/// request timeout, and the pool recovers.
pub async fn black_hole(s: &Settings) -> Counts {
    let (pool, url) = fresh_database().await;
    pool.close().await;
    let opts: PgConnectOptions = url.parse().unwrap();
    let upstream = tokio::net::lookup_host((opts.get_host(), opts.get_port()))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let proxied = opts.port(proxy.addr.port()).to_url_lossy().to_string();
    let pool = tenant_vault::store::connect(&proxied, 10).await.unwrap();
    let app = Arc::new(with_timeout(
        TestApp::on_own_database(pool, proxied, service_args(60)).await,
    ));
    let token = app.tenant("load").await;
    let load = Load::start(app.clone(), "load", &token, s);
    tokio::time::sleep(s.steady).await;
    load.set_fault(true);
    proxy.black_hole(true);
    tokio::time::sleep(s.fault).await;
    proxy.black_hole(false);
    load.set_fault(false);
    let mut probe = Counts::default();
    recovery(&app, "load", &token, &mut probe).await;
    tokio::time::sleep(s.steady).await;
    let (mut counts, keys) = load.finish().await;
    counts.recovery = probe.recovery;
    counts.violations.extend(probe.violations);
    // The router's timeout answers; a little slack for a loaded machine, no more.
    let bound = REQUEST_TIMEOUT + Duration::from_secs(5);
    if counts.max_latency > bound {
        counts.violation(format!(
            "a request took {:?}, past the request timeout {REQUEST_TIMEOUT:?}",
            counts.max_latency
        ));
    }
    replicas_still_hear(&app, "load", &token, &mut counts).await;
    verify(&app, "load", &token, &keys, &mut counts).await;
    counts
}
