//! An in-memory emulator of the part of Infisical's HTTP API that tenant-vault uses.
//!
//! Tests, the bench and `tenant-vault dev` need an Infisical that starts in milliseconds, can
//! be broken on purpose (latency, 5xx, 429, outage, token expiry) and behaves like the real
//! server, so the client written against it also works against Infisical Cloud and
//! self-hosted servers. Every shape here (paths, query parameters, JSON fields, status codes,
//! error bodies) follows `infisical-api.md`; where old (Oct-2024) and current servers differ,
//! one behaviour is picked and named in `docs/infisical-emulator.md`.
//!
//! Served routes:
//! - `POST /api/v1/auth/universal-auth/login`, `POST /api/v1/auth/token/renew`,
//!   `POST /api/v1/auth/token/revoke`
//! - `GET /api/v3/secrets/raw`, `GET|POST|PATCH|DELETE /api/v3/secrets/raw/{secretName}`
//! - `GET|POST /api/v1/folders`
//! - control plane (no auth, bind to loopback): `GET|PUT /_emulator/faults`,
//!   `POST /_emulator/seed`, `GET /_emulator/stats`, `POST /_emulator/tokens/expire`
//!
//! Secret values and client secrets are never logged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::trim_value;

/// Fastify's default body limit, which Infisical keeps: larger bodies get a 500.
const BODY_LIMIT: usize = 1024 * 1024;
/// Infisical's default `accessTokenMaxTTL` (30 days).
const DEFAULT_MAX_TTL: u64 = 2_592_000;
/// Recursive list depth limit.
const MAX_DEPTH: usize = 20;

// ---- configuration -------------------------------------------------------------------------

/// Fault switches, set with `PUT /_emulator/faults` (any subset) or [`Emulator::set_faults`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay before every API answer.
    pub latency_ms: u64,
    /// Fraction (0.0..=1.0) of API requests answered 500.
    pub error_rate: f64,
    /// Every API request answered 429 with `retry-after: retry_after_secs`.
    pub rate_limit: bool,
    /// TTL (`expiresIn`) of access tokens issued from now on; 0 = no expiry.
    pub token_ttl_secs: u64,
    /// Every API request answered 503.
    pub down: bool,
    /// `retry-after` (seconds) on injected 429s.
    pub retry_after_secs: u64,
    /// The next N API requests answer 500 (then the counter runs out). Deterministic 5xx.
    pub fail_next: u32,
    /// The next N API requests answer 429. Deterministic rate limiting.
    pub rate_limit_next: u32,
    /// API requests answer 200 with a truncated JSON body.
    pub malformed_json: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            error_rate: 0.0,
            rate_limit: false,
            token_ttl_secs: 7200,
            down: false,
            retry_after_secs: 1,
            fail_next: 0,
            rate_limit_next: 0,
            malformed_json: false,
        }
    }
}

/// A partial [`Faults`]: what `PUT /_emulator/faults` takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    pub latency_ms: Option<u64>,
    pub error_rate: Option<f64>,
    pub rate_limit: Option<bool>,
    pub token_ttl_secs: Option<u64>,
    pub down: Option<bool>,
    pub retry_after_secs: Option<u64>,
    pub fail_next: Option<u32>,
    pub rate_limit_next: Option<u32>,
    pub malformed_json: Option<bool>,
}

impl FaultsPatch {
    fn apply(self, f: &mut Faults) -> Result<(), String> {
        if let Some(r) = self.error_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err("error_rate must be between 0.0 and 1.0".into());
            }
            f.error_rate = r;
        }
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field { f.$field = v; } )* };
        }
        set!(
            latency_ms,
            rate_limit,
            token_ttl_secs,
            down,
            retry_after_secs,
            fail_next,
            rate_limit_next,
            malformed_json
        );
        Ok(())
    }
}

/// A machine identity with Universal Auth.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedIdentity {
    pub client_id: String,
    pub client_secret: String,
    /// `accessTokenMaxTTL` in seconds (default 2592000; 0 = none).
    #[serde(default, rename = "accessTokenMaxTTL")]
    pub access_token_max_ttl: Option<u64>,
    /// `admin` (default) or `viewer` (read only).
    #[serde(default)]
    pub role: Role,
    /// Project ids it is a member of; absent = every project.
    #[serde(default)]
    pub projects: Option<Vec<String>>,
}

impl std::fmt::Debug for SeedIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedIdentity")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    Admin,
    Viewer,
}

/// A project with environments, folders and secrets.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedProject {
    pub id: String,
    #[serde(default)]
    pub slug: Option<String>,
    /// Environment slugs (default `dev`, `staging`, `prod`).
    #[serde(default = "default_envs")]
    pub environments: Vec<String>,
    /// env slug -> folder paths to create (parents created on the way).
    #[serde(default)]
    pub folders: BTreeMap<String, Vec<String>>,
    /// env slug -> folder path -> secret name -> value. Folders are created as needed;
    /// values are trimmed as the API would.
    #[serde(default)]
    pub secrets: BTreeMap<String, BTreeMap<String, BTreeMap<String, String>>>,
}

fn default_envs() -> Vec<String> {
    vec!["dev".into(), "staging".into(), "prod".into()]
}

/// The seed file format (see `docs/infisical-emulator.md`).
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub identities: Vec<SeedIdentity>,
    #[serde(default)]
    pub projects: Vec<SeedProject>,
}

