//! The OpenAPI 3.1 document, served at `GET /v1/openapi.json` (committed as
//! `docs/openapi.json`). Nothing here lists routes: every handler carries its
//! `#[utoipa::path]` and the routers register handlers through `utoipa_axum::routes!`, so a
//! route is served only together with its description. What this module adds is what many
//! operations share: the error body, the path parameters, the bearer scheme, and the error
//! responses as named components, referenced through the response sets below.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Type};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable, machine-readable (`tenant_not_found`, `rate_limited`, ...).
    pub code: &'a str,
    /// For people; never carries a secret value.
    pub message: &'a str,
}

/// `{tenant}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the path; `extract::TenantPath` reads it
pub struct TenantParam {
    /// The tenant's slug.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "acme")]
    tenant: String,
}

/// `{tenant}` and `{key}` in a path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // describes the path; `extract::SecretPath` reads it
pub struct SecretParams {
    /// The tenant's slug.
    #[param(pattern = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", example = "acme")]
    tenant: String,
    /// The secret's key.
    #[param(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$", example = "API_KEY")]
    key: String,
}

/// `scopes` of a token request: one or both scopes (null or absent: both).
pub fn scopes_schema() -> utoipa::openapi::schema::Array {
    utoipa::openapi::schema::ArrayBuilder::new()
        .items(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["secrets:read", "secrets:write"])),
        )
        .min_items(Some(1))
        .unique_items(true)
        .build()
}

/// `tenants` of a service token: `"*"` or a non-empty list of slugs.
pub fn tenants_schema() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::OneOfBuilder::new()
        .item(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["*"])),
        )
        .item(
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(SLUG_PATTERN)),
                )
                .min_items(Some(1)),
        )
        .build()
        .into()
}

/// `key_pattern` of a token request.
pub fn key_pattern_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^\*?[A-Za-z0-9_.-]{1,255}\*?$|^\*$"))
        .build()
}

const SLUG_PATTERN: &str = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";

/// The shared error responses: (component name, status, description).
const ERRORS: &[(&str, &str, &str)] = &[
    (
        "BadRequest",
        "400",
        "The request is malformed; `error.code` says how (invalid_tenant, invalid_secret_key, \
         invalid_path, invalid_query, invalid_json, invalid_body, invalid_token_id, \
         invalid_request).",
    ),
    (
        "Unauthenticated",
        "401",
        "No bearer token, or one that is unknown, expired or revoked (`unauthenticated`).",
    ),
    (
        "Forbidden",
        "403",
        "The token may not do this: `forbidden` (wrong kind of token or tenant), \
         `insufficient_scope` (outside its scopes or key pattern), `quota_exceeded`.",
    ),
    (
        "NotFound",
        "404",
        "No such tenant, secret, version or token (`tenant_not_found`, `secret_not_found`, \
         `version_not_found`, `token_not_found`), or a feature not configured (`not_configured`).",
    ),
    (
        "Conflict",
        "409",
        "The current state forbids it: `tenant_exists`, `cas_conflict`, \
         `rotation_in_progress`, `rotation_unsupported`.",
    ),
    (
        "PayloadTooLarge",
        "413",
        "The body (`payload_too_large`) or the value (`value_too_large`) is too large.",
    ),
    (
        "UnsupportedMediaType",
        "415",
        "The body is not sent as `application/json` (`unsupported_media_type`).",
    ),
    (
        "RateLimited",
        "429",
        "The token's or the tenant's rate limit, or the limit on failed authentication from \
         this address, is exhausted (`rate_limited`).",
    ),
    (
        "BadGateway",
        "502",
        "A dependency (Infisical, the archive) answered with an error (`dependency_error`).",
    ),
    (
        "Unavailable",
        "503",
        "Not ready yet (`not_ready`), a dependency is unreachable (`dependency_unavailable`), \
         or the request did not finish in time (`request_timeout`).",
    ),
];

