//! The control plane (`/_emulator/*`): faults, seed, stats and token expiry. No auth; bind
//! the emulator to loopback.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::error_body;
use super::faults::FaultsPatch;
use super::seed::Seed;
use super::state::{lock, Shared};
use super::Emulator;

pub(super) async fn get_faults_handler(State(s): State<Arc<Shared>>) -> Response {
    Json(lock(&s.faults).clone()).into_response()
}

pub(super) async fn put_faults_handler(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let patch: FaultsPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => {
            return error_body(
                StatusCode::BAD_REQUEST,
                Value::String(format!("invalid faults: {e}")),
                "BadRequest",
            )
        }
    };
    let mut f = lock(&s.faults);
    let mut next = f.clone();
    if let Err(e) = patch.apply(&mut next) {
        return error_body(
            StatusCode::BAD_REQUEST,
            Value::String(e.to_string()),
            "BadRequest",
        );
    }
    *f = next.clone();
    tracing::info!(faults = ?next, "emulator faults changed");
    Json(next).into_response()
}

pub(super) async fn seed_handler(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    let seed: Seed = match serde_json::from_slice(&body) {
        Ok(seed) => seed,
        Err(e) => {
            // serde's message may quote a value; report only where it failed.
            return error_body(
                StatusCode::BAD_REQUEST,
                Value::String(format!(
                    "invalid seed at line {} column {}",
                    e.line(),
                    e.column()
                )),
                "BadRequest",
            );
        }
    };
    match lock(&s.data).apply_seed(&seed) {
        Ok(()) => Json(json!({"ok": true})).into_response(),
        Err(e) => error_body(
            StatusCode::BAD_REQUEST,
            Value::String(e.to_string()),
            "BadRequest",
        ),
    }
}

pub(super) async fn stats_handler(State(s): State<Arc<Shared>>) -> Response {
    Json(Emulator { shared: s }.stats()).into_response()
}

pub(super) async fn expire_handler(State(s): State<Arc<Shared>>) -> Response {
    Emulator { shared: s }.expire_all_tokens();
    Json(json!({"ok": true})).into_response()
}
