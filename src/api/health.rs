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
    let check = vault.readiness(std::time::Duration::from_secs(2)).await;
    let ready = check.is_ready();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": if check.database { "ok" } else { "unreachable" },
        "audit": if check.audit { "ok" } else { "failing" },
        "master_key_version": check.master_key_version,
        "infisical_breaker": check.infisical_breaker.map_or("not_configured", |b| b.as_str()),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
