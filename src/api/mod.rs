//! The HTTP API: routes, and the layers every request passes through (request id, redacted
//! auth header, tracing by matched route, body limit, timeout). Handlers are thin: they
//! validate, call the service, and map its answer.

pub mod admin;
pub mod error;
pub mod extract;
pub mod health;
pub mod keys;
pub mod secrets;
pub mod versions;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{header, Request, StatusCode};
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::service::Vault;

#[derive(Clone)]
pub struct AppState {
    pub vault: Arc<Vault>,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The whole HTTP application.
pub fn router(vault: Arc<Vault>, settings: &HttpSettings) -> Router {
    // JSON can escape each byte of a value as `\u00XX` (6 bytes): leave room for that.
    let body_limit = vault.limits().max_value_bytes * 6 + 4096;
    let state = AppState { vault };
    let x_request_id = header::HeaderName::from_static("x-request-id");
    Router::new()
        .merge(secrets::router())
        .merge(admin::router())
        .merge(keys::router())
        .merge(versions::router())
        .merge(health::router())
        .fallback(|| async { error::ApiError::not_found() })
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            settings.request_timeout,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                // The matched route, not the raw URI: no ids of one tenant leak into metrics
                // keyed by span name, and odd paths cannot flood the logs.
                let route = req
                    .extensions()
                    .get::<MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "unmatched".into());
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), route, request_id)
            }),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
}
