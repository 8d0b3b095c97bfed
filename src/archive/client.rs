//! The OpenBao client: AppRole login, token renewal, and the KV v2 calls the archive makes
//! (`<mount>/data/tenants/{slug}/{key}` and its metadata). Plain HTTP API through reqwest.
//!
//! The token is renewed (`auth/token/renew-self`) once two thirds of its TTL have passed and
//! replaced by a fresh login when renewal is refused or the token nears its max TTL. A
//! circuit breaker turns an OpenBao outage into an immediate "unavailable", so the archive
//! worker waits instead of piling up timeouts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::error::{error_words, ArchiveError};
use crate::breaker::{BreakerState, CircuitBreaker};
use crate::crypto::SecretValue;
use crate::domain::{SecretKey, TenantSlug};

type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// KV v2 keeps 10 versions of a key unless told otherwise; the archive keeps them all (the
/// retention is `delete_version_after`), so keys and the mount get this instead.
pub const MAX_VERSIONS: u64 = 1_000_000;

/// How to reach OpenBao and who to log in as.
#[derive(Debug, Clone)]
pub struct ArchiveConfig {
    /// Base URL, e.g. `https://openbao.internal:8200`.
    pub addr: String,
    /// The KV v2 mount (e.g. `tenant-vault-archive`).
    pub mount: String,
    pub role_id: String,
    pub secret_id: SecretValue,
    /// PEM CA certificate(s) to trust for `https` (besides the system's).
    pub ca_cert_pem: Option<Vec<u8>>,
    /// How long archived versions are kept (KV v2 `delete_version_after`).
    pub retention: Duration,
    pub request_timeout: Duration,
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
}

impl ArchiveConfig {
    pub fn new(addr: &str, mount: &str, role_id: &str, secret_id: SecretValue) -> Self {
        Self {
            addr: addr.to_string(),
            mount: mount.to_string(),
            role_id: role_id.to_string(),
            secret_id,
            ca_cert_pem: None,
            retention: Duration::from_secs(5 * 365 * 86_400),
            request_timeout: Duration::from_secs(5),
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_secs(5),
        }
    }
}

/// A mount name: segments of letters, digits, `_` and `-`.
pub fn validate_mount(mount: &str) -> Result<()> {
    let ok = !mount.is_empty()
        && mount.len() <= 128
        && mount.split('/').all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(ArchiveError::Config(
            "the archive mount is segments of A-Z, a-z, 0-9, '_' and '-' separated by '/'".into(),
        ))
    }
}

/// An OpenBao base URL (`http` or `https`, no path).
pub(crate) fn parse_addr(addr: &str) -> Result<Url> {
    let url = Url::parse(addr.trim_end_matches('/'))
        .map_err(|e| ArchiveError::Config(format!("TENANT_VAULT_ARCHIVE_ADDR: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ArchiveError::Config(
            "TENANT_VAULT_ARCHIVE_ADDR must be an http:// or https:// URL".into(),
        ));
    }
    Ok(url)
}

/// An HTTP client for OpenBao, trusting `ca_cert_pem` too.
pub(crate) fn http_client(
    ca_cert_pem: Option<&[u8]>,
    timeout: Duration,
) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(3)))
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = ca_cert_pem {
        for cert in reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ArchiveError::Config(format!("the archive CA certificate: {e}")))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ArchiveError::Config(format!("HTTP client: {e}")))
}

/// One version as the archive stores it (the KV entry's data).
#[derive(Debug)]
pub struct ArchivedEntry {
    pub value: SecretValue,
    pub secret_id: Uuid,
    /// The tenant-vault version.
    pub version: i32,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub archived_at: DateTime<Utc>,
    pub retain_until: DateTime<Utc>,
}

#[derive(Serialize)]
struct WireEntryOut<'a> {
    value: &'a str,
    secret_id: Uuid,
    tenant_vault_version: i32,
    reason: &'a str,
    created_at: DateTime<Utc>,
    archived_at: DateTime<Utc>,
    retain_until: DateTime<Utc>,
}

#[derive(Deserialize)]
struct WireEntryIn {
    value: String,
    secret_id: Uuid,
    tenant_vault_version: i32,
    reason: String,
    created_at: DateTime<Utc>,
    archived_at: DateTime<Utc>,
    retain_until: DateTime<Utc>,
}

/// What `auth/token/lookup-self` says about the client's token (never the token itself).
#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub accessor: String,
    pub ttl_secs: i64,
    pub renewable: bool,
    /// Unix seconds of the last renewal; None until renewed.
    pub last_renewal_time: Option<i64>,
    pub policies: Vec<String>,
}

