//! The OpenBao client: AppRole login, token renewal, and the KV v2 calls the archive makes
//! (`<mount>/data/tenants/{slug}/{key}` and its metadata). Plain HTTP API through reqwest.
//!
//! The token is renewed (`auth/token/renew-self`) once two thirds of its TTL have passed and
//! replaced by a fresh login when renewal is refused or the token nears its max TTL. A
//! circuit breaker turns an OpenBao outage into an immediate "unavailable", so the archive
//! worker waits instead of piling up timeouts.
//!
//! By concern: this file holds the settings, the HTTP transport and the breaker; `auth` the
//! AppRole login and token renewal; `kv` the KV v2 calls; `wire` the stored entry shapes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use zeroize::Zeroizing;

use super::error::{error_words, ArchiveError};
use crate::breaker::{BreakerState, CircuitBreaker};
use crate::crypto::SecretValue;

mod auth;
mod kv;
mod wire;

use auth::Token;
pub use auth::TokenInfo;
pub use wire::ArchivedEntry;

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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
