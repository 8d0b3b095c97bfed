//! The HTTP API: routes, and the layers every request passes through (request id, redacted
//! auth header, tracing by matched route, panic to 500; then, once routed, `edge`: access
//! audit, time limit to the response head, metrics; the body limit and the rate limits).
//! Handlers are thin: they validate, call the service, and map its answer.

pub mod access;
pub mod admin;
pub mod admin_secrets;
pub mod audit;
pub mod batch;
pub mod console;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod hooks;
pub mod keys;
pub mod limits;
pub mod openapi;
pub mod secrets;
pub mod tokens;
pub mod versions;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{header, Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

use crate::service::Vault;

/// The handlers' state. The server starts answering (`/healthz`, `/readyz`) before the
/// vault exists, while the master key is still being fetched; until then every route answers
/// 503 "not ready" (the reason goes to the log).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<StateInner>,
}

struct StateInner {
    vault: OnceLock<Arc<Vault>>,
    starting: RwLock<String>,
}

impl AppState {
    pub fn ready(vault: Arc<Vault>) -> Self {
        let state = Self::starting("starting");
        state.set_vault(vault);
        state
    }

    pub fn starting(why: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(StateInner {
                vault: OnceLock::new(),
                starting: RwLock::new(why.into()),
            }),
        }
    }

    pub fn set_vault(&self, vault: Arc<Vault>) {
        let _ = self.inner.vault.set(vault);
    }

    pub fn set_starting(&self, why: impl Into<String>) {
        *self.inner.starting.write().unwrap() = why.into();
    }

    /// Why the vault is not serving yet.
    pub fn starting_reason(&self) -> String {
        self.inner.starting.read().unwrap().clone()
    }

    /// The vault, or 503 while it is still starting.
    pub fn vault(&self) -> Result<&Arc<Vault>, error::ApiError> {
        // The reason is in the log (and `starting_reason`), not in answers to strangers.
        self.inner.vault.get().ok_or_else(|| {
            error::ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "tenant-vault is not ready yet; try again shortly",
            )
        })
    }
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: Duration,
    /// The accept loop's bounds (header and idle timeouts, connection cap).
    pub edge: crate::server::EdgeSettings,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            edge: Default::default(),
        }
    }
}

impl HttpSettings {
    pub fn from_args(args: &crate::config::HttpArgs) -> Self {
        Self {
            request_timeout: Duration::from_secs(args.request_timeout_secs),
            edge: crate::server::EdgeSettings {
                header_timeout: Duration::from_secs(args.http_header_timeout_secs),
                idle_timeout: Duration::from_secs(args.http_idle_timeout_secs),
                max_connections: args.http_max_connections as usize,
            },
        }
    }
}

/// What the per-request layer needs: the state (for the access audit and the rate limits),
/// the time limit, and which route templates are rate-limited.
#[derive(Clone)]
struct Edge {
    state: AppState,
    request_timeout: Duration,
    /// The templates of `limited_routes` and `stream_routes` (what `MatchedPath` holds).
    limited: Arc<std::collections::HashSet<String, foldhash::fast::RandomState>>,
}

/// Every routed request, once routing has matched, in one middleware (each `from_fn` layer,
/// and each `route_layer` call, costs a boxed future and a cloned service per request, so
/// these are not five):
/// - the access audit's slot, and counting the answer if it is a 401, 403 or 429;
/// - the time limit to the response head (not its body: streams go on), answered 503
///   `request_timeout` in the API's JSON error shape;
/// - the rate limits, on the routes that authenticate their caller (`limits::enforce`);
/// - the request metrics, by route template, method and status.
///
/// Requests no route matched (the 404 fallback) pass straight through.
async fn edge(
    axum::extract::State(edge): axum::extract::State<Edge>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Reference-counted and cheap to clone: no label strings are built per request.
    let Some(route) = req.extensions().get::<MatchedPath>().cloned() else {
        return next.run(req).await;
    };
    let limited = edge.limited.contains(route.as_str());
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let slot = access::TokenSlot::routed(Some(&route), req.uri());
    req.extensions_mut().insert(slot.clone());
    let method = req.method().clone();
    // tokio's clock (the same as std's outside tests), so the time limit can be tested.
    let started = tokio::time::Instant::now();
    let inner = async {
        if limited {
            limits::enforce(&edge.state, &slot, req, next).await
        } else {
            next.run(req).await
        }
    };
    let response = match within(started, edge.request_timeout, inner).await {
        Some(res) => res,
        None => error::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!(
                "the request did not finish within {} s; it may or may not have taken effect",
                edge.request_timeout.as_secs_f64()
            ),
        )
        .into_response(),
    };
    crate::telemetry::http_request(
        route.as_str(),
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    access::count_refusal(&edge.state, client, &slot, &response);
    response
}