impl Seed {
    /// Reads a seed file.
    pub fn from_file(path: impl AsRef<FsPath>) -> Result<Self, String> {
        let text = std::fs::read_to_string(path.as_ref())
            .map_err(|e| format!("cannot read {}: {e}", path.as_ref().display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a valid seed file: {e}", path.as_ref().display()))
    }

    /// One admin identity and one project with the default environments, empty.
    pub fn single(project_id: &str, client_id: &str, client_secret: &str) -> Self {
        Self {
            identities: vec![SeedIdentity {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
                access_token_max_ttl: None,
                role: Role::Admin,
                projects: None,
            }],
            projects: vec![SeedProject {
                id: project_id.into(),
                slug: None,
                environments: default_envs(),
                folders: BTreeMap::new(),
                secrets: BTreeMap::new(),
            }],
        }
    }

    /// Adds one secret (creating the project, environment and folder entries as needed).
    pub fn with_secret(
        mut self,
        project_id: &str,
        environment: &str,
        path: &str,
        name: &str,
        value: &str,
    ) -> Self {
        let idx = match self.projects.iter().position(|p| p.id == project_id) {
            Some(i) => i,
            None => {
                self.projects.push(SeedProject {
                    id: project_id.into(),
                    slug: None,
                    environments: default_envs(),
                    folders: BTreeMap::new(),
                    secrets: BTreeMap::new(),
                });
                self.projects.len() - 1
            }
        };
        let project = &mut self.projects[idx];
        if !project.environments.iter().any(|e| e == environment) {
            project.environments.push(environment.into());
        }
        project
            .secrets
            .entry(environment.into())
            .or_default()
            .entry(path.into())
            .or_default()
            .insert(name.into(), value.into());
        self
    }
}

/// How to build an [`Emulator`].
#[derive(Clone, Default)]
pub struct EmulatorConfig {
    pub seed: Seed,
    pub faults: Faults,
    /// Per client IP and route pattern, fixed 60 s windows, like the real limiter
    /// (Oct-2024 self-hosted: 40 for secret routes). `None`: no limiter, as current
    /// self-hosted servers. Independent of the `rate_limit` fault switch.
    pub rate_limit_per_minute: Option<u32>,
}

/// Counters, read with `GET /_emulator/stats` or [`Emulator::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests that reached an API route (faulted ones included).
    pub api_requests: u64,
    /// Successful logins.
    pub logins: u64,
    /// Successful renewals.
    pub renewals: u64,
    /// Answers replaced by a fault (5xx, 429, 503, malformed).
    pub faults_injected: u64,
}

#[derive(Default)]
struct Counters {
    api_requests: AtomicU64,
    logins: AtomicU64,
    renewals: AtomicU64,
    faults_injected: AtomicU64,
}

// ---- state ---------------------------------------------------------------------------------

struct Identity {
    id: String,
    client_secret_id: String,
    client_secret: Zeroizing<String>,
    max_ttl: u64,
    role: Role,
    projects: Option<HashSet<String>>,
}

struct TokenRec {
    client_id: String,
    issued: Instant,
    ttl: u64,
    max_ttl: u64,
    expires: Option<Instant>,
}

struct SecretVersion {
    value: Zeroizing<String>,
    comment: String,
    at: String,
}

struct SecretRec {
    id: String,
    name: String,
    kind: String,
    created_at: String,
    versions: Vec<SecretVersion>,
}

struct FolderRec {
    id: String,
    name: String,
    parent_id: Option<String>,
    created_at: String,
    /// Keyed by (type, name).
    secrets: BTreeMap<(String, String), SecretRec>,
}

struct Env {
    id: String,
    /// Keyed by normalised path; `/` always exists.
    folders: BTreeMap<String, FolderRec>,
}

struct Project {
    slug: String,
    envs: BTreeMap<String, Env>,
}

#[derive(Default)]
struct Data {
    identities: HashMap<String, Identity>,
    projects: BTreeMap<String, Project>,
    tokens: HashMap<String, TokenRec>,
    windows: HashMap<(IpAddr, String), (Instant, u32)>,
}

struct Shared {
    data: Mutex<Data>,
    faults: Mutex<Faults>,
    jwt_key: [u8; 32],
    counters: Counters,
    rate_limit_per_minute: Option<u32>,
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Env {
    fn new() -> Self {
        let mut folders = BTreeMap::new();
        folders.insert(
            "/".to_owned(),
            FolderRec {
                id: uuid(),
                name: "root".into(),
                parent_id: None,
                created_at: now_iso(),
                secrets: BTreeMap::new(),
            },
        );
        Self {
            id: uuid(),
            folders,
        }
    }

    /// Creates `name` in `parent` (and `parent` on the way, as the Oct-2024 server does).
    /// Returns the folder's path.
    fn ensure_folder(&mut self, parent: &str, name: &str) -> String {
        let mut cur = String::from("/");
        let mut parts: Vec<&str> = parent.split('/').filter(|s| !s.is_empty()).collect();
        parts.push(name);
        for part in parts {
            let parent_id = self.folders[&cur].id.clone();
            let path = if cur == "/" {
                format!("/{part}")
            } else {
                format!("{cur}/{part}")
            };
            self.folders
                .entry(path.clone())
                .or_insert_with(|| FolderRec {
                    id: uuid(),
                    name: part.to_owned(),
                    parent_id: Some(parent_id),
                    created_at: now_iso(),
                    secrets: BTreeMap::new(),
                });
            cur = path;
        }
        cur
    }

    fn ensure_path(&mut self, path: &str) -> String {
        match path.rsplit_once('/') {
            Some((parent, name)) if !name.is_empty() => self.ensure_folder(parent, name),
            _ => "/".into(),
        }
    }
}

impl Data {
    fn apply_seed(&mut self, seed: &Seed) -> Result<(), String> {
        for p in &seed.projects {
            if p.id.is_empty() {
                return Err("a project needs an id".into());
            }
            let project = self
                .projects
                .entry(p.id.clone())
                .or_insert_with(|| Project {
                    slug: p.slug.clone().unwrap_or_else(|| p.id.clone()),
                    envs: BTreeMap::new(),
                });
            if let Some(slug) = &p.slug {
                project.slug = slug.clone();
            }
            for env in &p.environments {
                project.envs.entry(env.clone()).or_insert_with(Env::new);
            }
            let check_path = |path: &str| -> Result<String, String> {
                match normalise_path(path) {
                    Ok(p) if p.starts_with('/') && !p.contains("//") => Ok(p),
                    _ => Err(format!("bad folder path {path:?} in seed")),
                }
            };
            for (env, paths) in &p.folders {
                let e = project
                    .envs
                    .get_mut(env)
                    .ok_or_else(|| format!("folders for unknown environment {env:?}"))?;
                for path in paths {
                    e.ensure_path(&check_path(path)?);
                }
            }
            for (env, by_path) in &p.secrets {
                let e = project
                    .envs
                    .get_mut(env)
                    .ok_or_else(|| format!("secrets for unknown environment {env:?}"))?;
                for (path, secrets) in by_path {
                    let path = e.ensure_path(&check_path(path)?);
                    let folder = e.folders.get_mut(&path).expect("just created");
                    for (name, value) in secrets {
                        if name.trim().is_empty() || name.contains('/') || name.contains(':') {
                            return Err(format!("bad secret name {name:?} in seed"));
                        }
                        let key = ("shared".to_owned(), name.clone());
                        let version = SecretVersion {
                            value: Zeroizing::new(trim_value(value)),
                            comment: String::new(),
                            at: now_iso(),
                        };
                        match folder.secrets.get_mut(&key) {
                            Some(rec) => rec.versions.push(version),
                            None => {
                                folder.secrets.insert(
                                    key,
                                    SecretRec {
                                        id: uuid(),
                                        name: name.clone(),
                                        kind: "shared".into(),
                                        created_at: now_iso(),
                                        versions: vec![version],
                                    },
                                );
                            }
                        }
                    }
                }
            }
        }
        for i in &seed.identities {
            if i.client_id.is_empty() || i.client_secret.is_empty() {
                return Err("an identity needs a clientId and a clientSecret".into());
            }
            self.identities.insert(
                i.client_id.clone(),
                Identity {
                    id: uuid(),
                    client_secret_id: uuid(),
                    client_secret: Zeroizing::new(i.client_secret.clone()),
                    max_ttl: i.access_token_max_ttl.unwrap_or(DEFAULT_MAX_TTL),
                    role: i.role,
                    projects: i.projects.as_ref().map(|v| v.iter().cloned().collect()),
                },
            );
        }
        Ok(())
    }
}

// ---- errors --------------------------------------------------------------------------------

/// An Infisical-shaped error answer:
/// `{"reqId","statusCode","message","error"}` (current servers' shape, with `reqId`).
struct ApiError {
    status: StatusCode,
    message: Value,
    error: String,
    /// Rejected during authentication: real servers add no `x-ratelimit-*` headers then.
    auth: bool,
}

/// Marks a response rejected during authentication.
#[derive(Clone, Copy)]
struct AuthRejected;

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            status,
            message: Value::String(message.into()),
            error: error.into(),
            auth: false,
        }
    }
    fn auth(mut self) -> Self {
        self.auth = true;
        self
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, "BadRequest")
    }
    fn internal(error: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            error,
        )
    }
    fn validation(issues: Vec<Value>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: Value::Array(issues),
            error: "ValidationFailure".into(),
            auth: false,
        }
    }
    fn folder_not_found(path: &str, env: &str, op: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Folder with path '{path}' in environment with slug '{env}' not found"),
            op,
        )
    }
}

