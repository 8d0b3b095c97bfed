//! `POST /v1/secrets/batch-get`: many (tenant, key) reads in one round trip, so a client can
//! fill its cache at once. Each item goes through the single read's path (authorisation,
//! cache -> database -> Infisical, one audit row) and fails on its own: the answer lists a
//! value or an error per item, in request order.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::extract::{AppJson, Caller, RequestId, Source};
use super::openapi::{ErrorDetail, JsonBodyErrors, Refusals};
use super::AppState;
use crate::audit::{AccessKey, AuditAction, AuditOutcome};
use crate::domain::{SecretKey, TenantSlug};
use crate::service::{Access, InputError, Principal, SecretRead, ServiceError, Vault};

const ROUTE: &str = "/v1/secrets/batch-get";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(batch_get))
}

/// Items looked up at once: enough to overlap database round trips, few enough that one
/// batch cannot take the whole connection pool.
const CONCURRENCY: usize = 8;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchGet {
    /// At most `TENANT_VAULT_BATCH_GET_MAX_ITEMS` (default 100).
    items: Vec<Item>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Item {
    tenant: String,
    key: String,
}

/// One item's answer: the value, or why not.
enum Outcome {
    Found(SecretRead),
    Failed(ApiError),
}

/// Serialised straight from borrowed data, like the single read.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum ItemBody<'a> {
    Found {
        tenant: &'a str,
        key: &'a str,
        value: &'a str,
        version: i32,
        #[serde(serialize_with = "super::secrets::rfc3339")]
        updated_at: chrono::DateTime<chrono::Utc>,
        source: &'static str,
    },
    Failed {
        tenant: &'a str,
        key: &'a str,
        error: ErrorDetail<'a>,
    },
}

/// One answer per item, in request order.
#[derive(Serialize, ToSchema)]
struct BatchBody<'a> {
    results: Vec<ItemBody<'a>>,
}

/// Reads many secrets at once; each item succeeds or fails on its own.
#[utoipa::path(
    post,
    path = "/v1/secrets/batch-get",
    tag = "secrets",
    request_body = BatchGet,
    responses(
        (status = 200, description = "A value or an error per item, in request order.", body = BatchBody,
         headers(("cache-control" = String, description = "Always `no-store`."))),
        Refusals, JsonBodyErrors,
    )
)]
async fn batch_get(
    State(state): State<AppState>,
    Caller(who): Caller,
    RequestId(rid): RequestId,
    Source(source): Source,
    AppJson(body): AppJson<BatchGet>,
) -> Result<Response, ApiError> {
    let vault = state.vault()?;
    let max = vault.limits().batch_get_max_items;
    if body.items.len() > max {
        return Err(ServiceError::InvalidInput(InputError::TooManyItems {
            max,
            got: body.items.len(),
        })
        .into());
    }
    let reads = body.items.into_iter().map(|item| {
        let (vault, who, rid, source) = (vault.clone(), who.clone(), rid.clone(), source.clone());
        async move {
            let outcome = read_one(&vault, &who, rid, &source, &item).await;
            (item, outcome)
        }
    });
    let outcomes: Vec<(Item, Outcome)> = futures::stream::iter(reads)
        .buffered(CONCURRENCY) // answers in request order
        .collect()
        .await;
    let results = outcomes
        .iter()
        .map(|(item, outcome)| match outcome {
            Outcome::Found(read) => ItemBody::Found {
                tenant: &item.tenant,
                key: &item.key,
                value: read.secret.value.expose(),
                version: read.secret.version,
                updated_at: read.secret.updated_at,
                source: read.source.as_str(),
            },
            Outcome::Failed(e) => ItemBody::Failed {
                tenant: &item.tenant,
                key: &item.key,
                error: ErrorDetail {
                    code: e.code,
                    message: &e.message,
                },
            },
        })
        .collect();
    let mut response = Json(BatchBody { results }).into_response();
    // Secrets must not land in shared caches.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// One item, exactly as `GET /v1/tenants/{tenant}/secrets/{key}` would read it.
async fn read_one(
    vault: &Vault,
    who: &Principal,
    request_id: Option<String>,
    source: &str,
    item: &Item,
) -> Outcome {
    let slug = match TenantSlug::parse(&item.tenant) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(ApiError::bad_request("invalid_tenant", e.0)),
    };
    let key = match SecretKey::parse(&item.key) {
        Ok(k) => k,
        Err(e) => return Outcome::Failed(ApiError::bad_request("invalid_secret_key", e.0)),
    };
    let read = async {
        let tenant = vault
            .authorize_secret(who, &slug, Some(&key), Access::Read)
            .await?;
        vault
            .get_secret(&who.context(request_id), &tenant, &key)
            .await
    };
    match read.await {
        Ok(read) => Outcome::Found(read),
        Err(e) => {
            // A refused item is a refused access, counted like a 403 response.
            if let ServiceError::Forbidden(_) | ServiceError::InsufficientScope(_) = e {
                let action = match e {
                    ServiceError::InsufficientScope(_) => AuditAction::AccessScope,
                    _ => AuditAction::AccessTenant,
                };
                vault.audit().record_access(AccessKey {
                    source: source.to_owned(),
                    route: ROUTE.to_owned(),
                    action,
                    outcome: AuditOutcome::Denied,
                    token_id: Some(who.token_id.0),
                    tenant_slug: Some(slug.to_string()),
                });
            }
            Outcome::Failed(e.into())
        }
    }
}
