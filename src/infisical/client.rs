//! The Infisical HTTP client.
//!
//! Why it looks the way it does (facts from `infisical-api.md`):
//! - Universal Auth tokens have a TTL and a max TTL. A renew that would pass the max TTL
//!   *deletes* the token, so the client renews only while TTL < max TTL and there is room left,
//!   and otherwise logs in again. Any 401, or 403 with `"error":"TokenError"`, means "log in
//!   again" (old and new servers disagree on which one an expired token gets).
//! - Infisical rate-limits per IP and route with `retry-after`; it also has outages. Requests
//!   are retried with jittered backoff on 5xx, timeouts and 429 (honouring `Retry-After` up to
//!   a bound), and a circuit breaker turns a dead server into an immediate
//!   [`InfisicalError::CircuitOpen`] so callers fail in microseconds, not timeouts.
//! - Some servers ignore `?version=`; a versioned read that comes back with another version is
//!   an error ([`InfisicalError::VersionMismatch`]), never silently the wrong value.
//! - Values are trimmed by the server; [`crate::infisical::trim_value`] predicts it.
//! - Nothing secret (client secret, access token, value) is ever put into a log line, an error
//!   message or a `Debug` output. Values come back as [`InfisicalValue`], which zeroizes.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::breaker::{BreakerState, CircuitBreaker};
use super::paths::{join_path, validate_folder_name, validate_folder_path, validate_secret_name};
use super::trim_value;

/// Everything the client can fail with. Messages name what went wrong and never include a
/// token, the client secret or a secret value.
#[derive(Debug, thiserror::Error)]
pub enum InfisicalError {
    /// A path, name or value was refused before any request was made.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The client configuration is unusable (bad site URL, missing setting).
    #[error("invalid Infisical configuration: {0}")]
    Config(String),
    /// Connection refused, reset, DNS failure, or 5xx answers after all retries.
    #[error("Infisical is unavailable: {0}")]
    Unavailable(String),
    /// No answer within the per-request timeout, after all retries.
    #[error("Infisical did not answer within {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open after repeated failures: no request was made.
    #[error("Infisical is unavailable: circuit breaker open after repeated failures")]
    CircuitOpen,
    /// 429 after all retries, or a `Retry-After` longer than the client is willing to wait.
    #[error("Infisical rate limit exceeded{}", fmt_retry_after(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// Login refused, or the server kept refusing a freshly obtained token.
    #[error("Infisical refused authentication: {0}")]
    Unauthorized(String),
    /// The machine identity lacks a permission (403 other than `TokenError`).
    #[error("Infisical denied access: {0}")]
    Forbidden(String),
    /// `create_secret` of a name that exists.
    #[error("secret already exists in Infisical")]
    AlreadyExists,
    /// `update_secret` of a secret that does not exist.
    #[error("secret not found in Infisical")]
    NotFound,
    /// A write into a folder that does not exist (Infisical never creates folders on writes).
    #[error("Infisical folder {0} does not exist")]
    FolderNotFound(String),
    /// A read of `version` N came back with another version: this server ignores `?version=`.
    #[error(
        "Infisical returned version {got} when version {requested} was asked for \
         (this server ignores ?version=)"
    )]
    VersionMismatch { requested: i64, got: i64 },
    /// Any other 4xx answer.
    #[error("Infisical rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// An answer that is not what the API documents (malformed JSON, missing fields,
    /// redirects, unknown route).
    #[error("invalid response from Infisical: {0}")]
    InvalidResponse(String),
    /// A secret value (or a whole response) larger than the configured limit.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: &'static str, limit: usize },
}

fn fmt_retry_after(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(" (retry after {}s)", d.as_secs()),
        None => String::new(),
    }
}

impl InfisicalError {
    /// Errors that mean "Infisical cannot be used right now" (answer 503, keep serving what is
    /// cached), as opposed to answers about the request itself.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout(_) | Self::CircuitOpen | Self::RateLimited { .. }
        )
    }
}

pub type Result<T, E = InfisicalError> = std::result::Result<T, E>;

/// A secret value from Infisical. Zeroized on drop; `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct InfisicalValue(Zeroizing<String>);

impl InfisicalValue {
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The plaintext. Keep call sites few: encryption, comparison, the master key parser.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for InfisicalValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InfisicalValue([redacted])")
    }
}

/// One secret as Infisical returns it.
#[derive(Debug, Clone)]
pub struct Secret {
    pub id: String,
    pub key: String,
    pub value: InfisicalValue,
    /// Starts at 1, +1 per update.
    pub version: i64,
    /// The folder it lives in, when the server says (list always; get only on newer servers).
    pub secret_path: Option<String>,
    pub comment: String,
}

/// One folder (direct child of the listed path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub id: String,
    pub name: String,
}

