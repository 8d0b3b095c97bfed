//! `GET /v1/events`: server-sent events of the changes the caller's token may see (see
//! `service::events`). Mounted outside the request timeout: a stream is meant to stay open.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{Caller, RequestId};
use super::openapi::Refusals;
use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// Longest `Last-Event-ID` looked at; ours are far shorter, anything longer is unknown.
const MAX_EVENT_ID_LEN: usize = 64;

/// A stream of server-sent events: changes to the secrets the token may read (`secret`
/// events with tenant, key and version, never a value), `heartbeat` comments, and `reset`
/// when events were missed. Stays open.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "system",
    params(("Last-Event-ID" = Option<String>, Header, description = "Resume after this event.")),
    responses(
        (status = 200, description = "The stream.", content_type = "text/event-stream", body = String),
        Refusals,
    )
)]
async fn events(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let vault = state.vault()?;
    let last_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("unknown").trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            if v.len() > MAX_EVENT_ID_LEN {
                "unknown"
            } else {
                v
            }
        });
    let heartbeat = vault.events().settings().heartbeat;
    let stream = vault
        .subscribe_events(&who.context(rid), who.clone(), last_id)?
        .into_stream()
        .map(|e| {
            let mut out = Event::default().event(e.name).data(&e.data);
            if let Some(id) = &e.id {
                out = out.id(id);
            }
            Ok::<_, Infallible>(out)
        });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat"))
        .into_response();
    // Reverse proxies (nginx) would otherwise buffer the stream.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
