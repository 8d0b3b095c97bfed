//! The access audit: every response with status 401, 403 or 429 is counted, per client
//! address, route template, outcome and token (when known), and written aggregated once a
//! minute (see `audit::AccessKey`). A flood of refused requests costs a few rows. The route
//! layer (`api::edge`) makes the slot and counts the answer.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{ConnectInfo, MatchedPath};
use axum::http::{Extensions, StatusCode, Uri};
use axum::response::Response;

use super::error::ErrorCode;
use super::AppState;
use crate::audit::{AccessKey, AuditAction, AuditOutcome};
use crate::domain::{TenantSlug, TokenId};
use crate::service::Principal;

/// What the inner layers learn about a request for the access audit: the caller's token
/// (set by the bearer-token extractor), the route template and the tenant in the path (set
/// by `api::edge` once routing has matched).
#[derive(Clone, Default)]
pub struct TokenSlot(Arc<Slot>);

#[derive(Default)]
struct Slot {
    token: OnceLock<TokenId>,
    /// The caller, once the rate-limit step has authenticated it (the `Caller` extractor
    /// takes it from here rather than authenticating twice). Kept in the slot rather than
    /// as an extension of its own: each extension is a boxed insert into a map per request.
    caller: OnceLock<Arc<Principal>>,
    /// The matched route and the request's path, kept as they are (reference-counted
    /// clones): only a refused request turns them into strings.
    route: OnceLock<(RouteTemplate, Uri)>,
}

/// A request's route template: the one routing matched, or the cached read's lane's own
/// (`api::lane`, which routes without axum's router and has parsed the path's tenant).
#[derive(Clone)]
pub enum RouteTemplate {
    Matched(MatchedPath),
    Lane {
        template: &'static str,
        tenant: TenantSlug,
    },
}

impl RouteTemplate {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Matched(route) => route.as_str(),
            Self::Lane { template, .. } => template,
        }
    }
}

impl TokenSlot {
    /// A slot for a request routed to `route` (the path is kept for the tenant segment).
    pub(super) fn routed(route: &RouteTemplate, uri: &Uri) -> Self {
        let slot = Self::default();
        let _ = slot.0.route.set((route.clone(), uri.clone()));
        slot
    }

    pub fn set(&self, id: TokenId) {
        let _ = self.0.token.set(id);
    }

    /// Keeps the caller the rate-limit step authenticated, for the handler.
    pub(super) fn authenticated(&self, who: Arc<Principal>) {
        let _ = self.0.caller.set(who);
    }

    /// The caller, if the rate-limit step authenticated it.
    pub(super) fn caller(&self) -> Option<&Arc<Principal>> {
        self.0.caller.get()
    }

    /// The route template, or `unmatched`.
    fn route(&self) -> String {
        self.0.route.get().map_or_else(
            || "unmatched".into(),
            |(route, _)| route.as_str().to_owned(),
        )
    }

    /// The tenant the path named, when it names a valid one: the path segment where the
    /// template has `{tenant}` (the lane's, parsed already).
    pub(super) fn tenant(&self) -> Option<Cow<'_, TenantSlug>> {
        let (route, uri) = self.0.route.get()?;
        if let RouteTemplate::Lane { tenant, .. } = route {
            return Some(Cow::Borrowed(tenant));
        }
        let at = route.as_str().split('/').position(|s| s == "{tenant}")?;
        let raw = uri.path().split('/').nth(at)?;
        TenantSlug::parse(raw).ok().map(Cow::Owned)
    }
}

/// The client address (from `ConnectInfo`, when the server provides it), else `-`.
pub fn source_of(extensions: &Extensions) -> String {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// Counts the answer if it is a 401, 403 or 429. Called by the route layer (`api::edge`)
/// with the answer of everything inside it, the rate limits' refusals included.
pub(super) fn count_refusal(
    state: &AppState,
    client: Option<SocketAddr>,
    slot: &TokenSlot,
    response: &Response,
) {
    if !matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    ) {
        return; // the common case: nothing to count, nothing formatted
    }
    let route = slot.route();
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
        _ => return,
    };
    if let Ok(vault) = state.vault() {
        vault.audit().record_access(AccessKey {
            source: client.map_or_else(|| "-".to_owned(), |a| a.ip().to_string()),
            route,
            action,
            outcome,
            token_id: slot.0.token.get().map(|t| t.0),
            tenant_slug: slot.tenant().map(|t| t.to_string()),
        });
    }
}