/// How to reach Infisical. `Debug` redacts the client secret.
#[derive(Clone)]
pub struct InfisicalConfig {
    /// `https://app.infisical.com`, `https://eu.infisical.com` or a self-hosted base URL,
    /// without `/api` (a trailing `/api` is tolerated and dropped).
    pub site_url: String,
    pub client_id: String,
    pub client_secret: Zeroizing<String>,
    pub project_id: String,
    /// Environment slug, e.g. `dev` or `prod`.
    pub environment: String,
    /// Whole-request timeout, body included. Default 5 s.
    pub request_timeout: Duration,
    /// Retries after the first attempt on 5xx, timeouts, transport errors and 429. Default 3.
    pub max_retries: u32,
    /// First backoff step (full jitter, doubling). Default 100 ms.
    pub retry_base_delay: Duration,
    /// Longest single backoff sleep. Default 2 s.
    pub retry_max_delay: Duration,
    /// Longest `Retry-After` the client will sleep; a longer one fails at once with
    /// [`InfisicalError::RateLimited`]. Default 10 s.
    pub max_retry_after: Duration,
    /// Consecutive failed attempts (transport, timeout, 5xx) that open the breaker. Default 5.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before one probe is let through. Default 10 s.
    pub breaker_cooldown: Duration,
    /// Largest secret value accepted in either direction. Default 64 KiB.
    pub max_value_bytes: usize,
    /// Largest response body read (lists). Default 16 MiB.
    pub max_response_bytes: usize,
}

impl fmt::Debug for InfisicalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfisicalConfig")
            .field("site_url", &self.site_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("project_id", &self.project_id)
            .field("environment", &self.environment)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl InfisicalConfig {
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;

    /// A configuration with the defaults documented on each field.
    pub fn new(
        site_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        project_id: impl Into<String>,
        environment: impl Into<String>,
    ) -> Self {
        Self {
            site_url: site_url.into(),
            client_id: client_id.into(),
            client_secret: Zeroizing::new(client_secret.into()),
            project_id: project_id.into(),
            environment: environment.into(),
            request_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(10),
            max_value_bytes: Self::DEFAULT_MAX_VALUE_BYTES,
            max_response_bytes: 16 * 1024 * 1024,
        }
    }

    /// Reads `INFISICAL_SITE_URL` (default `https://app.infisical.com`),
    /// `INFISICAL_CLIENT_ID`, `INFISICAL_CLIENT_SECRET`, `INFISICAL_PROJECT_ID` and
    /// `INFISICAL_ENVIRONMENT` (all required).
    pub fn from_env() -> Result<Self> {
        fn var(name: &str) -> Result<String> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                _ => Err(InfisicalError::Config(format!("{name} is not set"))),
            }
        }
        let site = std::env::var("INFISICAL_SITE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "https://app.infisical.com".to_owned());
        Ok(Self::new(
            site,
            var("INFISICAL_CLIENT_ID")?,
            var("INFISICAL_CLIENT_SECRET")?,
            var("INFISICAL_PROJECT_ID")?,
            var("INFISICAL_ENVIRONMENT")?,
        ))
    }
}

/// The token we hold. `issued` is when the token was first obtained by login: renewals keep
/// the same server-side token, and its max TTL counts from there.
struct TokenState {
    token: Zeroizing<String>,
    issued: Instant,
    obtained: Instant,
    ttl: Duration,
    max_ttl: Duration,
}

impl TokenState {
    fn expired(&self, now: Instant) -> bool {
        !self.ttl.is_zero() && now >= self.obtained + self.ttl
    }

    /// Refresh once 80% of the TTL has passed (at most 60 s before expiry for long TTLs).
    fn needs_refresh(&self, now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let margin = (self.ttl / 5).min(Duration::from_secs(60));
        now + margin >= self.obtained + self.ttl
    }

