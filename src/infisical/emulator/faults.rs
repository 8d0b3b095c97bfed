//! Fault switches (latency, 5xx, 429, outage, malformed JSON) and the middleware that
//! applies them, together with rate limits and ETags.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::EmulatorError;
use super::error::{error_body, ApiError, AuthRejected};
use super::state::{lock, Shared};

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
    pub(super) fn apply(self, f: &mut Faults) -> Result<(), EmulatorError> {
        if let Some(r) = self.error_rate {
            if !(0.0..=1.0).contains(&r) {
                return Err(EmulatorError::ErrorRateOutOfRange);
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

pub(super) async fn api_layer(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
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
pub(super) fn injected_fault(s: &Shared, faults: &Faults) -> Option<Response> {
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

pub(super) fn too_many(limit: u32, reset_secs: u64) -> Response {
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
pub(super) async fn with_etag(resp: Response, if_none_match: Option<HeaderValue>) -> Response {
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
