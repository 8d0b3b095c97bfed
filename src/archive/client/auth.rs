//! AppRole login and token renewal: the token is renewed once two thirds of its TTL have
//! passed and replaced by a fresh login when renewal is refused or the max TTL nears.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{ArchiveClient, Resp, Result};
use crate::archive::error::{error_words, ArchiveError};
use crate::crypto::SecretValue;

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

pub(super) struct Token {
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

impl ArchiveClient {
    pub(super) async fn login(&self) -> Result<Token> {
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
    pub(super) async fn renew(&self, token: &Token) -> Result<Token> {
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
    pub(super) async fn token(&self) -> Result<SecretValue> {
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
    pub(super) async fn authed(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
    ) -> Result<Resp> {
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
}
