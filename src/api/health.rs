//! `/healthz` (the process is alive) and `/readyz` (database reachable, master key loaded;
//! details for admin tokens only).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
struct Status {
    /// `ok`
    status: &'static str,
}

/// The process is alive.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    security(()),
    responses((status = 200, description = "Alive.", body = Status))
)]
async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    security(()),
    responses((status = 200, description = "The metrics.", content_type = "text/plain", body = String))
)]
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

/// `/readyz`'s answer; the details only for admin tokens.
#[derive(Serialize, ToSchema)]
struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// Admin tokens: `ok` or `unreachable`.
    #[serde(skip_serializing_if = "Option::is_none")]
    database: Option<&'static str>,
    /// Admin tokens: `ok` or `failing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    audit: Option<&'static str>,
    /// Admin tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    master_key_version: Option<i32>,
    /// Admin tokens: the Infisical breaker's state, or `not_configured`.
    #[serde(skip_serializing_if = "Option::is_none")]
    infisical_breaker: Option<&'static str>,
}

impl Readiness {
    fn only(ready: bool) -> Self {
        Self {
            status: if ready { "ready" } else { "not_ready" },
            database: None,
            audit: None,
            master_key_version: None,
            infisical_breaker: None,
        }
    }
}

/// Unauthenticated callers learn only ready or not; the details (which dependency, why, the
/// master key version) go to the log and to admin tokens, so a prober learns nothing about
/// the deployment.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Ready (details for admin tokens).", body = Readiness),
        (status = 503, description = "Not ready (details for admin tokens).", body = Readiness),
    )
)]
async fn readyz(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let not_ready = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness::only(false)),
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
            Json(Readiness::only(true)).into_response()
        } else {
            not_ready()
        };
    }
    let body = Readiness {
        database: Some(if check.database { "ok" } else { "unreachable" }),
        audit: Some(if check.audit { "ok" } else { "failing" }),
        master_key_version: Some(check.master_key_version),
        infisical_breaker: Some(
            check
                .infisical_breaker
                .map_or("not_configured", |b| b.as_str()),
        ),
        ..Readiness::only(ready)
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