/// `work`'s output, or None once `limit` has passed since `started`. The timer is armed
/// only if `work` does not finish on its first poll: a cached read never waits, so it never
/// pays for registering and cancelling a timer (`tokio::time::timeout` arms one per call).
async fn within<F: std::future::Future>(
    started: tokio::time::Instant,
    limit: Duration,
    work: F,
) -> Option<F::Output> {
    use std::task::Poll;
    let mut work = std::pin::pin!(work);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        let timer =
            timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(started + limit)));
        std::future::Future::poll(timer.as_mut(), cx).map(|()| None)
    })
    .await
}

/// A panic in a handler becomes a 500 in our error shape (the connection stays up and the
/// panic's message, which could quote anything, stays out of the answer and the log).
pub fn harden(router: Router) -> Router {
    router.layer(catch_panic())
}

fn catch_panic() -> tower_http::catch_panic::CatchPanicLayer<
    impl Fn(Box<dyn std::any::Any + Send>) -> axum::response::Response + Clone,
> {
    tower_http::catch_panic::CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
        metrics::counter!("tenant_vault_handler_panics_total").increment(1);
        tracing::error!("a request handler panicked; answered 500");
        axum::response::IntoResponse::into_response(error::ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        ))
    })
}

/// Routes behind the rate limits: every one authenticates its caller.
fn limited_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(secrets::router())
        .merge(batch::router())
        .merge(admin::router())
        .merge(audit::router())
        .merge(admin_secrets::router())
        .merge(keys::router())
        .merge(versions::router())
        .merge(tokens::router())
}

/// Probes, the webhook (signed, no token) and the OpenAPI document.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(hooks::router())
        .routes(utoipa_axum::routes!(openapi::openapi_json))
}

/// Event streams, which stay open (no request timeout on their bodies).
fn stream_routes() -> OpenApiRouter<AppState> {
    events::router()
}

/// The route templates the rate limits apply to (`limited_routes` and the streams), as
/// routing reports them in `MatchedPath` (a test holds the two equal).
fn limited_templates() -> std::collections::HashSet<String, foldhash::fast::RandomState> {
    limited_routes()
        .merge(stream_routes())
        .get_openapi()
        .paths
        .paths
        .keys()
        .cloned()
        .collect()
}

/// Every documented route, for the OpenAPI document (`openapi::json`). The admin console's
/// static files are the only routes served without being here.
pub fn routes() -> OpenApiRouter<AppState> {
    limited_routes()
        .merge(public_routes())
        .merge(stream_routes())
}

/// The whole HTTP application around a ready vault.
pub fn router(vault: Arc<Vault>, settings: &HttpSettings) -> Router {
    let max_value_bytes = vault.limits().max_value_bytes;
    router_with_state(AppState::ready(vault), settings, max_value_bytes)
}