fn req_id() -> String {
    let mut rng = rand::thread_rng();
    let s: String = (0..14)
        .map(|_| {
            let n = rng.gen_range(0..36u8);
            (if n < 10 { b'0' + n } else { b'a' + n - 10 }) as char
        })
        .collect();
    format!("req-{s}")
}

fn error_body(status: StatusCode, message: Value, error: &str) -> Response {
    let body = json!({
        "reqId": req_id(),
        "statusCode": status.as_u16(),
        "message": message,
        "error": error,
    });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = error_body(self.status, self.message, &self.error);
        if self.auth {
            resp.extensions_mut().insert(AuthRejected);
        }
        resp
    }
}

type ApiResult = Result<Response, ApiError>;

fn issue(path: &str, expected: &str, received: &str, message: &str) -> Value {
    let code = if received == "undefined" || expected != "enum" {
        "invalid_type"
    } else {
        "invalid_enum_value"
    };
    json!({"code": code, "expected": expected, "received": received, "path": [path], "message": message})
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A JSON body read like fastify + zod: over 1 MiB or not JSON is a 500; schema violations
/// are collected as zod issues and answered 422.
struct JsonBody {
    map: Map<String, Value>,
    issues: Vec<Value>,
}

impl JsonBody {
    async fn read(body: Body) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .map_err(|_| ApiError::internal("InternalServerError"))?;
        let bytes = Zeroizing::new(bytes.to_vec());
        let value: Value = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            Value::Object(Map::new())
        } else {
            serde_json::from_slice(&bytes).map_err(|_| ApiError::internal("InternalServerError"))?
        };
        match value {
            Value::Object(map) => Ok(Self {
                map,
                issues: Vec::new(),
            }),
            other => Err(ApiError::validation(vec![issue(
                "",
                "object",
                json_type(&other),
                "Expected object",
            )])),
        }
    }

    fn string(&mut self, key: &str, required: bool) -> Option<String> {
        match self.map.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.issues
                        .push(issue(key, "string", "undefined", "Required"));
                }
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => {
                let received = json_type(other);
                self.issues.push(issue(
                    key,
                    "string",
                    received,
                    &format!("Expected string, received {received}"),
                ));
                None
            }
        }
    }

    fn kind(&mut self) -> String {
        match self.string("type", false).as_deref() {
            None | Some("shared") => "shared".into(),
            Some("personal") => "personal".into(),
            Some(_) => {
                self.issues.push(json!({
                    "code": "invalid_enum_value",
                    "options": ["shared", "personal"],
                    "path": ["type"],
                    "message": "Invalid enum value. Expected 'shared' | 'personal'",
                }));
                "shared".into()
            }
        }
    }

    fn finish(self) -> Result<Map<String, Value>, ApiError> {
        if self.issues.is_empty() {
            Ok(self.map)
        } else {
            Err(ApiError::validation(self.issues))
        }
    }
}

// ---- the emulator --------------------------------------------------------------------------

/// The emulator: shared state behind an axum router. Cheap to clone.
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

/// A running emulator (see [`Emulator::spawn`]). Dropping it stops the server.
pub struct EmulatorHandle {
    emulator: Emulator,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The emulator it serves, for changing faults or seeding in-process.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(join) = self.join.take() {
            let _ = join.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Emulator {
    /// Builds an emulator. Panics only if the configured seed is invalid (use
    /// [`Emulator::try_new`] to get the error instead).
    pub fn new(config: EmulatorConfig) -> Self {
        Self::try_new(config).expect("invalid emulator seed")
    }

    pub fn try_new(config: EmulatorConfig) -> Result<Self, String> {
        let mut data = Data::default();
        data.apply_seed(&config.seed)?;
        let mut jwt_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut jwt_key);
        Ok(Self {
            shared: Arc::new(Shared {
                data: Mutex::new(data),
                faults: Mutex::new(config.faults),
                jwt_key,
                counters: Counters::default(),
                rate_limit_per_minute: config.rate_limit_per_minute,
            }),
        })
    }

    /// Adds identities, projects, folders and secrets (merging with what is there).
    pub fn seed(&self, seed: &Seed) -> Result<(), String> {
        lock(&self.shared.data).apply_seed(seed)
    }

    /// The current data (identities, folders, latest secret values) as a seed, so that a
    /// caller can persist it and seed a later emulator with it (`tenant-vault dev` does).
    pub fn snapshot(&self) -> Seed {
        let d = lock(&self.shared.data);
        let identities = d
            .identities
            .iter()
            .map(|(client_id, i)| SeedIdentity {
                client_id: client_id.clone(),
                client_secret: i.client_secret.to_string(),
                access_token_max_ttl: Some(i.max_ttl),
                role: i.role,
                projects: i.projects.as_ref().map(|p| p.iter().cloned().collect()),
            })
            .collect();
        let projects = d
            .projects
            .iter()
            .map(|(id, p)| {
                let mut folders = BTreeMap::new();
                let mut secrets = BTreeMap::new();
                for (env_slug, env) in &p.envs {
                    let paths: Vec<String> =
                        env.folders.keys().filter(|k| *k != "/").cloned().collect();
                    folders.insert(env_slug.clone(), paths);
                    let mut by_path = BTreeMap::new();
                    for (path, folder) in &env.folders {
                        let values: BTreeMap<String, String> = folder
                            .secrets
                            .values()
                            .filter(|r| r.kind == "shared")
                            .filter_map(|r| {
                                r.versions
                                    .last()
                                    .map(|v| (r.name.clone(), v.value.to_string()))
                            })
                            .collect();
                        if !values.is_empty() {
                            by_path.insert(path.clone(), values);
                        }
                    }
                    secrets.insert(env_slug.clone(), by_path);
                }
                SeedProject {
                    id: id.clone(),
                    slug: Some(p.slug.clone()),
                    environments: p.envs.keys().cloned().collect(),
                    folders,
                    secrets,
                }
            })
            .collect();
        Seed {
            identities,
            projects,
        }
    }

    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Applies a partial change; refuses an `error_rate` outside 0..=1.
    pub fn patch_faults(&self, patch: FaultsPatch) -> Result<Faults, String> {
        let mut f = lock(&self.shared.faults);
        let mut next = f.clone();
        patch.apply(&mut next)?;
        *f = next.clone();
        Ok(next)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            api_requests: c.api_requests.load(Ordering::Relaxed),
            logins: c.logins.load(Ordering::Relaxed),
            renewals: c.renewals.load(Ordering::Relaxed),
            faults_injected: c.faults_injected.load(Ordering::Relaxed),
        }
    }

