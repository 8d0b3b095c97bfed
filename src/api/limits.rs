//! The rate-limit layer: authenticates the caller once (guarded per client address, see
//! `service::limits`), takes the request from its token's and tenant's buckets, and answers
//! 429 `rate_limited` with `Retry-After`, or passes the request on. Either way the answer
//! carries `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
//! Requests without a bearer token pass untouched: their handler answers 401 or serves a
//! public route.

use std::net::IpAddr;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;
use crate::service::limits::PolicyState;
use crate::service::ServiceError;

/// Called by `api::edge` for the routes that authenticate their caller, before `handler`;
/// the caller goes into the request's `slot`, where the `Caller` extractor takes it from.
pub(super) async fn enforce<H, F>(
    state: &AppState,
    slot: &super::access::TokenSlot,
    client: Option<IpAddr>,
    req: Request,
    handler: H,
) -> Response
where
    H: FnOnce(Request) -> F,
    F: std::future::Future<Output = Response>,
{
    let Ok(vault) = state.vault() else {
        return handler(req).await;
    };
    let Some(token) = super::extract::bearer(req.headers()) else {
        return handler(req).await;
    };
    let who = match vault.authenticate_from(client, token).await {
        Ok(who) => who,
        Err(err) => return refusal(err),
    };
    // The tenant in the path (the segment where the route has `{tenant}`), read once the
    // caller is known. An invalid slug is the handler's 400 to give, not a tenant to count.
    let tenant = slot.tenant();
    match vault.check_rate(&who, tenant.as_deref()).await {
        Ok(policies) => {
            slot.authenticated(who);
            let mut res = handler(req).await;
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
/// `RateLimit: "token";r=150;t=1, "tenant";r=990;t=1`. Written on every limited answer, so
/// built by hand rather than through `format!` (which cost more than the buckets).
fn set_headers(headers: &mut HeaderMap, policies: &[PolicyState]) {
    if policies.is_empty() {
        return;
    }
    let mut policy = Vec::with_capacity(32 * policies.len());
    let mut state = Vec::with_capacity(32 * policies.len());
    let mut number = itoa::Buffer::new();
    for (i, p) in policies.iter().enumerate() {
        if i > 0 {
            policy.extend_from_slice(b", ");
            state.extend_from_slice(b", ");
        }
        let quota = (b'q', u64::from(p.quota), b'w', p.window_secs);
        header_item(&mut policy, &mut number, p.name, quota);
        let remaining = (b'r', u64::from(p.remaining), b't', p.reset_secs);
        header_item(&mut state, &mut number, p.name, remaining);
    }
    if let (Ok(policy), Ok(state)) = (
        HeaderValue::from_maybe_shared(bytes::Bytes::from(policy)),
        HeaderValue::from_maybe_shared(bytes::Bytes::from(state)),
    ) {
        headers.insert("ratelimit-policy", policy);
        headers.insert("ratelimit", state);
    }
}

/// One policy's item: `"name";a=1;b=2`.
fn header_item(
    out: &mut Vec<u8>,
    number: &mut itoa::Buffer,
    name: &str,
    (a, x, b, y): (u8, u64, u8, u64),
) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\";");
    for (i, (param, value)) in [(a, x), (b, y)].into_iter().enumerate() {
        if i > 0 {
            out.push(b';');
        }
        out.push(param);
        out.push(b'=');
        out.extend_from_slice(number.format(value).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_every_policy_in_order() {
        let policies = [
            PolicyState {
                name: "token",
                quota: 200,
                window_secs: 2,
                remaining: 150,
                reset_secs: 1,
            },
            PolicyState {
                name: "tenant",
                quota: 1000,
                window_secs: 2,
                remaining: 990,
                reset_secs: 0,
            },
        ];
        let mut headers = HeaderMap::new();
        set_headers(&mut headers, &policies);
        assert_eq!(
            headers["ratelimit-policy"],
            "\"token\";q=200;w=2, \"tenant\";q=1000;w=2"
        );
        assert_eq!(
            headers["ratelimit"],
            "\"token\";r=150;t=1, \"tenant\";r=990;t=0"
        );
        let mut none = HeaderMap::new();
        set_headers(&mut none, &[]);
        assert!(none.is_empty());
    }
}