/// The whole HTTP application; the vault may arrive later (see `AppState`).
pub fn router_with_state(
    state: AppState,
    settings: &HttpSettings,
    max_value_bytes: usize,
) -> Router {
    // JSON can escape each byte of a value as `\u00XX` (6 bytes): leave room for that.
    let body_limit = max_value_bytes * 6 + 4096;
    crate::telemetry::prometheus(); // record from the first request on
    let x_request_id = header::HeaderName::from_static("x-request-id");
    // Each `layer`/`route_layer` call on a router boxes every route's service and future
    // once more (axum's `Route`), and each `from_fn` boxes again per request: so one
    // `ServiceBuilder` for the whole router, and one middleware (`edge`) for our per-request
    // work, the rate limits included. A layer added with `layer` runs once routing has
    // matched (the route template is known), and on the 404 fallback, which `edge` passes
    // through. In a `ServiceBuilder` the first layer is the outermost.
    let edge = axum::middleware::from_fn_with_state(
        Edge {
            state: state.clone(),
            request_timeout: settings.request_timeout,
            limited: Arc::new(limited_templates()),
        },
        edge,
    );
    // Probes stay outside the rate limits (`edge` limits only `limited_routes` and the
    // streams): a stray or stale token on `/healthz` must not turn a health check into a 401
    // or a 429. The console's static files are served as they are: the page itself asks
    // for a token. Streams stay open by design: the edge's time limit bounds only the time
    // to the response head (authentication may wait on the database), never the body.
    Router::from(routes())
        .merge(console::router())
        .fallback(|| async { error::ApiError::not_found() })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(
                    x_request_id.clone(),
                    MakeRequestUuid,
                ))
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                ]))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(catch_panic())
                .layer(edge)
                .layer(DefaultBodyLimit::max(body_limit)),
        )
}

/// The span every request's log lines carry: the matched route, not the raw URI (no ids of
/// one tenant leak into metrics keyed by span name, and odd paths cannot flood the logs).
fn request_span<B>(req: &Request<B>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    // Text values: the plain-text log writes them bare when they are plain and quoted
    // otherwise (`telemetry::RequestSpanFields`), so a header cannot forge a log line.
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        crate::telemetry::REQUEST_SPAN,
        method = req.method().as_str(),
        route = route,
        request_id = request_id
    )
}

#[cfg(test)]
mod tests {
    use super::within;
    use std::time::Duration;
    use tokio::time::Instant;

    /// The rate limits find a route by the template routing matched: every limited route's
    /// template must be the one `MatchedPath` reports for it, or its requests would pass
    /// unlimited.
    #[tokio::test]
    async fn every_limited_route_is_known_by_the_template_routing_matches() {
        use axum::body::Body;
        use axum::extract::{MatchedPath, Request};
        use tower::ServiceExt;
        let templates = super::limited_templates();
        let router = axum::Router::from(super::limited_routes().merge(super::stream_routes()))
            .with_state(super::AppState::starting("test"))
            .layer(axum::middleware::from_fn(
                |req: Request, next: axum::middleware::Next| async move {
                    let matched = req.extensions().get::<MatchedPath>().cloned();
                    let mut res = next.run(req).await;
                    if let Some(matched) = matched {
                        res.headers_mut()
                            .insert("x-matched", matched.as_str().parse().unwrap());
                    }
                    res
                },
            ));
        for template in &templates {
            // `{tenant}` becomes `tenant`, a valid value of every parameter.
            let path = template.replace(['{', '}'], "");
            let req = Request::get(&path).body(Body::empty()).unwrap();
            let res = router.clone().oneshot(req).await.unwrap();
            assert_eq!(
                res.headers().get("x-matched").map(|v| v.to_str().unwrap()),
                Some(template.as_str()),
                "{path}"
            );
        }
        assert!(templates.contains("/v1/tenants/{tenant}/secrets/{key}"));
        assert!(templates.contains("/v1/admin/audit"));
        assert!(!templates.contains("/healthz"));
    }

    #[tokio::test]
    async fn the_time_limit_passes_finished_work_and_ends_work_that_waits_too_long() {
        let limit = Duration::from_millis(200);
        // Finished on its first poll: answered, whatever the limit.
        assert_eq!(
            within(Instant::now(), Duration::ZERO, async { 7 }).await,
            Some(7)
        );
        // Waits, then finishes in time.
        let in_time = async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            "done"
        };
        assert_eq!(within(Instant::now(), limit, in_time).await, Some("done"));
        // Waits past the limit: ended at the limit, not awaited to its end (an hour).
        let too_long = tokio::time::sleep(Duration::from_secs(3600));
        let started = Instant::now();
        assert_eq!(within(started, limit, too_long).await, None);
        let took = started.elapsed();
        assert!(took >= limit && took < Duration::from_secs(600), "{took:?}");
    }
}