    /// Renewing is only safe while TTL < max TTL and now + TTL stays within the max TTL:
    /// past it the server deletes the token.
    fn can_renew(&self, now: Instant) -> bool {
        if self.ttl.is_zero() || self.expired(now) {
            return false;
        }
        if self.max_ttl.is_zero() {
            return true;
        }
        self.ttl < self.max_ttl
            && now + self.ttl + Duration::from_secs(5) < self.issued + self.max_ttl
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
    #[serde(rename = "accessTokenMaxTTL")]
    access_token_max_ttl: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecret {
    #[serde(default)]
    id: String,
    secret_key: String,
    secret_value: String,
    version: i64,
    #[serde(default)]
    secret_path: Option<String>,
    #[serde(default)]
    secret_comment: Option<String>,
    #[serde(default)]
    secret_value_hidden: bool,
}

#[derive(Deserialize)]
struct SecretEnvelope {
    secret: RawSecret,
}

#[derive(Deserialize)]
struct SecretsEnvelope {
    secrets: Vec<RawSecret>,
}

#[derive(Deserialize)]
struct RawFolder {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct FolderEnvelope {
    folder: RawFolder,
}

#[derive(Deserialize)]
struct FoldersEnvelope {
    folders: Vec<RawFolder>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

impl ErrorBody {
    fn parse(body: &[u8]) -> Self {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// The server's `message`, shortened. Infisical messages name resources and rules, never
    /// values; zod validation arrays are reduced to their field paths and messages.
    fn message(&self) -> String {
        let text = match &self.message {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    let path = i.get("path").map(|p| p.to_string()).unwrap_or_default();
                    let msg = i
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or("invalid");
                    format!("{path}: {msg}")
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => String::from("no message"),
        };
        truncate(text, 200)
    }

    fn error_name(&self) -> &str {
        match &self.error {
            Some(serde_json::Value::String(s)) => s,
            _ => "",
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// One HTTP request, rebuilt for every attempt.
struct Req {
    method: Method,
    url: Url,
    query: Vec<(&'static str, String)>,
    body: Option<Zeroizing<Vec<u8>>>,
    body_limit: usize,
}

/// A response that came back with a status (any status).
struct Resp {
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
    /// Attempts made, the successful one included.
    attempts: u32,
}

enum AttemptError {
    Timeout,
    Transport(String),
    TooLarge(usize),
    /// Not worth retrying and not an outage (e.g. a redirect: the site URL is wrong).
    Fatal(InfisicalError),
}

/// Cancels a half-open probe if the caller's future is dropped mid-request.
struct BreakerGuard<'a> {
    breaker: &'a CircuitBreaker,
    armed: bool,
}

impl Drop for BreakerGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.on_abandon();
        }
    }
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    cfg: InfisicalConfig,
    token: tokio::sync::Mutex<Option<TokenState>>,
    breaker: CircuitBreaker,
}

/// A client for one project and environment. Cheap to clone (shared state).
#[derive(Clone)]
pub struct InfisicalClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for InfisicalClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfisicalClient")
            .field("site_url", &self.inner.base.as_str())
            .field("project_id", &self.inner.cfg.project_id)
            .field("environment", &self.inner.cfg.environment)
            .finish_non_exhaustive()
    }
}

impl InfisicalClient {
    pub fn new(cfg: InfisicalConfig) -> Result<Self> {
        let mut base = Url::parse(cfg.site_url.trim())
            .map_err(|_| InfisicalError::Config("INFISICAL_SITE_URL is not a valid URL".into()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(InfisicalError::Config(
                "INFISICAL_SITE_URL must be an http or https URL".into(),
            ));
        }
        base.set_query(None);
        base.set_fragment(None);
        {
            let mut segs = base.path_segments_mut().map_err(|_| {
                InfisicalError::Config("INFISICAL_SITE_URL cannot be a base".into())
            })?;
            segs.pop_if_empty();
        }
        if base.path().ends_with("/api") {
            base.path_segments_mut()
                .map_err(|_| InfisicalError::Config("bad site URL".into()))?
                .pop();
        }
        if cfg.client_id.is_empty() || cfg.project_id.is_empty() || cfg.environment.is_empty() {
            return Err(InfisicalError::Config(
                "client id, project id and environment must be set".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tenant-vault/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| InfisicalError::Config("could not build the HTTP client".into()))?;
        let breaker = CircuitBreaker::new(cfg.breaker_threshold, cfg.breaker_cooldown);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                cfg,
                token: tokio::sync::Mutex::new(None),
                breaker,
            }),
        })
    }

    pub fn config(&self) -> &InfisicalConfig {
        &self.inner.cfg
    }

    /// The breaker's state, for readiness reporting.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// Logs in now (also checks the credentials at start-up).
    pub async fn login(&self) -> Result<()> {
        let mut guard = self.inner.token.lock().await;
        *guard = Some(self.do_login().await?);
        Ok(())
    }

    /// Reads one secret. `None` when the secret, or its folder, does not exist.
    /// With `version`, that exact version; a server that ignores `?version=` gives
    /// [`InfisicalError::VersionMismatch`].
    pub async fn get_secret(
        &self,
        path: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<Secret>> {
        validate_folder_path(path)?;
        validate_secret_name(name)?;
        let mut query = self.scope_query(path);
        query.push(("type", "shared".into()));
        query.push(("expandSecretReferences", "false".into()));
        query.push(("include_imports", "false".into()));
        if let Some(v) = version {
            if v < 1 {
                return Err(InfisicalError::InvalidArgument("a version is 1 or more"));
            }
            query.push(("version", v.to_string()));
        }
        let req = Req {
            method: Method::GET,
            url: self.url(&["api", "v3", "secrets", "raw", name]),
            query,
            body: None,
            body_limit: self.value_body_limit(),
        };
        let resp = self.execute_authed(req).await?;
        match resp.status {
            StatusCode::OK => {
                let env: SecretEnvelope = parse_json(&resp.body)?;
                let secret = self.convert(env.secret)?;
                if let Some(requested) = version {
                    if secret.version != requested {
                        return Err(InfisicalError::VersionMismatch {
                            requested,
                            got: secret.version,
                        });
                    }
                }
                Ok(Some(secret))
            }
            StatusCode::NOT_FOUND => {
                let err = ErrorBody::parse(&resp.body);
                let msg = err.message();
                if msg.starts_with("Secret with name") || msg.starts_with("Folder with path") {
                    Ok(None)
                } else {
                    Err(not_found_error(&err))
                }
            }
            status => Err(status_error(status, &resp.body)),
        }
    }

    /// Lists the secrets directly in `path` (empty when the folder does not exist).
    pub async fn list_secrets(&self, path: &str) -> Result<Vec<Secret>> {
        self.list(path, false).await
    }

    /// Lists the secrets in `path` and every folder below it, each with its `secret_path`.
    pub async fn list_secrets_recursive(&self, path: &str) -> Result<Vec<Secret>> {
        self.list(path, true).await
    }

    async fn list(&self, path: &str, recursive: bool) -> Result<Vec<Secret>> {
        validate_folder_path(path)?;
        let mut query = self.scope_query(path);
        query.push(("recursive", recursive.to_string()));
        query.push(("expandSecretReferences", "false".into()));
        query.push(("include_imports", "false".into()));
        let req = Req {
            method: Method::GET,
            url: self.url(&["api", "v3", "secrets", "raw"]),
            query,
            body: None,
            body_limit: self.inner.cfg.max_response_bytes,
        };
        let resp = self.execute_authed(req).await?;
        match resp.status {
            StatusCode::OK => {
                let env: SecretsEnvelope = parse_json(&resp.body)?;
                env.secrets
                    .into_iter()
                    .map(|s| {
                        let mut s = self.convert(s)?;
                        if !recursive && s.secret_path.is_none() {
                            s.secret_path = Some(path.to_owned());
                        }
                        Ok(s)
                    })
                    .collect()
            }
            StatusCode::NOT_FOUND => {
                let err = ErrorBody::parse(&resp.body);
                if err.message().starts_with("Folder with path") {
                    Ok(Vec::new())
                } else {
                    Err(not_found_error(&err))
                }
            }
            status => Err(status_error(status, &resp.body)),
        }
    }

    /// Checks the arguments, then sends a create (POST) or update (PATCH) of one secret.
    async fn write_secret(
        &self,
        method: Method,
        path: &str,
        name: &str,
        value: &str,
    ) -> Result<Resp> {
        validate_folder_path(path)?;
        validate_secret_name(name)?;
        self.check_value_size(value)?;
        let req = Req {
            method,
            url: self.url(&["api", "v3", "secrets", "raw", name]),
            query: Vec::new(),
            body: Some(self.write_body(path, Some(value))),
            body_limit: self.value_body_limit(),
        };
        self.execute_authed(req).await
    }

    /// Creates a secret in an existing folder. The server trims the value (see
    /// [`trim_value`]); the returned [`Secret`] holds what was stored.
    pub async fn create_secret(&self, path: &str, name: &str, value: &str) -> Result<Secret> {
        let resp = self.write_secret(Method::POST, path, name, value).await?;
        match resp.status {
            StatusCode::OK => self.parse_written_secret(&resp.body),
            StatusCode::BAD_REQUEST if is_already_exists(&resp.body) => {
                // A retried create whose first attempt did land (the answer was lost) sees
                // its own secret: accept it when it holds exactly what we wrote.
                if resp.attempts > 1 {
                    if let Some(existing) = self.get_secret(path, name, None).await? {
                        if existing.version == 1 && existing.value.expose() == trim_value(value) {
                            return Ok(existing);
                        }
                    }
                }
                Err(InfisicalError::AlreadyExists)
            }
            StatusCode::NOT_FOUND => Err(write_not_found(path, &resp.body)),
            status => Err(status_error(status, &resp.body)),
        }
    }

    /// Replaces the value of an existing secret (new version).
    pub async fn update_secret(&self, path: &str, name: &str, value: &str) -> Result<Secret> {
        let resp = self.write_secret(Method::PATCH, path, name, value).await?;
        match resp.status {
            StatusCode::OK => self.parse_written_secret(&resp.body),
            StatusCode::NOT_FOUND => Err(write_not_found(path, &resp.body)),
            status => Err(status_error(status, &resp.body)),
        }
    }

    /// Deletes a secret. `Ok(false)` when it (or its folder) did not exist.
    pub async fn delete_secret(&self, path: &str, name: &str) -> Result<bool> {
        validate_folder_path(path)?;
        validate_secret_name(name)?;
        let body = self.write_body(path, None);
        let req = Req {
            method: Method::DELETE,
            url: self.url(&["api", "v3", "secrets", "raw", name]),
            query: Vec::new(),
            body: Some(body),
            body_limit: self.value_body_limit(),
        };
        let resp = self.execute_authed(req).await?;
        match resp.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => {
                let err = ErrorBody::parse(&resp.body);
                let msg = err.message();
                if msg.starts_with("Secret with name") || msg.starts_with("Folder with path") {
                    Ok(false)
                } else {
                    Err(not_found_error(&err))
                }
            }
            status => Err(status_error(status, &resp.body)),
        }
    }

    /// Creates folder `name` inside `parent_path`. Idempotent: an existing folder is returned
    /// (old servers answer 200 with it; newer ones may answer 400 "already exists").
    pub async fn create_folder(&self, parent_path: &str, name: &str) -> Result<Folder> {
        validate_folder_path(parent_path)?;
        validate_folder_name(name)?;
        let body = json!({
            "workspaceId": self.inner.cfg.project_id,
            "environment": self.inner.cfg.environment,
            "name": name,
            "path": parent_path,
        });
        let req = Req {
            method: Method::POST,
            url: self.url(&["api", "v1", "folders"]),
            query: Vec::new(),
            body: Some(Zeroizing::new(body.to_string().into_bytes())),
            body_limit: 64 * 1024,
        };
        let resp = self.execute_authed(req).await?;
        match resp.status {
            StatusCode::OK => {
                let env: FolderEnvelope = parse_json(&resp.body)?;
                Ok(Folder {
                    id: env.folder.id,
                    name: env.folder.name,
                })
            }
            StatusCode::BAD_REQUEST | StatusCode::CONFLICT if is_already_exists(&resp.body) => self
                .list_folders(parent_path)
                .await?
                .into_iter()
                .find(|f| f.name == name)
                .ok_or_else(|| {
                    InfisicalError::InvalidResponse(
                        "folder reported as existing but not listed".into(),
                    )
                }),
            status => Err(status_error(status, &resp.body)),
        }
    }

    /// Creates every missing folder along `path` (e.g. `/tenants/acme`), parent first.
    pub async fn ensure_folder_path(&self, path: &str) -> Result<()> {
        validate_folder_path(path)?;
        let mut parent = String::from("/");
        for seg in path.split('/').filter(|s| !s.is_empty()) {
            self.create_folder(&parent, seg).await?;
            parent = join_path(&parent, seg);
        }
        Ok(())
    }

    /// The folders directly inside `path` (empty when it does not exist).
    pub async fn list_folders(&self, path: &str) -> Result<Vec<Folder>> {
        validate_folder_path(path)?;
        let query = vec![
            ("workspaceId", self.inner.cfg.project_id.clone()),
            ("environment", self.inner.cfg.environment.clone()),
            ("path", path.to_owned()),
        ];
        let req = Req {
            method: Method::GET,
            url: self.url(&["api", "v1", "folders"]),
            query,
            body: None,
            body_limit: self.inner.cfg.max_response_bytes,
        };
        let resp = self.execute_authed(req).await?;
        match resp.status {
            StatusCode::OK => {
                let env: FoldersEnvelope = parse_json(&resp.body)?;
                Ok(env
                    .folders
                    .into_iter()
                    .map(|f| Folder {
                        id: f.id,
                        name: f.name,
                    })
                    .collect())
            }
            StatusCode::NOT_FOUND => {
                let err = ErrorBody::parse(&resp.body);
                if err.message().starts_with("Folder with path") {
                    Ok(Vec::new())
                } else {
                    Err(not_found_error(&err))
                }
            }
            status => Err(status_error(status, &resp.body)),
        }
    }

    // ---- helpers -------------------------------------------------------------------------

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.inner.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            // `push` percent-encodes each segment, so a name is always one path segment.
            for s in segments {
                segs.push(s);
            }
        }
        url
    }

