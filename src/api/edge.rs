//! What every request passes through around its handler, in one middleware: a request id
//! (the caller's, else a fresh UUID, sent back on the answer), the `Authorization` header
//! marked sensitive, the request span, a panic turned into a 500; then, once routing has
//! matched, the access audit's slot, the rate limits, the time limit to the response head,
//! and the request metrics.
//!
//! One hand-written layer rather than tower-http's four plus a `from_fn`: each layer is a
//! future wrapped around the next and moved with it, and the request id, the span and the
//! panic guard are a few lines each here (docs/bench.md, eighth round).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::RouteTemplate;
use super::{access, error, limits, AppState};

/// The header a request's id travels in, both ways.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the middleware needs: the state (for the access audit and the rate limits), the time
/// limit, and which route templates are rate-limited.
#[derive(Clone)]
pub(super) struct Edge {
    pub(super) state: AppState,
    pub(super) request_timeout: Duration,
    /// The templates of `limited_routes` and `stream_routes` (what `MatchedPath` holds).
    pub(super) limited: Arc<std::collections::HashSet<String, foldhash::fast::RandomState>>,
}

/// The middleware (`axum::middleware::from_fn_with_state`). Requests no route matched (the
/// 404 fallback) get the id, the span and the panic guard, and nothing else.
pub(super) async fn edge(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .cloned()
        .map(RouteTemplate::Matched);
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    edge.serve(route, client, req, |req| next.run(req)).await
}

impl Edge {
    /// `req` through everything above, with `handler` answering it; `route` is the template
    /// routing matched (or the lane's own), None for the 404 fallback; `client` is the peer,
    /// when the server knows it.
    pub(super) async fn serve<H, F>(
        &self,
        route: Option<RouteTemplate>,
        client: Option<SocketAddr>,
        mut req: Request,
        handler: H,
    ) -> Response
    where
        H: FnOnce(Request) -> F,
        F: std::future::Future<Output = Response>,
    {
        let request_id = request_id(req.headers_mut());
        mark_sensitive(req.headers_mut());
        let span = request_span(req.method(), route.as_ref(), &request_id);
        // tokio's clock (the same as std's outside tests), so the time limit can be tested.
        let started = tokio::time::Instant::now();
        let mut response = match route {
            Some(route) => {
                self.routed(&span, started, route, client, req, handler)
                    .await
            }
            None => guarded(&span, started, None, std::pin::pin!(handler(req))).await,
        };
        // The span as the events' parent, not entered: one enter and exit fewer per request.
        let status = response.status().as_u16();
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        if response.status().is_server_error() {
            tracing::error!(parent: &span, status, latency_ms, "response failed");
        } else {
            tracing::debug!(parent: &span, status, latency_ms, "finished processing request");
        }
        response
            .headers_mut()
            .entry(X_REQUEST_ID)
            .or_insert(request_id);
        response
    }

    /// A request routed to `route`: the slot, the limits, the time limit, metrics.
    async fn routed<H, F>(
        &self,
        span: &tracing::Span,
        started: tokio::time::Instant,
        route: RouteTemplate,
        client: Option<SocketAddr>,
        mut req: Request,
        handler: H,
    ) -> Response
    where
        H: FnOnce(Request) -> F,
        F: std::future::Future<Output = Response>,
    {
        let limited = self.limited.contains(route.as_str());
        let slot = access::TokenSlot::routed(&route, req.uri());
        req.extensions_mut().insert(slot.clone());
        let method = req.method().clone();
        // Pinned where it is: the handler's future is large, and every move copies it.
        let work = std::pin::pin!(async {
            if limited {
                let ip = client.map(|c| c.ip());
                limits::enforce(&self.state, &slot, ip, req, handler).await
            } else {
                handler(req).await
            }
        });
        let response = guarded(span, started, Some(self.request_timeout), work).await;
        crate::telemetry::http_request(
            route.as_str(),
            &method,
            response.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
        access::count_refusal(&self.state, client, &slot, &response);
        response
    }
}

/// The caller's `x-request-id` if it sent one, else a fresh random UUID, set on the request
/// (handlers read it from there) and returned for the answer.
fn request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID) {
        return id.clone();
    }
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    let id = HeaderValue::from_str(text).expect("a UUID is a valid header value");
    headers.insert(X_REQUEST_ID, id.clone());
    id
}

/// Marks every `Authorization` value sensitive, so no `Debug` of the headers shows a token.
fn mark_sensitive(headers: &mut HeaderMap) {
    if let header::Entry::Occupied(mut values) = headers.entry(header::AUTHORIZATION) {
        for value in values.iter_mut() {
            value.set_sensitive(true);
        }
    }
}

/// The span every request's log lines carry: the matched route, not the raw URI (no ids of
/// one tenant leak into metrics keyed by span name, and odd paths cannot flood the logs).
fn request_span(
    method: &Method,
    route: Option<&RouteTemplate>,
    request_id: &HeaderValue,
) -> tracing::Span {
    // Text values: the plain-text log writes them bare when they are plain and quoted
    // otherwise (`telemetry::RequestSpanFields`), so a header cannot forge a log line.
    tracing::info_span!(
        crate::telemetry::REQUEST_SPAN,
        method = method.as_str(),
        route = route.map_or("unmatched", RouteTemplate::as_str),
        request_id = request_id.to_str().unwrap_or("-")
    )
}

/// The answer to a request whose handler panicked.
pub(super) fn panic_answer() -> Response {
    metrics::counter!("tenant_vault_handler_panics_total").increment(1);
    tracing::error!("a request handler panicked; answered 500");
    error::ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response()
}

/// Polls `work` inside `span` until it answers. A panic becomes a 500 in our error shape
/// (the connection stays up, and the panic's message, which could quote anything, stays out
/// of the answer and the log). With a `limit`, work still waiting when `limit` has passed
/// since `started` is ended with a 503 `request_timeout`; the timer is armed only if `work`
/// does not finish on its first poll, so a cached read never registers and cancels one.
/// One `poll_fn` rather than three wrapping futures, each of which would copy `work`.
pub(super) async fn guarded<F: std::future::Future<Output = Response>>(
    span: &tracing::Span,
    started: tokio::time::Instant,
    limit: Option<Duration>,
    mut work: std::pin::Pin<&mut F>,
) -> Response {
    use std::task::Poll;
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        let _entered = span.enter();
        match std::panic::catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Ready(res)) => return Poll::Ready(res),
            Ok(Poll::Pending) => {}
            Err(_panic) => return Poll::Ready(panic_answer()),
        }
        let Some(limit) = limit else {
            return Poll::Pending;
        };
        let timer =
            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(started + limit)));
        std::future::Future::poll(timer.as_mut(), cx).map(|()| timed_out(limit))
    })
    .await
}

fn timed_out(limit: Duration) -> Response {
    error::ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "request_timeout",
        format!(
            "the request did not finish within {} s; it may or may not have taken effect",
            limit.as_secs_f64()
        ),
    )
    .into_response()
}
