//! The rate-limit layer: authenticates the caller once (guarded per client address, see
//! `service::limits`), takes the request from its token's and tenant's buckets, and answers
//! 429 `rate_limited` with `Retry-After`, or passes the request on. Either way the answer
//! carries `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
//! Requests without a bearer token pass untouched: their handler answers 401 or serves a
//! public route.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, RawPathParams, Request, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::domain::TenantSlug;
use crate::service::limits::PolicyState;
use crate::service::{Principal, ServiceError};

/// The caller, authenticated by this layer (the `Caller` extractor takes it from here).
#[derive(Clone)]
pub struct Authenticated(pub Arc<Principal>);

pub async fn enforce(
    State(state): State<AppState>,
    path: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let Ok(vault) = state.vault() else {
        return next.run(req).await;
    };
    let Some(token) = super::extract::bearer(req.headers()) else {
        return next.run(req).await;
    };
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let who = match vault.authenticate_from(client, token).await {
        Ok(who) => who,
        Err(err) => return refusal(err),
    };
    // An invalid slug is the handler's 400 to give; it is not a tenant to count against.
    let tenant = path.as_ref().ok().and_then(|p| {
        p.iter()
            .find(|(name, _)| *name == "tenant")
            .and_then(|(_, raw)| TenantSlug::parse(raw).ok())
    });
    match vault.check_rate(&who, tenant.as_ref()).await {
        Ok(policies) => {
            req.extensions_mut().insert(Authenticated(who));
            let mut res = next.run(req).await;
            set_headers(res.headers_mut(), &policies);
            res
        }
        Err(err) => refusal(err),
    }
}

fn refusal(err: ServiceError) -> Response {
    let throttled = match &err {
        ServiceError::RateLimited(t) => Some(t.clone()),
        _ => None,
    };
    let mut res = ApiError::from(err).into_response();
    if let Some(t) = throttled {
        let headers = res.headers_mut();
        headers.insert("retry-after", HeaderValue::from(t.retry_after_secs));
        set_headers(headers, &t.policies);
    }
    res
}

/// `RateLimit-Policy: "token";q=200;w=2, "tenant";q=1000;w=2` and
/// `RateLimit: "token";r=150;t=1, "tenant";r=990;t=1`.
fn set_headers(headers: &mut HeaderMap, policies: &[PolicyState]) {
    if policies.is_empty() {
        return;
    }
    let join =
        |f: &dyn Fn(&PolicyState) -> String| policies.iter().map(f).collect::<Vec<_>>().join(", ");
    let policy = join(&|p| format!("\"{}\";q={};w={}", p.name, p.quota, p.window_secs));
    let state = join(&|p| format!("\"{}\";r={};t={}", p.name, p.remaining, p.reset_secs));
    if let (Ok(policy), Ok(state)) = (
        HeaderValue::from_str(&policy),
        HeaderValue::from_str(&state),
    ) {
        headers.insert("ratelimit-policy", policy);
        headers.insert("ratelimit", state);
    }
}
