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

/// What the inner layers learn about a request for the access audit: the caller's token
/// (set by the bearer-token extractor), the route template and the tenant in the path (set
/// by `note_route`, once routing has matched).
#[derive(Clone, Default)]
pub struct TokenSlot(Arc<Slot>);

#[derive(Default)]
struct Slot {
    token: OnceLock<TokenId>,
    route: OnceLock<String>,
    tenant: OnceLock<String>,
}

impl TokenSlot {
    pub fn set(&self, id: TokenId) {
        let _ = self.0.token.set(id);
    }
}

/// Innermost (a route layer): notes the matched route and tenant for `audit_access`.
pub async fn note_route(mut req: Request, next: Next) -> Response {
    if let Some(slot) = req.extensions().get::<TokenSlot>().cloned() {
        if let Some(path) = req.extensions().get::<MatchedPath>() {
            let _ = slot.0.route.set(path.as_str().to_owned());
        }
        if let Ok(params) = req.extract_parts::<RawPathParams>().await {
            let tenant = params
                .iter()
                .find(|(name, _)| *name == "tenant")
                .and_then(|(_, value)| TenantSlug::parse(value).ok());
            if let Some(t) = tenant {
                let _ = slot.0.tenant.set(t.to_string());
            }
        }
    }
    next.run(req).await
}

/// The client address (from `ConnectInfo`, when the server provides it), else `-`.
pub fn source_of(extensions: &Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// Outermost: sees every response, including refusals made by layers in front of the
/// handlers (rate limits), and counts the 401s, 403s and 429s.
pub async fn audit_access(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let source = source_of(req.extensions());
    let slot = TokenSlot::default();
    req.extensions_mut().insert(slot.clone());
    let response = next.run(req).await;
    let route = slot
        .0
        .route
        .get()
        .cloned()
        .unwrap_or_else(|| "unmatched".into());
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
            token_id: slot.0.token.get().map(|t| t.0),
            tenant_slug: slot.0.tenant.get().cloned(),
        });
    }
    response
}
