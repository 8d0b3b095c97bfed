//! `POST /v1/hooks/infisical`: Infisical's webhook. No bearer token: the
//! `x-infisical-signature` HMAC over the raw body authenticates it. Answers 202 at once; the
//! folder re-read runs in the background (`service::sync`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use super::extract::RequestId;
use super::AppState;
use crate::infisical::webhook::SIGNATURE_HEADER;
use crate::service::sync::WebhookOutcome;
use crate::service::RequestContext;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/hooks/infisical", post(infisical))
}

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
    };
    let outcome = state
        .vault()?
        .receive_infisical_webhook(&ctx, signature, &body)?;
    let body = match outcome {
        WebhookOutcome::Queued(slug) => json!({"queued": true, "tenant": slug.as_str()}),
        WebhookOutcome::Ignored(why) => json!({"queued": false, "ignored": why}),
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