struct Token {
    value: SecretValue,
    obtained: Instant,
    ttl: Duration,
    /// The TTL the login granted; a renewal granting much less means the max TTL is near.
    login_ttl: Duration,
    renewable: bool,
}

impl Token {
    fn renew_due(&self, now: Instant) -> bool {
        now.duration_since(self.obtained) >= self.ttl * 2 / 3
    }
    fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.obtained) + Duration::from_secs(1) >= self.ttl
    }
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    cfg: ArchiveConfig,
    token: tokio::sync::Mutex<Option<Token>>,
    breaker: CircuitBreaker,
    logins: AtomicU64,
    renewals: AtomicU64,
}

/// The archive's OpenBao client. Cheap to clone.
#[derive(Clone)]
pub struct ArchiveClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ArchiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveClient")
            .field("addr", &self.inner.base.as_str())
            .field("mount", &self.inner.cfg.mount)
            .finish_non_exhaustive()
    }
}

/// A response: status and (zeroized on drop) body.
struct Resp {
    status: StatusCode,
    body: Zeroizing<Vec<u8>>,
}

impl Resp {
    fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ArchiveError::Protocol(format!("not JSON: {e}")))
    }
    fn fail(&self, what: &str) -> ArchiveError {
        let message = format!("{what}: {}", error_words(&self.body));
        match self.status.as_u16() {
            403 => ArchiveError::Denied(message),
            500..=599 => ArchiveError::Unavailable(format!("HTTP {} ({message})", self.status)),
            s => ArchiveError::Unexpected { status: s, message },
        }
    }
}