    fn scope_query(&self, path: &str) -> Vec<(&'static str, String)> {
        vec![
            ("workspaceId", self.inner.cfg.project_id.clone()),
            ("environment", self.inner.cfg.environment.clone()),
            ("secretPath", path.to_owned()),
        ]
    }

    fn write_body(&self, path: &str, value: Option<&str>) -> Zeroizing<Vec<u8>> {
        let mut body = json!({
            "workspaceId": self.inner.cfg.project_id,
            "environment": self.inner.cfg.environment,
            "secretPath": path,
            "type": "shared",
        });
        if let Some(v) = value {
            body["secretValue"] = serde_json::Value::String(v.to_owned());
        }
        let bytes = Zeroizing::new(body.to_string().into_bytes());
        if value.is_some() {
            zeroize_json(body);
        }
        bytes
    }

    /// The largest body a single-secret answer may have: the value limit, room for JSON
    /// escaping of the value (up to 6 bytes a byte) and the metadata around it.
    fn value_body_limit(&self) -> usize {
        self.inner
            .cfg
            .max_value_bytes
            .saturating_mul(6)
            .saturating_add(64 * 1024)
    }

    fn check_value_size(&self, value: &str) -> Result<()> {
        if value.len() > self.inner.cfg.max_value_bytes {
            return Err(InfisicalError::TooLarge {
                what: "secret value",
                limit: self.inner.cfg.max_value_bytes,
            });
        }
        Ok(())
    }

