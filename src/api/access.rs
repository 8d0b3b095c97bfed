//! The access audit: every response with status 401, 403 or 429 is counted, per client
//! address, route template, outcome and token (when known), and written aggregated once a
//! minute (see `audit::AccessKey`). A flood of refused requests costs a few rows.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, MatchedPath, RawPathParams, Request, State};
use axum::http::{Extensions, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::RequestExt;

use super::error::ErrorCode;
use super::AppState;
use crate::audit::{AccessKey, AuditAction, AuditOutcome};
use crate::domain::{TenantSlug, TokenId};

/// Where the bearer-token extractor leaves the caller's token id for this layer.
#[derive(Clone, Default)]
pub struct TokenSlot(Arc<OnceLock<TokenId>>);

impl TokenSlot {
    pub fn set(&self, id: TokenId) {
        let _ = self.0.set(id);
    }
}

/// The client address (from `ConnectInfo`, when the server provides it), else `-`.
pub fn source_of(extensions: &Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "-".to_owned())
}

pub async fn audit_access(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let source = source_of(req.extensions());
    let tenant_slug = match req.extract_parts::<RawPathParams>().await {
        Ok(params) => params
            .iter()
            .find(|(name, _)| *name == "tenant")
            .and_then(|(_, value)| TenantSlug::parse(value).ok())
            .map(|s| s.to_string()),
        Err(_) => None,
    };
    let slot = TokenSlot::default();
    req.extensions_mut().insert(slot.clone());
    let response = next.run(req).await;
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let (action, outcome) = match response.status() {
        StatusCode::UNAUTHORIZED => (AuditAction::AccessUnauthenticated, AuditOutcome::Denied),
        StatusCode::FORBIDDEN if code == Some("insufficient_scope") => {
            (AuditAction::AccessScope, AuditOutcome::Denied)
        }
        StatusCode::FORBIDDEN if route.starts_with("/v1/admin/") => {
            (AuditAction::AccessAdmin, AuditOutcome::Denied)
        }
        StatusCode::FORBIDDEN => (AuditAction::AccessTenant, AuditOutcome::Denied),
        StatusCode::TOO_MANY_REQUESTS => (AuditAction::AccessRateLimit, AuditOutcome::Rejected),
        _ => return response,
    };
    if let Ok(vault) = state.vault() {
        vault.audit().record_access(AccessKey {
            source,
            route,
            action,
            outcome,
            token_id: slot.0.get().map(|t| t.0),
            tenant_slug,
        });
    }
    response
}