    /// Expires every issued access token now (server-side TTL expiry: the next use answers
    /// 401 "Failed to renew MI access token due to TTL expiration").
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for t in lock(&self.shared.data).tokens.values_mut() {
            t.expires = Some(now);
        }
    }

    /// The axum router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
    /// so the rate limiter can key on the client IP (it falls back to one shared bucket).
    pub fn router(&self) -> Router {
        let state = self.shared.clone();
        let api = Router::new()
            .route("/api/v1/auth/universal-auth/login", post(login))
            .route("/api/v1/auth/token/renew", post(renew))
            .route("/api/v1/auth/token/revoke", post(revoke))
            .route("/api/v3/secrets/raw", get(list_secrets))
            .route(
                "/api/v3/secrets/raw/{secret_name}",
                get(get_secret)
                    .post(create_secret)
                    .patch(update_secret)
                    .delete(delete_secret),
            )
            .route("/api/v1/folders", get(list_folders).post(create_folder))
            .route_layer(middleware::from_fn_with_state(state.clone(), api_layer))
            .route(
                "/_emulator/faults",
                get(get_faults_handler).put(put_faults_handler),
            )
            .route("/_emulator/seed", post(seed_handler))
            .route("/_emulator/stats", get(stats_handler))
            .route("/_emulator/tokens/expire", post(expire_handler))
            .method_not_allowed_fallback(route_not_found)
            .fallback(route_not_found)
            .layer(DefaultBodyLimit::disable())
            .with_state(state);
        // The real router ignores trailing slashes; strip one before routing.
        let normalised = tower::ServiceExt::map_request(api, strip_trailing_slash);
        Router::new().fallback_service(normalised)
    }

    /// Serves the emulator on `addr` (use port 0 for a free one) until the handle is dropped
    /// or shut down. Returns the bound address.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<(SocketAddr, EmulatorHandle)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = self.router();
        let join = tokio::spawn(async move {
            let server = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "Infisical emulator stopped");
            }
        });
        tracing::info!(addr = %local, "Infisical emulator listening");
        Ok((
            local,
            EmulatorHandle {
                emulator: self,
                shutdown: Some(tx),
                join: Some(join),
            },
        ))
    }
}

fn strip_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(pq) = pq.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Fastify's answer for an unknown route (or method).
async fn route_not_found(method: Method, uri: axum::http::Uri) -> Response {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "message": format!("Route {method}:{pq} not found"),
            "error": "Not Found",
            "statusCode": 404,
        })),
    )
        .into_response()
}

// ---- middleware: faults, rate limits, ETag ------------------------------------------------

async fn api_layer(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    s.counters.api_requests.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(method = %req.method(), path = req.uri().path(), "emulator request");
    let faults = lock(&s.faults).clone();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    if let Some(resp) = injected_fault(&s, &faults) {
        s.counters.faults_injected.fetch_add(1, Ordering::Relaxed);
        return resp;
    }

    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let method = req.method().clone();
    let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();

    // Fixed 60 s windows per client IP and route pattern.
    let mut rate_headers = None;
    if let Some(limit) = s.rate_limit_per_minute {
        let key = (ip, format!("{method}:{route}"));
        let now = Instant::now();
        let (remaining, reset) = {
            let mut data = lock(&s.data);
            let w = data.windows.entry(key).or_insert((now, 0));
            if now.duration_since(w.0) >= Duration::from_secs(60) {
                *w = (now, 0);
            }
            w.1 += 1;
            let reset = 60u64
                .saturating_sub(now.duration_since(w.0).as_secs())
                .max(1);
            if w.1 > limit {
                (None, reset)
            } else {
                (Some(limit - w.1), reset)
            }
        };
        match remaining {
            None => return too_many(limit, reset),
            Some(rem) => rate_headers = Some((limit, rem, reset)),
        }
    }

    let mut resp = next.run(req).await;

    if let Some((limit, rem, reset)) = rate_headers {
        if resp.extensions().get::<AuthRejected>().is_none() {
            let h = resp.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from(limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(rem));
            h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        }
    }

    if faults.malformed_json {
        s.counters.faults_injected.fetch_add(1, Ordering::Relaxed);
        let mut broken = Response::new(Body::from(r#"{"secret":{"id":"#));
        *broken.status_mut() = resp.status();
        broken.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        return broken;
    }

    if method == Method::GET && resp.status() == StatusCode::OK {
        resp = with_etag(resp, if_none_match).await;
    }
    resp
}

/// `down`, `rate_limit`, `rate_limit_next`, `fail_next` and `error_rate`, in that order.
fn injected_fault(s: &Shared, faults: &Faults) -> Option<Response> {
    if faults.down {
        return Some(error_body(
            StatusCode::SERVICE_UNAVAILABLE,
            Value::String("Service Unavailable".into()),
            "ServiceUnavailable",
        ));
    }
    let retry = faults.retry_after_secs.max(1);
    let limit = s.rate_limit_per_minute.unwrap_or(40);
    if faults.rate_limit {
        return Some(too_many(limit, retry));
    }
    {
        let mut f = lock(&s.faults);
        if f.rate_limit_next > 0 {
            f.rate_limit_next -= 1;
            return Some(too_many(limit, retry));
        }
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return Some(ApiError::internal("InternalServerError").into_response());
        }
    }
    if faults.error_rate > 0.0 && rand::thread_rng().gen_bool(faults.error_rate) {
        return Some(ApiError::internal("InternalServerError").into_response());
    }
    None
}

fn too_many(limit: u32, reset_secs: u64) -> Response {
    let mut resp = error_body(
        StatusCode::TOO_MANY_REQUESTS,
        Value::String(format!(
            "Rate limit exceeded. Please try again in {reset_secs} seconds"
        )),
        "RateLimitExceeded",
    );
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from(limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(0u32));
    h.insert("x-ratelimit-reset", HeaderValue::from(reset_secs));
    h.insert(header::RETRY_AFTER, HeaderValue::from(reset_secs));
    resp
}

/// Adds a strong ETag to a 200 GET and answers 304 to a matching `If-None-Match`.
async fn with_etag(resp: Response, if_none_match: Option<HeaderValue>) -> Response {
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return error_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            Value::String("Something went wrong".into()),
            "InternalServerError",
        );
    };
    let digest = Sha256::digest(&bytes);
    let etag = format!("\"{}\"", hex::encode(&digest[..16]));
    let etag_value = HeaderValue::from_str(&etag).expect("hex is a valid header");
    if if_none_match.as_ref() == Some(&etag_value) {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r.headers_mut().insert(header::ETAG, etag_value);
        return r;
    }
    parts.headers.insert(header::ETAG, etag_value);
    Response::from_parts(parts, Body::from(Bytes::from(bytes.to_vec())))
}

