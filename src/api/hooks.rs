//! `POST /v1/hooks/infisical`: Infisical's webhook. No bearer token: the
//! `x-infisical-signature` HMAC over the raw body authenticates it. Answers 202 at once; the
//! folder re-read runs in the background (`service::sync`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::RequestId;
use super::openapi::{NotFoundErrors, NotReady};
use super::AppState;
use crate::infisical::webhook::SIGNATURE_HEADER;
use crate::service::sync::WebhookOutcome;
use crate::service::RequestContext;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(infisical))
}

#[derive(Serialize, ToSchema)]
struct HookAnswer<'a> {
    /// Whether a re-read of the tenant's folder was queued.
    queued: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    /// Why nothing was queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    ignored: Option<&'a str>,
}

/// Infisical's webhook, authenticated by the `x-infisical-signature` HMAC over the raw body
/// (no bearer token).
#[utoipa::path(
    post,
    path = "/v1/hooks/infisical",
    tag = "system",
    security(()),
    params(("x-infisical-signature" = Option<String>, Header, description = "`t=<unix time>;<hex HMAC-SHA256>`.")),
    request_body(content = String, description = "Infisical's event, as sent.", content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted (queued or ignored).", body = HookAnswer),
        (status = 401, description = "Missing or bad signature (`invalid_signature`).", body = super::openapi::ErrorBody),
        NotFoundErrors, NotReady,
    )
)]
async fn infisical(
    State(state): State<AppState>,
    RequestId(rid): RequestId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let signature = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let ctx = RequestContext {
        token_id: None,
        request_id: rid,
        actor: Some("infisical:webhook".into()),
    };
    let outcome = state
        .vault()?
        .receive_infisical_webhook(&ctx, signature, &body)?;
    let body = match &outcome {
        WebhookOutcome::Queued(slug) => HookAnswer {
            queued: true,
            tenant: Some(slug.as_str()),
            ignored: None,
        },
        WebhookOutcome::Ignored(why) => HookAnswer {
            queued: false,
            tenant: None,
            ignored: Some(why),
        },
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
