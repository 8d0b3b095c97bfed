//! `/healthz` (the process is alive) and `/readyz` (database reachable, master key loaded;
//! details for admin tokens only).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
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
        metrics::gauge!("tenant_vault_cache_bytes").set(vault.cache_bytes() as f64);
        metrics::gauge!("tenant_vault_audit_failing")
            .set(f64::from(u8::from(vault.audit().is_failing())));
        // The breaker publishes its changes; this covers a client made before the recorder.
        if let Some(archive) = vault.archive_client() {
            metrics::gauge!("tenant_vault_breaker_state", "dependency" => "archive")
                .set(archive.breaker_state().gauge());
        }
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

/// Unauthenticated callers learn only ready or not; the details (which dependency, why, the
/// master key version) go to the log and to admin tokens, so a prober learns nothing about
/// the deployment.
async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let not_ready = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        )
            .into_response()
    };
    let Ok(vault) = state.vault() else {
        return not_ready();
    };
    let check = vault.readiness(std::time::Duration::from_secs(2)).await;
    let ready = check.is_ready();
    if !ready {
        tracing::warn!(
            database = check.database,
            audit = check.audit,
            "readiness check failed"
        );
    }
    let is_admin = match super::extract::bearer(&headers) {
        Some(token) => vault
            .authenticate(token)
            .await
            .is_ok_and(|p| p.kind == crate::service::PrincipalKind::Admin),
        None => false,
    };
    if !is_admin {
        return if ready {
            Json(json!({"status": "ready"})).into_response()
        } else {
            not_ready()
        };
    }
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