// ---- tokens --------------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

enum JwtError {
    Malformed,
    BadSignature,
    Expired,
}

impl Shared {
    fn sign_jwt(&self, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{payload}");
        let mut mac = HmacSha256::new_from_slice(&self.jwt_key).expect("any key length");
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Verifies an HS256 JWT and returns its `identityAccessTokenId`.
    fn verify_jwt(&self, token: &str) -> Result<String, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        let claims: Value = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| JwtError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("HS256") {
            return Err(JwtError::BadSignature);
        }
        let mut mac = HmacSha256::new_from_slice(&self.jwt_key).expect("any key length");
        mac.update(format!("{h}.{p}").as_bytes());
        if mac.verify_slice(&sig).is_err() {
            return Err(JwtError::BadSignature);
        }
        if let Some(exp) = claims.get("exp").and_then(Value::as_i64) {
            if chrono::Utc::now().timestamp() >= exp {
                return Err(JwtError::Expired);
            }
        }
        claims
            .get("identityAccessTokenId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(JwtError::Malformed)
    }

    fn issue_jwt(&self, identity: &Identity, token_id: &str, max_ttl: u64) -> String {
        let iat = chrono::Utc::now().timestamp();
        // Oct-2024 behaviour: exp = iat + max TTL; the (shorter) TTL is enforced server-side,
        // so an expired token gets 401, not 403.
        let mut claims = json!({
            "identityId": identity.id,
            "clientSecretId": identity.client_secret_id,
            "identityAccessTokenId": token_id,
            "authTokenType": "identityAccessToken",
            "iat": iat,
        });
        if max_ttl > 0 {
            claims["exp"] = json!(iat + max_ttl as i64);
        }
        self.sign_jwt(&claims)
    }
}

fn token_error(e: JwtError) -> ApiError {
    let msg = match e {
        JwtError::Malformed => "The provided access token is malformed. Please use a valid token or generate a new one and try again.",
        JwtError::BadSignature => "invalid signature",
        JwtError::Expired => "Your token has expired. Please re-authenticate.",
    };
    ApiError::new(StatusCode::FORBIDDEN, msg, "TokenError").auth()
}

fn unauthorized(msg: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, msg, "UnauthorizedError").auth()
}

/// Who is calling: the identity's role and project memberships.
struct Caller {
    role: Role,
    projects: Option<HashSet<String>>,
}

/// Checks the token of a protected request, in the order the real server does: header,
/// JWT (403 TokenError), server-side record (401).
fn authenticate(s: &Shared, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let Some(raw) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized("Token missing"));
    };
    let raw = raw.to_str().map_err(|_| token_error(JwtError::Malformed))?;
    // Like the real server: everything after the first 7 characters, scheme word unchecked.
    let token = raw.get(7..).unwrap_or("");
    let token_id = s.verify_jwt(token).map_err(token_error)?;
    let mut data = lock(&s.data);
    let Some(rec) = data.tokens.get(&token_id) else {
        return Err(unauthorized("No identity access token found"));
    };
    if rec.expires.is_some_and(|e| Instant::now() >= e) {
        data.tokens.remove(&token_id);
        return Err(unauthorized(
            "Failed to renew MI access token due to TTL expiration",
        ));
    }
    let client_id = rec.client_id.clone();
    let Some(identity) = data.identities.get(&client_id) else {
        return Err(unauthorized("No identity access token found"));
    };
    Ok(Caller {
        role: identity.role,
        projects: identity.projects.clone(),
    })
}

impl Caller {
    fn check(&self, project_id: &str, action: &str, subject: &str) -> Result<(), ApiError> {
        if let Some(p) = &self.projects {
            if !p.contains(project_id) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "You are not allowed to access this resource",
                    format!(
                        "Identity is not a member of the specified project with ID '{project_id}'"
                    ),
                ));
            }
        }
        if action != "read" && self.role == Role::Viewer {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("You are not allowed to {action} on {subject}"),
                "PermissionDenied",
            ));
        }
        Ok(())
    }
}

async fn login(State(s): State<Arc<Shared>>, body: Body) -> ApiResult {
    let mut b = JsonBody::read(body).await?;
    let client_id = b.string("clientId", true);
    let client_secret = b.string("clientSecret", true).map(Zeroizing::new);
    b.finish()?;
    let (client_id, client_secret) = (
        client_id.unwrap_or_default(),
        client_secret.unwrap_or_default(),
    );
    let ttl_fault = lock(&s.faults).token_ttl_secs;
    let mut data = lock(&s.data);
    // Current servers answer 401 "Invalid credentials" for an unknown client id too
    // (Oct-2024 answered 404).
    let Some(identity) = data.identities.get(&client_id) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials",
            "UnauthorizedError",
        ));
    };
    let ok: bool = identity
        .client_secret
        .as_bytes()
        .ct_eq(client_secret.as_bytes())
        .into();
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials",
            "UnauthorizedError",
        ));
    }
    let max_ttl = identity.max_ttl;
    let ttl = if max_ttl > 0 && (ttl_fault == 0 || ttl_fault > max_ttl) {
        max_ttl
    } else {
        ttl_fault
    };
    let token_id = uuid();
    let jwt = s.issue_jwt(identity, &token_id, max_ttl);
    let now = Instant::now();
    data.tokens.insert(
        token_id,
        TokenRec {
            client_id,
            issued: now,
            ttl,
            max_ttl,
            expires: (ttl > 0).then(|| now + Duration::from_secs(ttl)),
        },
    );
    s.counters.logins.fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({
        "accessToken": jwt,
        "expiresIn": ttl,
        "accessTokenMaxTTL": max_ttl,
        "tokenType": "Bearer",
    }))
    .into_response())
}

