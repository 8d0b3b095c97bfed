//! One request on the wire: retries with jittered backoff, `Retry-After`, the circuit
//! breaker, body size limits, and a re-login when the server refuses the access token.

use std::time::Duration;

use rand::Rng;
use reqwest::{Method, StatusCode, Url};
use zeroize::Zeroizing;

use super::error::{InfisicalError, Result};
use super::wire::ErrorBody;
use super::InfisicalClient;
use crate::breaker::CircuitBreaker;

/// One HTTP request, rebuilt for every attempt.
pub(super) struct Req {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) query: Vec<(&'static str, String)>,
    pub(super) body: Option<Zeroizing<Vec<u8>>>,
    pub(super) body_limit: usize,
}

/// A response that came back with a status (any status).
pub(super) struct Resp {
    pub(super) status: StatusCode,
    pub(super) body: Zeroizing<Vec<u8>>,
    /// Attempts made, the successful one included.
    pub(super) attempts: u32,
}

pub(super) enum AttemptError {
    Timeout,
    Transport(String),
    TooLarge(usize),
    /// Not worth retrying and not an outage (e.g. a redirect: the site URL is wrong).
    Fatal(InfisicalError),
}

/// Cancels a half-open probe if the caller's future is dropped mid-request.
pub(super) struct BreakerGuard<'a> {
    pub(super) breaker: &'a CircuitBreaker,
    pub(super) armed: bool,
}

impl Drop for BreakerGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.breaker.on_abandon();
        }
    }
}

impl InfisicalClient {
    /// Sends an authenticated request; on 401 or 403 `TokenError` logs in again once and
    /// repeats it.
    pub(super) async fn execute_authed(&self, req: Req) -> Result<Resp> {
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
    pub(super) async fn execute(&self, req: &Req, token: Option<&str>) -> Result<Resp> {
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
            let started = std::time::Instant::now();
            let outcome = self.attempt(req, token).await;
            guard.armed = false;
            metrics::histogram!("tenant_vault_infisical_request_duration_seconds")
                .record(started.elapsed().as_secs_f64());
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

    pub(super) async fn attempt(
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

    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let cfg = &self.inner.cfg;
        let exp = cfg
            .retry_base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(cfg.retry_max_delay);
        // "Equal jitter": half fixed, half random, so retries never collapse to zero delay.
        exp / 2 + jitter(exp / 2)
    }
}

pub(super) fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

pub(super) fn classify(e: reqwest::Error) -> AttemptError {
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

pub(super) fn parse_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}
