//! Universal Auth: login, token renewal, and the rules for when renewing is safe.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use zeroize::Zeroizing;

use super::error::{InfisicalError, Result};
use super::transport::Req;
use super::wire::{parse_json, status_error, zeroize_json, ErrorBody, TokenResponse};
use super::InfisicalClient;

/// The token we hold. `issued` is when the token was first obtained by login: renewals keep
/// the same server-side token, and its max TTL counts from there.
pub(super) struct TokenState {
    pub(super) token: Zeroizing<String>,
    pub(super) issued: Instant,
    pub(super) obtained: Instant,
    pub(super) ttl: Duration,
    pub(super) max_ttl: Duration,
}

impl TokenState {
    pub(super) fn expired(&self, now: Instant) -> bool {
        !self.ttl.is_zero() && now >= self.obtained + self.ttl
    }

    /// Refresh once 80% of the TTL has passed (at most 60 s before expiry for long TTLs).
    pub(super) fn needs_refresh(&self, now: Instant) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let margin = (self.ttl / 5).min(Duration::from_secs(60));
        now + margin >= self.obtained + self.ttl
    }

    /// Renewing is only safe while TTL < max TTL and now + TTL stays within the max TTL:
    /// past it the server deletes the token.
    pub(super) fn can_renew(&self, now: Instant) -> bool {
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

impl InfisicalClient {
    /// The current access token, logging in or renewing first when needed. Holding the lock
    /// across the login means concurrent callers make one login, not many.
    pub(super) async fn access_token(&self) -> Result<Zeroizing<String>> {
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
    pub(super) async fn invalidate_token(&self, used: &str) {
        let mut guard = self.inner.token.lock().await;
        if guard.as_ref().is_some_and(|s| s.token.as_str() == used) {
            *guard = None;
        }
    }

    /// A POST to an auth endpoint: its JSON holds a credential, so it becomes zeroizing bytes
    /// and the `Value` is wiped.
    fn auth_request(&self, path: &[&str], body: serde_json::Value) -> Req {
        let bytes = Zeroizing::new(body.to_string().into_bytes());
        zeroize_json(body);
        Req {
            method: Method::POST,
            url: self.url(path),
            query: Vec::new(),
            body: Some(bytes),
            body_limit: 64 * 1024,
        }
    }

    pub(super) async fn do_login(&self) -> Result<TokenState> {
        let cfg = &self.inner.cfg;
        let body = json!({
            "clientId": cfg.client_id,
            "clientSecret": cfg.client_secret.as_str(),
        });
        let req = self.auth_request(&["api", "v1", "auth", "universal-auth", "login"], body);
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

    pub(super) async fn do_renew(&self, state: &TokenState) -> Result<TokenState> {
        let body = json!({ "accessToken": state.token.as_str() });
        let req = self.auth_request(&["api", "v1", "auth", "token", "renew"], body);
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