async fn renew(State(s): State<Arc<Shared>>, body: Body) -> ApiResult {
    let mut b = JsonBody::read(body).await?;
    let token = b.string("accessToken", true).map(Zeroizing::new);
    b.finish()?;
    let token = token.unwrap_or_default();
    let token_id = s.verify_jwt(&token).map_err(token_error)?;
    let mut data = lock(&s.data);
    let Some(rec) = data.tokens.get_mut(&token_id) else {
        return Err(unauthorized("No identity access token found"));
    };
    let now = Instant::now();
    if rec.expires.is_some_and(|e| now >= e) {
        data.tokens.remove(&token_id);
        return Err(unauthorized(
            "Failed to renew MI access token due to TTL expiration",
        ));
    }
    if rec.max_ttl > 0 {
        let hard_end = rec.issued + Duration::from_secs(rec.max_ttl);
        if now >= hard_end {
            data.tokens.remove(&token_id);
            return Err(unauthorized(
                "Failed to renew MI access token due to Max TTL expiration",
            ));
        }
        if now + Duration::from_secs(rec.ttl) > hard_end {
            data.tokens.remove(&token_id);
            return Err(unauthorized(
                "Failed to renew MI access token past its Max TTL expiration",
            ));
        }
    }
    if rec.ttl > 0 {
        rec.expires = Some(now + Duration::from_secs(rec.ttl));
    }
    let (ttl, max_ttl, client_id) = (rec.ttl, rec.max_ttl, rec.client_id.clone());
    let Some(identity) = data.identities.get(&client_id) else {
        return Err(unauthorized("No identity access token found"));
    };
    // Current servers sign and return a new JWT for the same token record.
    let jwt = s.issue_jwt(identity, &token_id, max_ttl);
    s.counters.renewals.fetch_add(1, Ordering::Relaxed);
    Ok(Json(json!({
        "accessToken": jwt,
        "expiresIn": ttl,
        "accessTokenMaxTTL": max_ttl,
        "tokenType": "Bearer",
    }))
    .into_response())
}

async fn revoke(State(s): State<Arc<Shared>>, body: Body) -> ApiResult {
    let mut b = JsonBody::read(body).await?;
    let token = b.string("accessToken", true).map(Zeroizing::new);
    b.finish()?;
    let token_id = s
        .verify_jwt(&token.unwrap_or_default())
        .map_err(token_error)?;
    if lock(&s.data).tokens.remove(&token_id).is_none() {
        return Err(unauthorized("No identity access token found"));
    }
    Ok(Json(json!({"message": "Successfully revoked access token"})).into_response())
}

// ---- secrets -------------------------------------------------------------------------------

/// `secretPath` as the server treats it: one trailing `/` stripped; `.`/`..` segments make the
/// folder lookup blow up (500 "Find by secret path" on the Oct-2024 server). Other oddities
/// (no leading `/`, `//`) are kept and simply match no folder.
fn normalise_path(raw: &str) -> Result<String, ApiError> {
    let p = if raw.len() > 1 {
        raw.strip_suffix('/').unwrap_or(raw)
    } else {
        raw
    };
    if p.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(ApiError::internal("Find by secret path"));
    }
    Ok(p.to_owned())
}

fn bool_param(q: &HashMap<String, String>, key: &str) -> Result<bool, ApiError> {
    match q.get(key).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ApiError::validation(vec![json!({
            "code": "invalid_enum_value",
            "options": ["true", "false"],
            "path": [key],
            "message": "Invalid enum value. Expected 'true' | 'false'",
        })])),
    }
}

/// Finds the project by `workspaceId` or `workspaceSlug`.
fn resolve_project<'a>(
    data: &'a mut Data,
    id: Option<&str>,
    slug: Option<&str>,
) -> Result<(String, &'a mut Project), ApiError> {
    let key = match (id, slug) {
        (Some(id), _) => Some(id.to_owned()),
        (None, Some(slug)) => data
            .projects
            .iter()
            .find(|(_, p)| p.slug == slug)
            .map(|(k, _)| k.clone()),
        (None, None) => None,
    };
    let missing = id.or(slug).unwrap_or_default().to_owned();
    match key.and_then(|k| data.projects.get_mut(&k).map(|p| (k, p))) {
        Some(found) => Ok(found),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Project with ID '{missing}' not found during bot lookup. Are you sure you are using the correct project ID?"
            ),
            "NotFound",
        )),
    }
}

struct SecretView<'a> {
    rec: &'a SecretRec,
    version: usize,
    project_id: &'a str,
    env: &'a str,
}

impl SecretView<'_> {
    /// The secret object. `secret_path`: added on get and list (current servers);
    /// `tags`: on get and list; `hide`: `viewSecretValue=false`.
    fn to_json(&self, secret_path: Option<&str>, tags: bool, hide: bool) -> Value {
        let v = &self.rec.versions[self.version - 1];
        let mut obj = json!({
            "id": self.rec.id,
            "_id": self.rec.id,
            "workspace": self.project_id,
            "environment": self.env,
            "version": self.version,
            "type": self.rec.kind,
            "secretKey": self.rec.name,
            "secretValue": if hide { "<hidden-by-infisical>" } else { v.value.as_str() },
            "secretValueHidden": hide,
            "secretComment": v.comment,
            "secretReminderNote": null,
            "secretReminderRepeatDays": null,
            "skipMultilineEncoding": false,
            "metadata": null,
            "createdAt": self.rec.created_at,
            "updatedAt": v.at,
        });
        if let Some(p) = secret_path {
            obj["secretPath"] = json!(p);
        }
        if tags {
            obj["tags"] = json!([]);
        }
        obj
    }
}

fn secret_response(value: Value) -> Response {
    Json(json!({ "secret": value })).into_response()
}