/// Declares a set of shared error responses an operation lists in `responses(...)`.
macro_rules! response_set {
    ($($(#[$doc:meta])* $name:ident: [$($component:literal),+];)+) => {$(
        $(#[$doc])*
        pub struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
                [$($component),+]
                    .into_iter()
                    .map(|name| {
                        let status = ERRORS.iter().find(|e| e.0 == name).expect("a known error").1;
                        (status.to_owned(), RefOr::Ref(Ref::from_response_name(name)))
                    })
                    .collect()
            }
        }
    )+};
}

response_set! {
    /// Any authenticated route: no or a bad token, rate limits, not ready.
    Refusals: ["Unauthenticated", "RateLimited", "Unavailable"];
    /// Admin routes: also a token that is not an admin token.
    AdminRefusals: ["Unauthenticated", "Forbidden", "RateLimited", "Unavailable"];
    /// Admin routes on one tenant: also a malformed slug and an unknown tenant.
    AdminTenantRefusals: [
        "BadRequest", "Unauthenticated", "Forbidden", "NotFound", "RateLimited", "Unavailable"
    ];
    /// Secret routes: a malformed path, no access to the tenant or key, unknown tenant.
    SecretRefusals: [
        "BadRequest", "Unauthenticated", "Forbidden", "NotFound", "RateLimited", "Unavailable"
    ];
    /// A JSON request body: malformed, too large, or not JSON.
    JsonBodyErrors: ["BadRequest", "PayloadTooLarge", "UnsupportedMediaType"];
    /// Malformed input (a query string, an id in the path).
    BadRequestErrors: ["BadRequest"];
    /// A state conflict.
    ConflictErrors: ["Conflict"];
    /// Unknown tenant, secret, version or token.
    NotFoundErrors: ["NotFound"];
    /// Reads that may reach Infisical or the archive.
    UpstreamErrors: ["BadGateway", "Unavailable"];
    /// Only "not ready".
    NotReady: ["Unavailable"];
}

/// Adds the bearer scheme and the shared error responses.
struct Shared;

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin, tenant or service token: `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
        let text = |description: &str| {
            HeaderBuilder::new()
                .schema(Some(
                    utoipa::openapi::ObjectBuilder::new().schema_type(Type::String),
                ))
                .description(Some(description))
                .build()
        };
        for (name, status, description) in ERRORS {
            let mut response = ResponseBuilder::new().description(*description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
            if *status == "429" {
                response = response
                    .header(
                        "Retry-After",
                        HeaderBuilder::new()
                            .schema(Some(
                                utoipa::openapi::ObjectBuilder::new()
                                    .schema_type(Type::Integer)
                                    .minimum(Some(0)),
                            ))
                            .description(Some("Seconds until a retry can succeed."))
                            .build(),
                    )
                    .header(
                        "RateLimit",
                        text("Remaining quota per policy: `\"token\";r=150;t=1`."),
                    )
                    .header(
                        "RateLimit-Policy",
                        text("The policies: `\"token\";q=200;w=2, \"tenant\";q=1000;w=2`."),
                    );
            }
            components
                .responses
                .insert((*name).to_owned(), RefOr::T(response.build()));
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenant-vault",
        description = "Per-tenant secrets, encrypted under per-tenant data keys. Generated from \
                       the route definitions (`src/api`); do not edit `docs/openapi.json` by hand.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    security(("bearer" = [])),
    modifiers(&Shared),
    tags(
        (name = "secrets", description = "Tenant and service tokens reading and writing secrets."),
        (name = "tenants", description = "Admin: tenants, their tokens, limits and secrets."),
        (name = "tokens", description = "Token lifecycle and service tokens."),
        (name = "keys", description = "Admin: master and data keys."),
        (name = "audit", description = "Admin: the audit trail."),
        (name = "system", description = "Probes, metrics, webhooks, events and this document."),
    )
)]
struct ApiDoc;

/// The document: the shared parts above, merged with what the routers describe.
pub fn document(routes: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.merge(routes);
    doc
}

/// The document as served, rendered once.
static RENDERED: LazyLock<String> = LazyLock::new(|| {
    document(super::routes().into_openapi())
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// The rendered document (what `GET /v1/openapi.json` answers).
pub fn json() -> &'static str {
    &RENDERED
}

/// This document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "system",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document.", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> Response {
    let mut response = json().to_owned().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
