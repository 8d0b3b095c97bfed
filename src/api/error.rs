//! The one place errors become HTTP: `{"error": {"code", "message"}}` with the right status.
//! Messages are written for the caller and never carry a secret value or a database detail;
//! internal detail goes to the log only.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::service::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
}

impl From<ServiceError> for ApiError {
    fn from(err: ServiceError) -> Self {
        use StatusCode as S;
        let msg = err.to_string();
        match err {
            ServiceError::InvalidInput(_) => Self::new(S::BAD_REQUEST, "invalid_request", msg),
            ServiceError::Unauthenticated => Self::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "missing or unknown token: send `Authorization: Bearer <token>`",
            ),
            ServiceError::Forbidden(_) => Self::new(S::FORBIDDEN, "forbidden", msg),
            ServiceError::InsufficientScope(_) => {
                Self::new(S::FORBIDDEN, "insufficient_scope", msg)
            }
            ServiceError::TokenNotFound => Self::new(S::NOT_FOUND, "token_not_found", msg),
            ServiceError::TenantNotFound => Self::new(S::NOT_FOUND, "tenant_not_found", msg),
            ServiceError::SecretNotFound => Self::new(S::NOT_FOUND, "secret_not_found", msg),
            ServiceError::TenantExists => Self::new(S::CONFLICT, "tenant_exists", msg),
            ServiceError::CasConflict { .. } => Self::new(S::CONFLICT, "cas_conflict", msg),
            ServiceError::ValueTooLarge { .. } => {
                Self::new(S::PAYLOAD_TOO_LARGE, "value_too_large", msg)
            }
            ServiceError::RateLimited(_) => Self::new(S::TOO_MANY_REQUESTS, "rate_limited", msg),
            ServiceError::QuotaExceeded(_) => Self::new(S::FORBIDDEN, "quota_exceeded", msg),
            ServiceError::Integrity => Self::new(
                S::INTERNAL_SERVER_ERROR,
                "integrity_error",
                "the stored secret failed its integrity check and was not returned; \
                 this has been recorded in the audit trail",
            ),
            ServiceError::Unavailable(_) => Self::new(
                S::SERVICE_UNAVAILABLE,
                "dependency_unavailable",
                format!("{msg}; try again shortly"),
            ),
            ServiceError::VersionNotFound(_) => Self::new(S::NOT_FOUND, "version_not_found", msg),
            ServiceError::RotationInProgress => Self::new(S::CONFLICT, "rotation_in_progress", msg),
            ServiceError::RotationUnsupported(_) => {
                Self::new(S::CONFLICT, "rotation_unsupported", msg)
            }
            ServiceError::DependencyFailed(_) => Self::new(S::BAD_GATEWAY, "dependency_error", msg),
            ServiceError::InvalidSignature(_) => {
                Self::new(S::UNAUTHORIZED, "invalid_signature", msg)
            }
            ServiceError::NotConfigured(_) => Self::new(S::NOT_FOUND, "not_configured", msg),
            // The one place internal causes are logged; the caller gets no detail.
            ServiceError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                Self::new(S::INTERNAL_SERVER_ERROR, "internal", "internal error")
            }
        }
    }
}

/// The error code of a response, for layers that look at refusals (the access audit).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(super::openapi::ErrorBody {
            error: super::openapi::ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        });
        let mut response = (self.status, body).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}