async fn list_secrets(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let ws_id = q.get("workspaceId").map(String::as_str);
    let ws_slug = q.get("workspaceSlug").map(String::as_str);
    let Some(env_slug) = q.get("environment") else {
        return Err(ApiError::bad_request("Missing workspace id or environment"));
    };
    if ws_id.is_none() && ws_slug.is_none() {
        return Err(ApiError::bad_request("Missing workspace id or environment"));
    }
    let recursive = bool_param(&q, "recursive")?;
    let include_imports = bool_param(&q, "include_imports")?;
    bool_param(&q, "expandSecretReferences")?;
    let hide = q.get("viewSecretValue").map(String::as_str) == Some("false");
    let path = normalise_path(q.get("secretPath").map_or("/", String::as_str))?;

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, ws_id, ws_slug)?;
    caller.check(&project_id, "read", "secrets")?;
    let empty = || Json(json!({"secrets": [], "imports": []})).into_response();
    let Some(env) = project.envs.get(env_slug) else {
        return Ok(empty());
    };
    if !env.folders.contains_key(&path) {
        return Ok(empty());
    }
    let base_depth = path.split('/').filter(|s| !s.is_empty()).count();
    let mut secrets = Vec::new();
    for (fpath, folder) in &env.folders {
        let inside = fpath == &path
            || (recursive
                && (path == "/" || fpath.starts_with(&format!("{path}/")))
                && fpath.split('/').filter(|s| !s.is_empty()).count() - base_depth <= MAX_DEPTH);
        if !inside {
            continue;
        }
        for rec in folder.secrets.values() {
            let view = SecretView {
                rec,
                version: rec.versions.len(),
                project_id: &project_id,
                env: env_slug,
            };
            secrets.push(view.to_json(Some(fpath), true, hide));
        }
    }
    let mut body = json!({ "secrets": secrets });
    if include_imports {
        body["imports"] = json!([]);
    }
    Ok(Json(body).into_response())
}

async fn get_secret(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let ws_id = q.get("workspaceId").map(String::as_str);
    let ws_slug = q.get("workspaceSlug").map(String::as_str);
    if ws_id.is_none() && ws_slug.is_none() {
        return Err(ApiError::bad_request("Missing workspace id or slug"));
    }
    let Some(env_slug) = q.get("environment") else {
        return Err(ApiError::bad_request("Missing environment"));
    };
    let kind = match q.get("type").map(String::as_str) {
        None | Some("shared") => "shared",
        Some("personal") => "personal",
        Some(_) => {
            return Err(ApiError::validation(vec![json!({
                "code": "invalid_enum_value",
                "options": ["shared", "personal"],
                "path": ["type"],
                "message": "Invalid enum value. Expected 'shared' | 'personal'",
            })]))
        }
    };
    let version = match q.get("version") {
        None => None,
        Some(v) => match v.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Err(ApiError::validation(vec![issue(
                    "version",
                    "number",
                    "nan",
                    "Expected number, received nan",
                )]))
            }
        },
    };
    bool_param(&q, "expandSecretReferences")?;
    bool_param(&q, "include_imports")?;
    let hide = q.get("viewSecretValue").map(String::as_str) == Some("false");
    let path = normalise_path(q.get("secretPath").map_or("/", String::as_str))?;

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, ws_id, ws_slug)?;
    caller.check(&project_id, "read", "secrets")?;
    let folder = project
        .envs
        .get(env_slug)
        .and_then(|e| e.folders.get(&path))
        .ok_or_else(|| ApiError::folder_not_found(&path, env_slug, "GetSecretByName"))?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Secret with name '{name}' not found"),
            "NotFound",
        )
    };
    let rec = folder
        .secrets
        .get(&(kind.to_owned(), name.clone()))
        .ok_or_else(not_found)?;
    // Current behaviour: exactly that version, or 404.
    let version = match version {
        None => rec.versions.len(),
        Some(v) if v >= 1 && v <= rec.versions.len() => v,
        Some(_) => return Err(not_found()),
    };
    let view = SecretView {
        rec,
        version,
        project_id: &project_id,
        env: env_slug,
    };
    Ok(secret_response(view.to_json(Some(&path), true, hide)))
}

/// The fields every write carries: project, environment, path, type.
struct WriteScope {
    project_id: Option<String>,
    project_slug: Option<String>,
    env: String,
    path: String,
    kind: String,
}

fn write_scope(b: &mut JsonBody) -> WriteScope {
    let project_id = b.string("workspaceId", false);
    let project_slug = b
        .string("projectSlug", false)
        .or_else(|| b.string("workspaceSlug", false));
    if project_id.is_none() && project_slug.is_none() {
        b.issues
            .push(issue("workspaceId", "string", "undefined", "Required"));
    }
    let env = b.string("environment", true).unwrap_or_default();
    let path = b.string("secretPath", false).unwrap_or_else(|| "/".into());
    let kind = b.kind();
    WriteScope {
        project_id,
        project_slug,
        env,
        path,
        kind,
    }
}

/// Current servers refuse `:` and `/` in names and blank names.
fn check_secret_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::validation(vec![json!({
            "code": "custom", "path": ["secretName"], "message": "Secret name cannot be empty.",
        })]));
    }
    if name.contains(':') || name.contains('/') {
        return Err(ApiError::validation(vec![json!({
            "code": "custom", "path": ["secretName"],
            "message": "Secret name cannot contain colon or forward slash.",
        })]));
    }
    Ok(())
}

async fn create_secret(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let scope = write_scope(&mut b);
    let value = b.string("secretValue", true).map(Zeroizing::new);
    let comment = b.string("secretComment", false).unwrap_or_default();
    b.finish()?;
    check_secret_name(&name)?;
    let value = value.unwrap_or_default();
    let path = normalise_path(&scope.path)?;

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(
        &mut data,
        scope.project_id.as_deref(),
        scope.project_slug.as_deref(),
    )?;
    caller.check(&project_id, "create", "secrets")?;
    let folder = project
        .envs
        .get_mut(&scope.env)
        .and_then(|e| e.folders.get_mut(&path))
        .ok_or_else(|| ApiError::folder_not_found(&path, &scope.env, "CreateSecret"))?;
    let key = (scope.kind.clone(), name.clone());
    if folder.secrets.contains_key(&key) {
        return Err(ApiError::bad_request("Secret already exist"));
    }
    let at = now_iso();
    let rec = SecretRec {
        id: uuid(),
        name: name.clone(),
        kind: scope.kind.clone(),
        created_at: at.clone(),
        versions: vec![SecretVersion {
            value: Zeroizing::new(trim_value(&value)),
            comment,
            at,
        }],
    };
    let out = SecretView {
        rec: &rec,
        version: 1,
        project_id: &project_id,
        env: &scope.env,
    }
    .to_json(None, false, false);
    folder.secrets.insert(key, rec);
    Ok(secret_response(out))
}

