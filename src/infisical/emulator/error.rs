//! Infisical-shaped error answers (`{"reqId","statusCode","message","error"}`), and the
//! typed errors the emulator's own Rust API returns.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Value};

/// An Infisical-shaped error answer:
/// `{"reqId","statusCode","message","error"}` (current servers' shape, with `reqId`).
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: Value,
    pub(super) error: String,
    /// Rejected during authentication: real servers add no `x-ratelimit-*` headers then.
    pub(super) auth: bool,
}

/// Marks a response rejected during authentication.
#[derive(Clone, Copy)]
pub(super) struct AuthRejected;

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        message: impl Into<String>,
        error: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: Value::String(message.into()),
            error: error.into(),
            auth: false,
        }
    }
    pub(super) fn auth(mut self) -> Self {
        self.auth = true;
        self
    }
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, "BadRequest")
    }
    pub(super) fn internal(error: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            error,
        )
    }
    pub(super) fn validation(issues: Vec<Value>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            message: Value::Array(issues),
            error: "ValidationFailure".into(),
            auth: false,
        }
    }
    pub(super) fn folder_not_found(path: &str, env: &str, op: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("Folder with path '{path}' in environment with slug '{env}' not found"),
            op,
        )
    }
}

pub(super) fn req_id() -> String {
    let mut rng = rand::thread_rng();
    let s: String = (0..14)
        .map(|_| {
            let n = rng.gen_range(0..36u8);
            (if n < 10 { b'0' + n } else { b'a' + n - 10 }) as char
        })
        .collect();
    format!("req-{s}")
}

pub(super) fn error_body(status: StatusCode, message: Value, error: &str) -> Response {
    let body = json!({
        "reqId": req_id(),
        "statusCode": status.as_u16(),
        "message": message,
        "error": error,
    });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = error_body(self.status, self.message, &self.error);
        if self.auth {
            resp.extensions_mut().insert(AuthRejected);
        }
        resp
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

/// What the emulator's own Rust API (and its control plane, as a 400 body) refuses. Each
/// message is the text the control plane answers with, so it must not change.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("error_rate must be between 0.0 and 1.0")]
    ErrorRateOutOfRange,
    /// The cause is part of the message (and not a `source`) so it is printed once.
    #[error("cannot read {}: {cause}", path.display())]
    SeedRead {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("{} is not a valid seed file: {cause}", path.display())]
    SeedParse {
        path: std::path::PathBuf,
        cause: serde_json::Error,
    },
    #[error("a project needs an id")]
    ProjectWithoutId,
    #[error("bad folder path {0:?} in seed")]
    BadFolderPath(String),
    #[error("{what} for unknown environment {env:?}")]
    UnknownEnvironment { what: &'static str, env: String },
    #[error("bad secret name {0:?} in seed")]
    BadSecretName(String),
    #[error("an identity needs a clientId and a clientSecret")]
    IdentityIncomplete,
}
