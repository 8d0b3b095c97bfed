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
//!   message or a `Debug` output. Values come back as
//!   [`SecretValue`], which zeroizes.

mod auth;
mod config;
mod error;
mod transport;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::json;
use zeroize::Zeroizing;

use crate::crypto::SecretValue;

use super::paths::{join_path, validate_folder_name, validate_folder_path, validate_secret_name};
use super::trim_value;
use crate::breaker::{BreakerState, CircuitBreaker};
use auth::TokenState;
use transport::{Req, Resp};
use wire::{
    absent, is_already_exists, parse_json, status_error, write_not_found, zeroize_json,
    FolderEnvelope, FoldersEnvelope, RawSecret, SecretEnvelope, SecretsEnvelope, NO_FOLDER,
    NO_SECRET,
};

pub use config::InfisicalConfig;
pub use error::{ConfigError, InfisicalError, Result};

/// One secret as Infisical returns it.
#[derive(Debug, Clone)]
pub struct Secret {
    pub id: String,
    pub key: String,
    pub value: SecretValue,
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
        let mut base = Url::parse(cfg.site_url.trim()).map_err(|_| ConfigError::SiteUrlInvalid)?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ConfigError::SiteUrlScheme.into());
        }
        base.set_query(None);
        base.set_fragment(None);
        {
            let mut segs = base
                .path_segments_mut()
                .map_err(|_| ConfigError::SiteUrlNotBase)?;
            segs.pop_if_empty();
        }
        if base.path().ends_with("/api") {
            base.path_segments_mut()
                .map_err(|_| ConfigError::SiteUrlNotBase)?
                .pop();
        }
        if cfg.client_id.is_empty() || cfg.project_id.is_empty() || cfg.environment.is_empty() {
            return Err(ConfigError::MissingScope.into());
        }
        let http = reqwest::Client::builder()
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tenant-vault/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ConfigError::HttpClient)?;
        let breaker = CircuitBreaker::new("infisical", cfg.breaker_threshold, cfg.breaker_cooldown);
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
            StatusCode::NOT_FOUND => absent(&resp.body, NO_SECRET).map(|()| None),
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
            StatusCode::NOT_FOUND => absent(&resp.body, NO_FOLDER).map(|()| Vec::new()),
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
            StatusCode::NOT_FOUND => absent(&resp.body, NO_SECRET).map(|()| false),
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
            StatusCode::NOT_FOUND => absent(&resp.body, NO_FOLDER).map(|()| Vec::new()),
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
        let value = SecretValue::new(raw.secret_value);
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