    fn parse_written_secret(&self, body: &[u8]) -> Result<Secret> {
        let env: SecretEnvelope = parse_json(body).map_err(|e| match e {
            // A change-approval policy answers {"approval": ...} instead of {"secret": ...}.
            InfisicalError::InvalidResponse(_)
                if serde_json::from_slice::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v.get("approval").cloned())
                    .is_some() =>
            {
                InfisicalError::Rejected {
                    status: 200,
                    message: "the write needs approval (a change-approval policy covers this path)"
                        .into(),
                }
            }
            other => other,
        })?;
        self.convert(env.secret)
    }

    fn convert(&self, raw: RawSecret) -> Result<Secret> {
        if raw.secret_value_hidden {
            return Err(InfisicalError::Forbidden(
                "the secret value is hidden: the machine identity lacks read-value permission"
                    .into(),
            ));
        }
        let value = InfisicalValue::new(raw.secret_value);
        if value.len() > self.inner.cfg.max_value_bytes {
            return Err(InfisicalError::TooLarge {
                what: "secret value",
                limit: self.inner.cfg.max_value_bytes,
            });
        }
        Ok(Secret {
            id: raw.id,
            key: raw.secret_key,
            value,
            version: raw.version,
            secret_path: raw.secret_path,
            comment: raw.secret_comment.unwrap_or_default(),
        })
    }

    // ---- authentication ------------------------------------------------------------------

    /// The current access token, logging in or renewing first when needed. Holding the lock
    /// across the login means concurrent callers make one login, not many.
    async fn access_token(&self) -> Result<Zeroizing<String>> {
        let mut guard = self.inner.token.lock().await;
        let now = Instant::now();
        if let Some(state) = guard.as_ref() {
            if !state.needs_refresh(now) {
                return Ok(state.token.clone());
            }
            if state.can_renew(now) {
                match self.do_renew(state).await {
                    Ok(renewed) => {
                        let token = renewed.token.clone();
                        *guard = Some(renewed);
                        return Ok(token);
                    }
                    Err(e) if e.is_unavailable() && !state.expired(Instant::now()) => {
                        // The token still works; try again on the next call.
                        tracing::warn!(error = %e, "Infisical token renewal failed; token still valid");
                        return Ok(state.token.clone());
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "Infisical token renewal refused; logging in again");
                    }
                }
            }
        }
        match self.do_login().await {
            Ok(state) => {
                let token = state.token.clone();
                *guard = Some(state);
                Ok(token)
            }
            Err(e) => match guard.as_ref() {
                Some(old) if e.is_unavailable() && !old.expired(Instant::now()) => {
                    Ok(old.token.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Forgets `used` if it is still the current token (another caller may have replaced it).
    async fn invalidate_token(&self, used: &str) {
        let mut guard = self.inner.token.lock().await;
        if guard.as_ref().is_some_and(|s| s.token.as_str() == used) {
            *guard = None;
        }
    }

    async fn do_login(&self) -> Result<TokenState> {
        let cfg = &self.inner.cfg;
        let body = json!({
            "clientId": cfg.client_id,
            "clientSecret": cfg.client_secret.as_str(),
        });
        let bytes = Zeroizing::new(body.to_string().into_bytes());
        zeroize_json(body);
        let req = Req {
            method: Method::POST,
            url: self.url(&["api", "v1", "auth", "universal-auth", "login"]),
            query: Vec::new(),
            body: Some(bytes),
            body_limit: 64 * 1024,
        };
        let started = Instant::now();
        let resp = self.execute(&req, None).await?;
        match resp.status {
            StatusCode::OK => {
                let t: TokenResponse = parse_json(&resp.body)?;
                tracing::debug!(
                    expires_in = t.expires_in,
                    max_ttl = t.access_token_max_ttl,
                    "logged in to Infisical"
                );
                Ok(TokenState {
                    token: Zeroizing::new(t.access_token),
                    issued: started,
                    obtained: started,
                    ttl: Duration::from_secs(t.expires_in),
                    max_ttl: Duration::from_secs(t.access_token_max_ttl),
                })
            }
            // Old servers answer 404 for an unknown client id, new ones 401.
            StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => {
                let err = ErrorBody::parse(&resp.body);
                Err(InfisicalError::Unauthorized(format!(
                    "machine identity login failed: {}",
                    err.message()
                )))
            }
            status => Err(status_error(status, &resp.body)),
        }
    }

    async fn do_renew(&self, state: &TokenState) -> Result<TokenState> {
        let body = json!({ "accessToken": state.token.as_str() });
        let bytes = Zeroizing::new(body.to_string().into_bytes());
        zeroize_json(body);
        let req = Req {
            method: Method::POST,
            url: self.url(&["api", "v1", "auth", "token", "renew"]),
            query: Vec::new(),
            body: Some(bytes),
            body_limit: 64 * 1024,
        };
        let started = Instant::now();
        let resp = self.execute(&req, None).await?;
        match resp.status {
            StatusCode::OK => {
                let t: TokenResponse = parse_json(&resp.body)?;
                tracing::debug!(expires_in = t.expires_in, "renewed Infisical token");
                Ok(TokenState {
                    // Old servers return the same JWT, new ones a new one: keep what came back.
                    token: Zeroizing::new(t.access_token),
                    issued: state.issued,
                    obtained: started,
                    ttl: Duration::from_secs(t.expires_in),
                    max_ttl: Duration::from_secs(t.access_token_max_ttl),
                })
            }
            status => Err(status_error(status, &resp.body)),
        }
    }

    // ---- transport -----------------------------------------------------------------------

    /// Sends an authenticated request; on 401 or 403 `TokenError` logs in again once and
    /// repeats it.
    async fn execute_authed(&self, req: Req) -> Result<Resp> {
        let mut relogged = false;
        loop {
            let token = self.access_token().await?;
            let resp = self.execute(&req, Some(&token)).await?;
            let token_refused = resp.status == StatusCode::UNAUTHORIZED
                || (resp.status == StatusCode::FORBIDDEN
                    && ErrorBody::parse(&resp.body).error_name() == "TokenError");
            if !token_refused {
                return Ok(resp);
            }
            self.invalidate_token(&token).await;
            if relogged {
                let err = ErrorBody::parse(&resp.body);
                return Err(InfisicalError::Unauthorized(format!(
                    "a fresh access token was refused: {}",
                    err.message()
                )));
            }
            tracing::info!(
                status = resp.status.as_u16(),
                "Infisical refused the access token; logging in again"
            );
            relogged = true;
        }
    }

    /// Sends `req` with retries, backoff, `Retry-After` and the circuit breaker. Returns any
    /// response that is not 5xx or 429; those become errors once retries are spent.
    async fn execute(&self, req: &Req, token: Option<&str>) -> Result<Resp> {
        let cfg = &self.inner.cfg;
        let breaker = &self.inner.breaker;
        let mut attempt: u32 = 0;
        let mut last_err: Option<InfisicalError> = None;
        loop {
            if !breaker.try_acquire() {
                return Err(last_err.unwrap_or(InfisicalError::CircuitOpen));
            }
            let mut guard = BreakerGuard {
                breaker,
                armed: true,
            };
            let outcome = self.attempt(req, token).await;
            guard.armed = false;
            let delay = match outcome {
                Ok((status, headers, body)) if status.is_server_error() => {
                    breaker.on_failure();
                    tracing::warn!(
                        status = status.as_u16(),
                        attempt,
                        path = req.url.path(),
                        "Infisical server error"
                    );
                    last_err = Some(InfisicalError::Unavailable(format!(
                        "HTTP {} from Infisical{}",
                        status.as_u16(),
                        if attempt > 0 {
                            format!(" after {} attempts", attempt + 1)
                        } else {
                            String::new()
                        }
                    )));
                    drop((headers, body));
                    self.backoff(attempt)
                }
                Ok((StatusCode::TOO_MANY_REQUESTS, headers, _)) => {
                    // The server is alive; being throttled is not an outage.
                    breaker.on_success();
                    let retry_after = parse_retry_after(&headers);
                    tracing::warn!(
                        attempt,
                        retry_after_s = retry_after.map(|d| d.as_secs()),
                        "Infisical rate limit"
                    );
                    last_err = Some(InfisicalError::RateLimited { retry_after });
                    match retry_after {
                        Some(ra) if ra > cfg.max_retry_after => {
                            return Err(InfisicalError::RateLimited {
                                retry_after: Some(ra),
                            })
                        }
                        Some(ra) => ra + jitter(Duration::from_millis(100)),
                        None => self.backoff(attempt),
                    }
                }
                Ok((status, _, body)) => {
                    breaker.on_success();
                    return Ok(Resp {
                        status,
                        body,
                        attempts: attempt + 1,
                    });
                }
                Err(AttemptError::Fatal(e)) => {
                    breaker.on_success();
                    return Err(e);
                }
                Err(AttemptError::TooLarge(limit)) => {
                    breaker.on_success();
                    return Err(InfisicalError::TooLarge {
                        what: "Infisical response",
                        limit,
                    });
                }
                Err(AttemptError::Timeout) => {
                    breaker.on_failure();
                    tracing::warn!(
                        attempt,
                        path = req.url.path(),
                        "Infisical request timed out"
                    );
                    last_err = Some(InfisicalError::Timeout(cfg.request_timeout));
                    self.backoff(attempt)
                }
                Err(AttemptError::Transport(why)) => {
                    breaker.on_failure();
                    tracing::warn!(attempt, path = req.url.path(), error = %why, "Infisical request failed");
                    last_err = Some(InfisicalError::Unavailable(why));
                    self.backoff(attempt)
                }
            };
            if attempt >= cfg.max_retries {
                return Err(last_err.unwrap_or(InfisicalError::CircuitOpen));
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(
        &self,
        req: &Req,
        token: Option<&str>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Zeroizing<Vec<u8>>), AttemptError> {
        let mut builder = self
            .inner
            .http
            .request(req.method.clone(), req.url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    AttemptError::Fatal(InfisicalError::InvalidResponse(
                        "the access token is not a valid HTTP header value".into(),
                    ))
                })?;
            value.set_sensitive(true);
            builder = builder.header(reqwest::header::AUTHORIZATION, value);
        }
        if let Some(body) = &req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let mut resp = builder.send().await.map_err(classify)?;
        let status = resp.status();
        if status.is_redirection() {
            return Err(AttemptError::Fatal(InfisicalError::InvalidResponse(
                format!(
                    "unexpected redirect (HTTP {}); check INFISICAL_SITE_URL",
                    status.as_u16()
                ),
            )));
        }
        let headers = resp.headers().clone();
        if resp
            .content_length()
            .is_some_and(|n| n > req.body_limit as u64)
        {
            return Err(AttemptError::TooLarge(req.body_limit));
        }
        let mut body = Zeroizing::new(Vec::with_capacity(
            resp.content_length()
                .map(|n| n as usize)
                .unwrap_or(4096)
                .min(req.body_limit),
        ));
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > req.body_limit {
                return Err(AttemptError::TooLarge(req.body_limit));
            }
            if body.capacity() < body.len() + chunk.len() {
                // Grow by copying into a zeroizing buffer, so no plaintext copy is left behind.
                let mut bigger = Zeroizing::new(Vec::with_capacity(
                    (body.len() + chunk.len())
                        .max(body.capacity() * 2)
                        .min(req.body_limit),
                ));
                bigger.extend_from_slice(&body);
                body = bigger;
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, headers, body))
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cfg = &self.inner.cfg;
        let exp = cfg
            .retry_base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(cfg.retry_max_delay);
        // "Equal jitter": half fixed, half random, so retries never collapse to zero delay.
        exp / 2 + jitter(exp / 2)
    }
}

fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

fn classify(e: reqwest::Error) -> AttemptError {
    if e.is_timeout() {
        return AttemptError::Timeout;
    }
    // Name the cause from the io error kind; reqwest's own text is not needed and the URL is
    // dropped (it carries only ids and paths, but nothing of it helps an operator here).
    let mut cause = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            cause = Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
                std::io::ErrorKind::TimedOut => return AttemptError::Timeout,
                kind => format!("{kind}"),
            });
            break;
        }
        source = s.source();
    }
    let what = if e.is_connect() {
        "could not connect to Infisical"
    } else if e.is_body() || e.is_decode() {
        "failed reading Infisical's answer"
    } else {
        "request to Infisical failed"
    };
    match cause {
        Some(c) => AttemptError::Transport(format!("{what}: {c}")),
        None => AttemptError::Transport(what.to_owned()),
    }
}

fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    // serde_json's error text can quote input; only its position and category are kept.
    serde_json::from_slice(body).map_err(|e| {
        InfisicalError::InvalidResponse(format!(
            "malformed JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Overwrites every string in a JSON value that held a secret before it is dropped.
fn zeroize_json(value: serde_json::Value) {
    use zeroize::Zeroize;
    match value {
        serde_json::Value::String(mut s) => s.zeroize(),
        serde_json::Value::Array(items) => items.into_iter().for_each(zeroize_json),
        serde_json::Value::Object(map) => map.into_iter().for_each(|(_, v)| zeroize_json(v)),
        _ => {}
    }
}

fn is_already_exists(body: &[u8]) -> bool {
    ErrorBody::parse(body)
        .message()
        .to_ascii_lowercase()
        .contains("already exist")
}

fn not_found_error(err: &ErrorBody) -> InfisicalError {
    let message = err.message();
    if err.error_name() == "Not Found" && message.starts_with("Route ") {
        return InfisicalError::InvalidResponse(
            "route not found: the server does not serve this API (check INFISICAL_SITE_URL)".into(),
        );
    }
    InfisicalError::Rejected {
        status: 404,
        message,
    }
}

fn write_not_found(path: &str, body: &[u8]) -> InfisicalError {
    let err = ErrorBody::parse(body);
    let msg = err.message();
    if msg.starts_with("Folder with path") {
        InfisicalError::FolderNotFound(path.to_owned())
    } else if msg.starts_with("Secret with name") {
        InfisicalError::NotFound
    } else {
        not_found_error(&err)
    }
}

fn status_error(status: StatusCode, body: &[u8]) -> InfisicalError {
    let err = ErrorBody::parse(body);
    match status {
        StatusCode::UNAUTHORIZED => InfisicalError::Unauthorized(err.message()),
        StatusCode::FORBIDDEN => InfisicalError::Forbidden(err.message()),
        StatusCode::NOT_FOUND => not_found_error(&err),
        StatusCode::PAYLOAD_TOO_LARGE => InfisicalError::TooLarge {
            what: "request",
            limit: 1024 * 1024,
        },
        s if s.is_client_error() => InfisicalError::Rejected {
            status: s.as_u16(),
            message: err.message(),
        },
        s => InfisicalError::InvalidResponse(format!("unexpected HTTP {}", s.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts() {
        let cfg = InfisicalConfig::new("http://x", "id", "s3cr3t-client", "p", "dev");
        let text = format!("{cfg:?}");
        assert!(!text.contains("s3cr3t-client"), "{text}");
        assert!(text.contains("[redacted]"));
        let v = InfisicalValue::new("sk_live_123".into());
        assert_eq!(format!("{v:?}"), "InfisicalValue([redacted])");
        assert_eq!(v.expose(), "sk_live_123");
    }

    #[test]
    fn token_renewal_rules() {
        let now = Instant::now();
        let mk = |ttl: u64, max: u64| TokenState {
            token: Zeroizing::new("t".into()),
            issued: now,
            obtained: now,
            ttl: Duration::from_secs(ttl),
            max_ttl: Duration::from_secs(max),
        };
        // TTL == max TTL (the default): renewing would delete the token.
        assert!(!mk(2_592_000, 2_592_000).can_renew(now));
        assert!(mk(120, 3600).can_renew(now));
        assert!(!mk(120, 3600).can_renew(now + Duration::from_secs(3500)));
        assert!(!mk(0, 0).needs_refresh(now + Duration::from_secs(1_000_000)));
        assert!(!mk(100, 200).needs_refresh(now + Duration::from_secs(79)));
        assert!(mk(100, 200).needs_refresh(now + Duration::from_secs(81)));
    }

    #[test]
    fn site_url_forms() {
        for site in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/api",
            "http://127.0.0.1:8080/api/",
        ] {
            let c = InfisicalClient::new(InfisicalConfig::new(site, "i", "s", "p", "dev")).unwrap();
            assert_eq!(
                c.url(&["api", "v3", "secrets", "raw", "A.B"]).as_str(),
                "http://127.0.0.1:8080/api/v3/secrets/raw/A.B",
                "{site}"
            );
        }
        assert!(
            InfisicalClient::new(InfisicalConfig::new("ftp://x", "i", "s", "p", "dev")).is_err()
        );
        assert!(
            InfisicalClient::new(InfisicalConfig::new("not a url", "i", "s", "p", "dev")).is_err()
        );
    }

    #[test]
    fn error_messages_carry_no_body_text() {
        let e = parse_json::<TokenResponse>(br#"{"accessToken": "eyJSECRET"#)
            .err()
            .unwrap();
        assert!(!e.to_string().contains("eyJSECRET"), "{e}");
    }
}
