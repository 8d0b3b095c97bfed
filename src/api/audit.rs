//! `GET /v1/admin/audit`: the audit trail, filtered and paged, newest first. Admin only.

use std::collections::HashMap;

use axum::extract::Query;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::Admin;
use super::openapi::{AdminRefusals, BadRequestErrors};
use super::AppState;
use crate::domain::{AuditAction, AuditOutcome, TenantSlug};
use crate::service::audit_log::{AuditPage, AuditQuery};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// The filters, as the document describes them (`parse` reads them).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct AuditParams {
    /// A tenant's slug.
    tenant: Option<String>,
    action: Option<AuditAction>,
    outcome: Option<AuditOutcome>,
    /// RFC 3339.
    since: Option<DateTime<Utc>>,
    /// RFC 3339.
    until: Option<DateTime<Utc>>,
    /// The previous page's `next_before`.
    before: Option<i64>,
    /// Page size (default 100, at most 1000).
    limit: Option<u32>,
}

/// The audit trail, newest first, filtered and paged.
#[utoipa::path(
    get,
    path = "/v1/admin/audit",
    tag = "audit",
    params(AuditParams),
    responses(
        (status = 200, description = "A page of events.", body = AuditPage),
        AdminRefusals, BadRequestErrors,
    )
)]
async fn list(
    admin: Admin,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let vault = &admin.vault;
    let Query(params) =
        query.map_err(|_| ApiError::bad_request("invalid_query", "malformed query string"))?;
    let q = parse(&params)?;
    let page = vault.list_audit(&admin.ctx, &q).await?;
    Ok(Json(page).into_response())
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// `tenant`, `action`, `outcome`, `since`, `until` (RFC 3339), `before` (an id), `limit`.
/// Anything else is refused, so a misspelt filter cannot silently widen the answer.
fn parse(params: &HashMap<String, String>) -> Result<AuditQuery, ApiError> {
    let mut q = AuditQuery::default();
    for (name, value) in params {
        match name.as_str() {
            "tenant" => {
                q.tenant = Some(TenantSlug::parse(value).map_err(|e| {
                    ApiError::bad_request("invalid_tenant", format!("`tenant`: {}", e.0))
                })?)
            }
            "action" => {
                q.action = Some(enum_value::<AuditAction>(value).ok_or_else(|| {
                    invalid("`action` is not a known audit action (e.g. secret.read)".into())
                })?)
            }
            "outcome" => {
                q.outcome = Some(enum_value::<AuditOutcome>(value).ok_or_else(|| {
                    invalid("`outcome` is not a known audit outcome (e.g. success)".into())
                })?)
            }
            "since" => q.since = Some(time(name, value)?),
            "until" => q.until = Some(time(name, value)?),
            "before" => {
                q.before = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| invalid("`before` must be an event id".into()))?,
                )
            }
            "limit" => {
                q.limit = Some(
                    value
                        .parse::<u32>()
                        .map_err(|_| invalid("`limit` must be a positive integer".into()))?,
                )
            }
            _ => return Err(invalid(
                "the audit listing takes tenant, action, outcome, since, until, before and limit"
                    .into(),
            )),
        }
    }
    Ok(q)
}

fn enum_value<T: serde::de::DeserializeOwned>(value: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(value.to_owned())).ok()
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            invalid(format!(
                "`{name}` must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z"
            ))
        })
}