async fn update_secret(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let scope = write_scope(&mut b);
    // Current servers: secretValue optional (Oct-2024 required it).
    let value = b.string("secretValue", false).map(Zeroizing::new);
    let comment = b.string("secretComment", false);
    let new_name = b.string("newSecretName", false);
    b.finish()?;
    if let Some(n) = &new_name {
        check_secret_name(n)?;
    }
    let path = normalise_path(&scope.path)?;

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(
        &mut data,
        scope.project_id.as_deref(),
        scope.project_slug.as_deref(),
    )?;
    caller.check(&project_id, "edit", "secrets")?;
    let folder = project
        .envs
        .get_mut(&scope.env)
        .and_then(|e| e.folders.get_mut(&path))
        .ok_or_else(|| ApiError::folder_not_found(&path, &scope.env, "UpdateSecret"))?;
    let key = (scope.kind.clone(), name.clone());
    if !folder.secrets.contains_key(&key) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Secret with name {name} not found"),
            "NotFound",
        ));
    }
    if let Some(n) = &new_name {
        if n != &name
            && folder
                .secrets
                .contains_key(&(scope.kind.clone(), n.clone()))
        {
            return Err(ApiError::bad_request(
                "Secret with the new name already exist",
            ));
        }
    }
    let mut rec = folder.secrets.remove(&key).expect("checked above");
    let last = rec.versions.last().expect("a secret has a version");
    let next = SecretVersion {
        value: match &value {
            Some(v) => Zeroizing::new(trim_value(v)),
            None => last.value.clone(),
        },
        comment: comment.unwrap_or_else(|| last.comment.clone()),
        at: now_iso(),
    };
    rec.versions.push(next);
    if let Some(n) = new_name {
        rec.name = n;
    }
    let out = SecretView {
        rec: &rec,
        version: rec.versions.len(),
        project_id: &project_id,
        env: &scope.env,
    }
    .to_json(None, false, false);
    folder
        .secrets
        .insert((scope.kind.clone(), rec.name.clone()), rec);
    Ok(secret_response(out))
}

async fn delete_secret(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let scope = write_scope(&mut b);
    b.finish()?;
    let path = normalise_path(&scope.path)?;

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(
        &mut data,
        scope.project_id.as_deref(),
        scope.project_slug.as_deref(),
    )?;
    caller.check(&project_id, "delete", "secrets")?;
    let folder = project
        .envs
        .get_mut(&scope.env)
        .and_then(|e| e.folders.get_mut(&path))
        .ok_or_else(|| ApiError::folder_not_found(&path, &scope.env, "DeleteSecret"))?;
    let rec = folder
        .secrets
        .remove(&(scope.kind.clone(), name.clone()))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("Secret with name '{name}' not found"),
                "DeleteSecret",
            )
        })?;
    let out = SecretView {
        rec: &rec,
        version: rec.versions.len(),
        project_id: &project_id,
        env: &scope.env,
    }
    .to_json(None, false, false);
    Ok(secret_response(out))
}

// ---- folders -------------------------------------------------------------------------------

fn folder_json(f: &FolderRec, env_id: &str) -> Value {
    json!({
        "id": f.id,
        "name": f.name,
        "version": 1,
        "createdAt": f.created_at,
        "updatedAt": f.created_at,
        "envId": env_id,
        "parentId": f.parent_id,
        "isReserved": false,
    })
}

async fn create_folder(State(s): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let mut b = JsonBody::read(body).await?;
    let project_id = b.string("workspaceId", true);
    let env_slug = b.string("environment", true).unwrap_or_default();
    let name = b.string("name", true).unwrap_or_default();
    let parent = b
        .string("path", false)
        .or_else(|| b.string("directory", false))
        .unwrap_or_else(|| "/".into());
    b.finish()?;
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err(ApiError::bad_request(
            "Invalid folder name. Only alphanumeric characters, dashes, and underscores are allowed.",
        ));
    }
    let parent = normalise_path(&parent)?;
    if !parent.starts_with('/') || parent.contains("//") {
        return Err(ApiError::folder_not_found(
            &parent,
            &env_slug,
            "CreateFolder",
        ));
    }

    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, project_id.as_deref(), None)?;
    caller.check(&project_id, "create", "secret-folders")?;
    let env = project.envs.get_mut(&env_slug).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "Environment with slug '{env_slug}' in project with ID '{project_id}' not found"
            ),
            "NotFound",
        )
    })?;
    // Oct-2024: an existing folder answers 200 with itself; missing parents are created.
    let path = env.ensure_folder(&parent, &name);
    let out = folder_json(&env.folders[&path], &env.id);
    Ok(Json(json!({ "folder": out })).into_response())
}

async fn list_folders(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult {
    let caller = authenticate(&s, &headers)?;
    let (Some(project_id), Some(env_slug)) = (q.get("workspaceId"), q.get("environment")) else {
        return Err(ApiError::validation(vec![issue(
            if q.contains_key("workspaceId") {
                "environment"
            } else {
                "workspaceId"
            },
            "string",
            "undefined",
            "Required",
        )]));
    };
    let path = normalise_path(
        q.get("path")
            .or_else(|| q.get("directory"))
            .map_or("/", String::as_str),
    )?;
    let mut data = lock(&s.data);
    let (project_id, project) = resolve_project(&mut data, Some(project_id), None)?;
    caller.check(&project_id, "read", "secret-folders")?;
    let Some(env) = project.envs.get(env_slug) else {
        return Ok(Json(json!({"folders": []})).into_response());
    };
    let Some(parent) = env.folders.get(&path) else {
        return Ok(Json(json!({"folders": []})).into_response());
    };
    let children: Vec<Value> = env
        .folders
        .values()
        .filter(|f| f.parent_id.as_deref() == Some(parent.id.as_str()))
        .map(|f| folder_json(f, &env.id))
        .collect();
    Ok(Json(json!({ "folders": children })).into_response())
}

// ---- control plane -------------------------------------------------------------------------

async fn get_faults_handler(State(s): State<Arc<Shared>>) -> Response {
    Json(lock(&s.faults).clone()).into_response()
}

async fn put_faults_handler(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let patch: FaultsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                Value::String(format!("invalid faults: {e}")),
                "BadRequest",
            )
        }
    };
    let mut f = lock(&s.faults);
    let mut next = f.clone();
    if let Err(e) = patch.apply(&mut next) {
        return error_body(StatusCode::BAD_REQUEST, Value::String(e), "BadRequest");
    }
    *f = next.clone();
    tracing::info!(faults = ?next, "emulator faults changed");
    Json(next).into_response()
}

async fn seed_handler(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let seed: Seed = match serde_json::from_slice(&body) {
        Ok(seed) => seed,
        Err(e) => {
            // serde's message may quote a value; report only where it failed.
            return error_body(
                StatusCode::BAD_REQUEST,
                Value::String(format!(
                    "invalid seed at line {} column {}",
                    e.line(),
                    e.column()
                )),
                "BadRequest",
            );
        }
    };
    match lock(&s.data).apply_seed(&seed) {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e) => error_body(StatusCode::BAD_REQUEST, Value::String(e), "BadRequest"),
    }
}

async fn stats_handler(State(s): State<Arc<Shared>>) -> Response {
    Json(Emulator { shared: s }.stats()).into_response()
}

async fn expire_handler(State(s): State<Arc<Shared>>) -> Response {
    Emulator { shared: s }.expire_all_tokens();
    Json(json!({"ok": true})).into_response()
}