impl ArchiveClient {
    pub fn new(cfg: ArchiveConfig) -> Result<Self> {
        validate_mount(&cfg.mount)?;
        if cfg.role_id.trim().is_empty() || cfg.secret_id.is_empty() {
            return Err(ArchiveError::Config(
                "the archive needs TENANT_VAULT_ARCHIVE_ROLE_ID and TENANT_VAULT_ARCHIVE_SECRET_ID"
                    .into(),
            ));
        }
        let base = parse_addr(&cfg.addr)?;
        let http = http_client(cfg.ca_cert_pem.as_deref(), cfg.request_timeout)?;
        let breaker = CircuitBreaker::new("archive", cfg.breaker_threshold, cfg.breaker_cooldown);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                cfg,
                token: tokio::sync::Mutex::new(None),
                breaker,
                logins: AtomicU64::new(0),
                renewals: AtomicU64::new(0),
            }),
        })
    }

    pub fn mount(&self) -> &str {
        &self.inner.cfg.mount
    }

    pub fn retention(&self) -> Duration {
        self.inner.cfg.retention
    }

    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state()
    }

    /// AppRole logins and token renewals made so far.
    pub fn auth_counts(&self) -> (u64, u64) {
        (
            self.inner.logins.load(Ordering::Relaxed),
            self.inner.renewals.load(Ordering::Relaxed),
        )
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.inner.base.clone();
        url.set_path(&format!("/v1/{path}"));
        url
    }

    /// One request through the breaker. Transport errors, timeouts and 5xx (sealed, standby)
    /// count as failures; any other answer shows OpenBao is up.
    async fn send(
        &self,
        method: Method,
        url: Url,
        token: Option<&SecretValue>,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> Result<Resp> {
        let breaker = &self.inner.breaker;
        if !breaker.try_acquire() {
            return Err(ArchiveError::Unavailable(
                "circuit breaker open after repeated failures".into(),
            ));
        }
        let path = url.path().to_string();
        let mut req = self.inner.http.request(method, url);
        if let Some(token) = token {
            let mut v = reqwest::header::HeaderValue::from_str(token.expose())
                .map_err(|_| ArchiveError::Protocol("the token is not a header value".into()))?;
            v.set_sensitive(true);
            req = req.header("X-Vault-Token", v);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let sent = async {
            let r = req.send().await?;
            let status = r.status();
            let body = Zeroizing::new(r.bytes().await?.to_vec());
            Ok::<_, reqwest::Error>(Resp { status, body })
        }
        .await;
        match sent {
            Ok(resp) if resp.status.is_server_error() => {
                breaker.on_failure();
                Err(resp.fail(&path))
            }
            Ok(resp) => {
                breaker.on_success();
                Ok(resp)
            }
            Err(e) => {
                breaker.on_failure();
                // reqwest's message names the URL (no credentials in it) and the cause.
                let why = if e.is_timeout() {
                    format!("{path}: timed out")
                } else {
                    format!("{path}: {}", e.without_url())
                };
                Err(ArchiveError::Unavailable(why))
            }
        }
    }

    async fn login(&self) -> Result<Token> {
        let body = serde_json::to_vec(&json!({
            "role_id": self.inner.cfg.role_id,
            "secret_id": self.inner.cfg.secret_id.expose(),
        }))
        .map(Zeroizing::new)
        .map_err(|e| ArchiveError::Protocol(e.to_string()))?;
        let resp = self
            .send(
                Method::POST,
                self.url("auth/approle/login"),
                None,
                Some(body),
            )
            .await?;
        if !resp.status.is_success() {
            return Err(ArchiveError::Login(error_words(&resp.body)));
        }
        let token = parse_auth(&resp.json()?)?;
        self.inner.logins.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tenant_vault_archive_logins_total").increment(1);
        tracing::debug!(
            ttl_s = token.ttl.as_secs(),
            "logged in to OpenBao (AppRole)"
        );
        Ok(token)
    }

    /// `auth/token/renew-self` with the current token; the new TTL.
    async fn renew(&self, token: &Token) -> Result<Token> {
        let resp = self
            .send(
                Method::POST,
                self.url("auth/token/renew-self"),
                Some(&token.value),
                Some(Zeroizing::new(b"{}".to_vec())),
            )
            .await?;
        if !resp.status.is_success() {
            return Err(resp.fail("token renewal"));
        }
        let mut renewed = parse_auth(&resp.json()?)?;
        renewed.login_ttl = token.login_ttl;
        self.inner.renewals.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("tenant_vault_archive_token_renewals_total").increment(1);
        Ok(renewed)
    }

    /// A token good for the next request: the cached one, renewed when due, or a new login.
    async fn token(&self) -> Result<SecretValue> {
        let mut slot = self.inner.token.lock().await;
        let now = Instant::now();
        if let Some(t) = slot.as_ref() {
            if !t.renew_due(now) {
                return Ok(t.value.clone());
            }
            if t.renewable && !t.expired(now) {
                match self.renew(t).await {
                    // Far below what the login gave: the max TTL is near, log in afresh.
                    Ok(renewed) if renewed.ttl * 2 >= renewed.login_ttl => {
                        let value = renewed.value.clone();
                        *slot = Some(renewed);
                        return Ok(value);
                    }
                    Ok(_) => {}
                    Err(e) if e.is_unavailable() => return Err(e),
                    Err(e) => {
                        tracing::info!(error = %e, "OpenBao token renewal refused; logging in again")
                    }
                }
            }
        }
        let fresh = self.login().await?;
        let value = fresh.value.clone();
        *slot = Some(fresh);
        Ok(value)
    }

    /// Renews the token now (logging in first if there is none). For tests and operators.
    pub async fn renew_token(&self) -> Result<Duration> {
        let mut slot = self.inner.token.lock().await;
        if slot.is_none() {
            *slot = Some(self.login().await?);
        }
        let renewed = self.renew(slot.as_ref().expect("set above")).await?;
        let ttl = renewed.ttl;
        *slot = Some(renewed);
        Ok(ttl)
    }

    /// An authenticated request; a 403 with a token we hold (revoked, expired early) gets one
    /// fresh login and a second try.
    async fn authed(&self, method: Method, url: Url, body: Option<&[u8]>) -> Result<Resp> {
        let mut relogged = false;
        loop {
            let token = self.token().await?;
            let resp = self
                .send(
                    method.clone(),
                    url.clone(),
                    Some(&token),
                    body.map(|b| Zeroizing::new(b.to_vec())),
                )
                .await?;
            if resp.status != StatusCode::FORBIDDEN || relogged {
                return Ok(resp);
            }
            let mut slot = self.inner.token.lock().await;
            if slot.as_ref().is_some_and(|t| t.value == token) {
                *slot = None;
            }
            relogged = true;
        }
    }

    /// What OpenBao says about our token.
    pub async fn token_info(&self) -> Result<TokenInfo> {
        let resp = self
            .authed(Method::GET, self.url("auth/token/lookup-self"), None)
            .await?;
        if !resp.status.is_success() {
            return Err(resp.fail("token lookup"));
        }
        let v = resp.json()?;
        let d = &v["data"];
        Ok(TokenInfo {
            accessor: d["accessor"].as_str().unwrap_or_default().to_string(),
            ttl_secs: d["ttl"].as_i64().unwrap_or(0),
            renewable: d["renewable"].as_bool().unwrap_or(false),
            last_renewal_time: d["last_renewal_time"].as_i64(),
            policies: d["policies"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    fn kv_path(&self, kind: &str, slug: &TenantSlug, key: Option<&SecretKey>) -> String {
        match key {
            Some(key) => format!("{}/{kind}/tenants/{slug}/{key}", self.inner.cfg.mount),
            None => format!("{}/{kind}/tenants/{slug}", self.inner.cfg.mount),
        }
    }

    /// The key's newest KV version (0 when the key does not exist).
    pub async fn current_version(&self, slug: &TenantSlug, key: &SecretKey) -> Result<u32> {
        let url = self.url(&self.kv_path("metadata", slug, Some(key)));
        let resp = self.authed(Method::GET, url, None).await?;
        match resp.status {
            StatusCode::NOT_FOUND => Ok(0),
            s if s.is_success() => {
                let v = resp.json()?;
                v["data"]["current_version"]
                    .as_u64()
                    .map(|n| n as u32)
                    .ok_or_else(|| {
                        ArchiveError::Protocol("metadata without current_version".into())
                    })
            }
            _ => Err(resp.fail("reading archive metadata")),
        }
    }

    /// One KV version of a key; None when it does not exist or was deleted (retention).
    pub async fn read(
        &self,
        slug: &TenantSlug,
        key: &SecretKey,
        kv_version: u32,
    ) -> Result<Option<ArchivedEntry>> {
        let mut url = self.url(&self.kv_path("data", slug, Some(key)));
        url.query_pairs_mut()
            .append_pair("version", &kv_version.to_string());
        let resp = self.authed(Method::GET, url, None).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status.is_success() {
            return Err(resp.fail("reading the archive"));
        }
        #[derive(Deserialize)]
        struct Envelope {
            data: Option<Data>,
        }
        #[derive(Deserialize)]
        struct Data {
            data: Option<WireEntryIn>,
        }
        let parsed: Envelope = serde_json::from_slice(&resp.body).map_err(|e| {
            // serde's message names the field and position, never the input.
            ArchiveError::Protocol(format!("archive entry: {e}"))
        })?;
        let Some(w) = parsed.data.and_then(|d| d.data) else {
            return Ok(None);
        };
        Ok(Some(ArchivedEntry {
            value: SecretValue::new(w.value),
            secret_id: w.secret_id,
            version: w.tenant_vault_version,
            reason: w.reason,
            created_at: w.created_at,
            archived_at: w.archived_at,
            retain_until: w.retain_until,
        }))
    }

    /// Adds a KV version if the key's newest version is still `cas`; returns the new one.
    pub async fn write(
        &self,
        slug: &TenantSlug,
        key: &SecretKey,
        entry: &ArchivedEntry,
        cas: u32,
    ) -> Result<u32> {
        let body = serde_json::to_vec(&json!({
            "options": {"cas": cas},
            "data": WireEntryOut {
                value: entry.value.expose(),
                secret_id: entry.secret_id,
                tenant_vault_version: entry.version,
                reason: &entry.reason,
                created_at: entry.created_at,
                archived_at: entry.archived_at,
                retain_until: entry.retain_until,
            },
        }))
        .map(Zeroizing::new)
        .map_err(|e| ArchiveError::Protocol(e.to_string()))?;
        let url = self.url(&self.kv_path("data", slug, Some(key)));
        let resp = self.authed(Method::POST, url, Some(&body)).await?;
        if resp.status == StatusCode::BAD_REQUEST
            && error_words(&resp.body).contains("check-and-set")
        {
            return Err(ArchiveError::CasConflict);
        }
        if !resp.status.is_success() {
            return Err(resp.fail("writing to the archive"));
        }
        resp.json()?["data"]["version"]
            .as_u64()
            .map(|n| n as u32)
            .ok_or_else(|| ArchiveError::Protocol("write answer without a version".into()))
    }

    /// The key's metadata: retention (`delete_version_after`), no version cap, and
    /// `custom_metadata` (KV v2 keeps one per key, so it describes the newest archived version).
    pub async fn set_metadata(
        &self,
        slug: &TenantSlug,
        key: &SecretKey,
        custom: &[(&str, String)],
    ) -> Result<()> {
        let custom: serde_json::Map<String, Value> = custom
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
            .collect();
        let body = serde_json::to_vec(&json!({
            "max_versions": MAX_VERSIONS,
            "delete_version_after": format!("{}s", self.inner.cfg.retention.as_secs()),
            "custom_metadata": custom,
        }))
        .map_err(|e| ArchiveError::Protocol(e.to_string()))?;
        let url = self.url(&self.kv_path("metadata", slug, Some(key)));
        let resp = self.authed(Method::POST, url, Some(&body)).await?;
        if !resp.status.is_success() {
            return Err(resp.fail("writing archive metadata"));
        }
        Ok(())
    }

    /// The keys archived for a tenant.
    pub async fn list_keys(&self, slug: &TenantSlug) -> Result<Vec<String>> {
        let mut url = self.url(&format!("{}/", self.kv_path("metadata", slug, None)));
        url.query_pairs_mut().append_pair("list", "true");
        let resp = self.authed(Method::GET, url, None).await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !resp.status.is_success() {
            return Err(resp.fail("listing the archive"));
        }
        Ok(resp.json()?["data"]["keys"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Deletes a key with every version and its metadata (KV v2 metadata delete).
    pub async fn delete_key(&self, slug: &TenantSlug, key: &str) -> Result<()> {
        let path = format!("{}/{key}", self.kv_path("metadata", slug, None));
        let resp = self.authed(Method::DELETE, self.url(&path), None).await?;
        if !resp.status.is_success() && resp.status != StatusCode::NOT_FOUND {
            return Err(resp.fail("deleting from the archive"));
        }
        Ok(())
    }
}

fn parse_auth(v: &Value) -> Result<Token> {
    let auth = &v["auth"];
    let value = auth["client_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ArchiveError::Protocol("no client_token in the auth answer".into()))?;
    // A zero lease means "no expiry" (root-like tokens); check back hourly anyway.
    let ttl = match auth["lease_duration"].as_u64().unwrap_or(0) {
        0 => Duration::from_secs(3600),
        s => Duration::from_secs(s),
    };
    Ok(Token {
        value: SecretValue::new(value.to_string()),
        obtained: Instant::now(),
        ttl,
        login_ttl: ttl,
        renewable: auth["renewable"].as_bool().unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        for ok in ["tenant-vault-archive", "kv", "a/b_c"] {
            assert!(validate_mount(ok).is_ok(), "{ok}");
        }
        for bad in ["", "/kv", "kv/", "a//b", "k v", "../sys", "kv?x"] {
            assert!(validate_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        assert!(parse_addr("http://127.0.0.1:8200").is_ok());
        assert!(parse_addr("https://bao.internal/").is_ok());
        for bad in ["127.0.0.1:8200", "ftp://x", "not a url"] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_renew_at_two_thirds_and_expire_a_second_early() {
        let t = Token {
            value: SecretValue::new("t".into()),
            obtained: Instant::now(),
            ttl: Duration::from_secs(30),
            login_ttl: Duration::from_secs(30),
            renewable: true,
        };
        let at = |s| t.obtained + Duration::from_secs(s);
        assert!(!t.renew_due(at(19)) && t.renew_due(at(20)));
        assert!(!t.expired(at(28)) && t.expired(at(29)));
    }

    #[test]
    fn auth_answers_are_parsed() {
        let t = parse_auth(
            &json!({"auth": {"client_token": "s.x", "lease_duration": 120, "renewable": true}}),
        )
        .unwrap();
        assert_eq!((t.ttl, t.renewable), (Duration::from_secs(120), true));
        let t = parse_auth(&json!({"auth": {"client_token": "s.x", "lease_duration": 0}})).unwrap();
        assert_eq!(
            t.ttl,
            Duration::from_secs(3600),
            "no expiry: check back hourly"
        );
        assert!(parse_auth(&json!({"auth": null})).is_err());
        assert!(parse_auth(&json!({"auth": {"client_token": ""}})).is_err());
    }

    #[test]
    fn error_words_are_one_short_line() {
        let body = serde_json::to_vec(
            &json!({"errors": ["1 error occurred:\n\t* permission denied\n\n"]}),
        )
        .unwrap();
        assert_eq!(error_words(&body), "1 error occurred: * permission denied");
        assert_eq!(error_words(b"not json"), "no error text");
        let long = format!(r#"{{"errors":["{}"]}}"#, "é".repeat(400));
        assert!(error_words(long.as_bytes()).len() <= 304);
    }

    #[test]
    fn secret_id_is_not_in_debug() {
        let cfg = ArchiveConfig::new(
            "http://127.0.0.1:1",
            "kv",
            "role",
            SecretValue::new("secret-id-do-not-print".into()),
        );
        assert!(!format!("{cfg:?}").contains("secret-id-do-not-print"));
        let client = ArchiveClient::new(cfg).unwrap();
        assert!(!format!("{client:?}").contains("secret-id-do-not-print"));
    }
}
