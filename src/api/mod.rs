//! The HTTP API: routes, and what every request passes through (`edge`: request id, redacted
//! auth header, the request span, panic to 500; once routed, the access audit, the rate
//! limits, the time limit to the response head and metrics; then the body limit).
//! Handlers are thin: they validate, call the service, and map its answer.

pub mod access;
pub mod admin;
pub mod admin_secrets;
pub mod audit;
pub mod batch;
pub mod console;
mod edge;
pub mod error;
pub mod events;
pub mod extract;
pub mod health;
pub mod hooks;
pub mod keys;
mod lane;
pub mod limits;
pub mod openapi;
pub mod secrets;
pub mod tokens;
pub mod versions;

pub use edge::X_REQUEST_ID;
pub use lane::App;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use tower::ServiceBuilder;
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

/// A panic in a handler becomes a 500 in our error shape: `edge`'s guard alone, for a
/// router built without the rest of the edge.
pub fn harden(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(
        |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let work = std::pin::pin!(next.run(req));
            edge::guarded(
                &tracing::Span::none(),
                tokio::time::Instant::now(),
                None,
                work,
            )
            .await
        },
    ))
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
pub fn router(vault: Arc<Vault>, settings: &HttpSettings) -> App {
    let max_value_bytes = vault.limits().max_value_bytes;
    router_with_state(AppState::ready(vault), settings, max_value_bytes)
}

/// The whole HTTP application; the vault may arrive later (see `AppState`).
pub fn router_with_state(state: AppState, settings: &HttpSettings, max_value_bytes: usize) -> App {
    // JSON can escape each byte of a value as `\u00XX` (6 bytes): leave room for that.
    let body_limit = max_value_bytes * 6 + 4096;
    crate::telemetry::prometheus(); // record from the first request on
                                    // Each `layer`/`route_layer` call on a router boxes every route's service and future
                                    // once more (axum's `Route`), and each `from_fn` boxes again per request: so one
                                    // `ServiceBuilder` for the whole router, and one middleware (`edge`) for our per-request
                                    // work. A layer added with `layer` runs once routing has matched (the route template is
                                    // known), and on the 404 fallback. In a `ServiceBuilder` the first layer is the outermost.
    let edge = edge::Edge {
        state: state.clone(),
        request_timeout: settings.request_timeout,
        limited: Arc::new(limited_templates()),
    };
    // Probes stay outside the rate limits (`edge` limits only `limited_routes` and the
    // streams): a stray or stale token on `/healthz` must not turn a health check into a 401
    // or a 429. The console's static files are served as they are: the page itself asks
    // for a token. Streams stay open by design: the edge's time limit bounds only the time
    // to the response head (authentication may wait on the database), never the body.
    let router = Router::from(routes())
        .merge(console::router())
        .fallback(|| async { error::ApiError::not_found() })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    edge.clone(),
                    edge::edge,
                ))
                .layer(DefaultBodyLimit::max(body_limit)),
        );
    App::new(router, edge)
}

#[cfg(test)]
mod tests {
    use super::edge::guarded;
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
        assert!(templates.contains(super::lane::SECRET_READ));
        assert!(templates.contains("/v1/admin/audit"));
        assert!(!templates.contains("/healthz"));
    }

    #[tokio::test]
    async fn the_guard_passes_answers_ends_work_that_waits_too_long_and_catches_panics() {
        use axum::http::StatusCode;
        use axum::response::{IntoResponse, Response};
        use std::pin::pin;
        let span = tracing::Span::none();
        let limit = Duration::from_millis(200);
        let status = |res: Response| res.status();
        // Finished on its first poll: answered, whatever the limit.
        let ready = pin!(async { StatusCode::ACCEPTED.into_response() });
        let res = guarded(&span, Instant::now(), Some(Duration::ZERO), ready).await;
        assert_eq!(status(res), StatusCode::ACCEPTED);
        // Waits, then finishes in time.
        let in_time = pin!(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            StatusCode::CREATED.into_response()
        });
        let res = guarded(&span, Instant::now(), Some(limit), in_time).await;
        assert_eq!(status(res), StatusCode::CREATED);
        // Waits past the limit: ended at the limit, not awaited to its end (an hour).
        let too_long = pin!(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::OK.into_response()
        });
        let started = Instant::now();
        let res = guarded(&span, started, Some(limit), too_long).await;
        let took = started.elapsed();
        assert_eq!(status(res), StatusCode::SERVICE_UNAVAILABLE);
        assert!(took >= limit && took < Duration::from_secs(600), "{took:?}");
        // No limit: the wait is not cut short.
        let unlimited = pin!(async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            StatusCode::OK.into_response()
        });
        let res = guarded(&span, Instant::now(), None, unlimited).await;
        assert_eq!(status(res), StatusCode::OK);
        // A panic, on the first poll or after a wait, is a 500 in the error shape.
        for wait in [false, true] {
            let panics = pin!(async move {
                if wait {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if true {
                    panic!("the handler fell over with sk_live_not_a_real_secret");
                }
                StatusCode::OK.into_response()
            });
            let res = guarded(&span, Instant::now(), Some(limit), panics).await;
            assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body = axum::body::to_bytes(res.into_body(), 4096).await.unwrap();
            let text = String::from_utf8_lossy(&body);
            assert!(
                text.contains("\"internal\"") && !text.contains("sk_live"),
                "{text}"
            );
        }
    }

    /// The edge's request id: the caller's is kept and sent back, a missing one is a fresh
    /// UUID; a 5xx answer is logged once, in the request span (route template and id).
    #[test]
    fn every_answer_carries_its_request_id_and_a_5xx_is_logged_in_its_span() {
        use axum::body::Body;
        use axum::extract::Request;
        use axum::http::StatusCode;
        use std::sync::{Arc, Mutex};
        use tower::ServiceExt;
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let log = Lines::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let router = super::router_with_state(
            super::AppState::starting("test"),
            &super::HttpSettings::default(),
            1024,
        );
        let call = |id: Option<&str>| {
            let mut req = Request::get("/v1/tenants/acme/secrets/stripe");
            if let Some(id) = id {
                req = req.header("x-request-id", id);
            }
            let req = req
                .header("authorization", "Bearer tv_t_sk_live_not_a_real_token")
                .body(Body::empty())
                .unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(router.clone().oneshot(req)).unwrap()
        };
        let (kept, fresh) =
            tracing::subscriber::with_default(subscriber, || (call(Some("req-7f3a")), call(None)));
        // Not ready yet: a 503, with the id the caller sent.
        assert_eq!(kept.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(kept.headers()["x-request-id"], "req-7f3a");
        let fresh = fresh.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(uuid::Uuid::parse_str(&fresh).unwrap().get_version_num(), 4);
        let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let failed: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("response failed"))
            .collect();
        assert_eq!(failed.len(), 2, "{text}");
        for (line, id) in failed.iter().zip(["req-7f3a", fresh.as_str()]) {
            assert!(line.contains(id), "{line}");
            assert!(
                line.contains("/v1/tenants/{tenant}/secrets/{key}"),
                "{line}"
            );
            assert!(line.contains("status=503"), "{line}");
        }
        assert!(!text.contains("sk_live"), "{text}");
    }
}
