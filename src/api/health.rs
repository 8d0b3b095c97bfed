//! `/healthz` (the process is alive) and `/readyz` (database reachable, master key loaded).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// Prometheus text format.
async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(vault) = state.vault() {
        metrics::gauge!("tenant_vault_cache_entries").set(vault.cache_entries() as f64);
        metrics::gauge!("tenant_vault_audit_failing")
            .set(f64::from(u8::from(vault.audit().is_failing())));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::prometheus().render(),
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let Ok(vault) = state.vault() else {
        let body = json!({
            "status": "not_ready",
            "reason": state.starting_reason(),
            "master_key_version": null,
        });
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    let db = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        crate::store::ping(vault.pool()),
    )
    .await;
    let database_ok = matches!(db, Ok(Ok(())));
    let audit_ok = !vault.audit().is_failing();
    let master = vault.masters().active_version();
    let ready = database_ok && audit_ok && master > 0;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if database_ok { "ok" } else { "unreachable" },
        "audit": if audit_ok { "ok" } else { "failing" },
        "master_key_version": master,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
