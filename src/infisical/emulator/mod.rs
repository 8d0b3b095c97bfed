//! An in-memory emulator of the part of Infisical's HTTP API that tenant-vault uses.
//!
//! Tests, the bench and `tenant-vault dev` need an Infisical that starts in milliseconds, can
//! be broken on purpose (latency, 5xx, 429, outage, token expiry) and behaves like the real
//! server, so the client written against it also works against Infisical Cloud and
//! self-hosted servers. Every shape here (paths, query parameters, JSON fields, status codes,
//! error bodies) follows `infisical-api.md`; where old (Oct-2024) and current servers differ,
//! one behaviour is picked and named in `docs/infisical-emulator.md`.
//!
//! Served routes:
//! - `POST /api/v1/auth/universal-auth/login`, `POST /api/v1/auth/token/renew`,
//!   `POST /api/v1/auth/token/revoke`
//! - `GET /api/v3/secrets/raw`, `GET|POST|PATCH|DELETE /api/v3/secrets/raw/{secretName}`
//! - `GET|POST /api/v1/folders`
//! - `GET|POST /api/v1/webhooks`, `DELETE /api/v1/webhooks/{id}`; webhooks are sent (signed)
//!   when a secret is created, updated or deleted in a matching folder
//! - control plane (no auth, bind to loopback): `GET|PUT /_emulator/faults`,
//!   `POST /_emulator/seed`, `GET /_emulator/stats`, `POST /_emulator/tokens/expire`
//!
//! Secret values and client secrets are never logged.
//!
//! Files, one concern each: `state` (the data behind one mutex), `seed` (the seed format and
//! merging it in), `error` (Infisical-shaped error answers), `body` (request bodies read like
//! fastify + zod), `faults` (fault switches, rate limits, ETags), `auth` (Universal Auth and
//! the permission check), `secrets`, `folders`, and `control` (the `/_emulator/*` plane).

mod auth;
mod body;
mod control;
mod error;
mod faults;
mod folders;
mod secrets;
mod seed;
mod state;
mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::{self};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::trim_value;

use auth::{login, renew, revoke};
use control::{
    expire_handler, get_faults_handler, put_faults_handler, seed_handler, stats_handler,
};
pub use error::EmulatorError;
use faults::api_layer;
pub use faults::{Faults, FaultsPatch};
use folders::{create_folder, list_folders};
use secrets::{create_secret, delete_secret, get_secret, list_secrets, update_secret};
pub use seed::{Role, Seed, SeedIdentity, SeedProject};
use state::{lock, Data, Shared};

/// Fastify's default body limit, which Infisical keeps: larger bodies get a 500.
const BODY_LIMIT: usize = 1024 * 1024;
/// Infisical's default `accessTokenMaxTTL` (30 days).
const DEFAULT_MAX_TTL: u64 = 2_592_000;
/// Recursive list depth limit.
const MAX_DEPTH: usize = 20;

/// How to build an [`Emulator`].
#[derive(Clone, Default)]
pub struct EmulatorConfig {
    pub seed: Seed,
    pub faults: Faults,
    /// Per client IP and route pattern, fixed 60 s windows, like the real limiter
    /// (Oct-2024 self-hosted: 40 for secret routes). `None`: no limiter, as current
    /// self-hosted servers. Independent of the `rate_limit` fault switch.
    pub rate_limit_per_minute: Option<u32>,
}

/// Counters, read with `GET /_emulator/stats` or [`Emulator::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Requests that reached an API route (faulted ones included).
    pub api_requests: u64,
    /// Successful logins.
    pub logins: u64,
    /// Successful renewals.
    pub renewals: u64,
    /// Answers replaced by a fault (5xx, 429, 503, malformed).
    pub faults_injected: u64,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) api_requests: AtomicU64,
    pub(super) logins: AtomicU64,
    pub(super) renewals: AtomicU64,
    pub(super) faults_injected: AtomicU64,
}

/// The emulator: shared state behind an axum router. Cheap to clone.
#[derive(Clone)]
pub struct Emulator {
    shared: Arc<Shared>,
}

/// A running emulator (see [`Emulator::spawn`]). Dropping it stops the server.
pub struct EmulatorHandle {
    emulator: Emulator,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The emulator it serves, for changing faults or seeding in-process.
    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(join) = self.join.take() {
            let _ = join.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Emulator {
    /// Builds an emulator. Panics only if the configured seed is invalid (use
    /// [`Emulator::try_new`] to get the error instead).
    pub fn new(config: EmulatorConfig) -> Self {
        Self::try_new(config).expect("invalid emulator seed")
    }

    pub fn try_new(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        let mut data = Data::default();
        data.apply_seed(&config.seed)?;
        let mut jwt_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut jwt_key);
        Ok(Self {
            shared: Arc::new(Shared {
                data: Mutex::new(data),
                faults: Mutex::new(config.faults),
                jwt_key,
                counters: Counters::default(),
                rate_limit_per_minute: config.rate_limit_per_minute,
            }),
        })
    }

    /// Adds identities, projects, folders and secrets (merging with what is there).
    pub fn seed(&self, seed: &Seed) -> Result<(), EmulatorError> {
        lock(&self.shared.data).apply_seed(seed)
    }

    /// The current data (identities, folders, latest secret values) as a seed, so that a
    /// caller can persist it and seed a later emulator with it (`tenant-vault dev` does).
    pub fn snapshot(&self) -> Seed {
        let d = lock(&self.shared.data);
        let identities = d
            .identities
            .iter()
            .map(|(client_id, i)| SeedIdentity {
                client_id: client_id.clone(),
                client_secret: i.client_secret.to_string(),
                access_token_max_ttl: Some(i.max_ttl),
                role: i.role,
                projects: i.projects.as_ref().map(|p| p.iter().cloned().collect()),
            })
            .collect();
        let projects = d
            .projects
            .iter()
            .map(|(id, p)| {
                let mut folders = BTreeMap::new();
                let mut secrets = BTreeMap::new();
                for (env_slug, env) in &p.envs {
                    let paths: Vec<String> =
                        env.folders.keys().filter(|k| *k != "/").cloned().collect();
                    folders.insert(env_slug.clone(), paths);
                    let mut by_path = BTreeMap::new();
                    for (path, folder) in &env.folders {
                        let values: BTreeMap<String, String> = folder
                            .secrets
                            .values()
                            .filter(|r| r.kind == "shared")
                            .filter_map(|r| {
                                r.versions
                                    .last()
                                    .map(|v| (r.name.clone(), v.value.to_string()))
                            })
                            .collect();
                        if !values.is_empty() {
                            by_path.insert(path.clone(), values);
                        }
                    }
                    secrets.insert(env_slug.clone(), by_path);
                }
                SeedProject {
                    id: id.clone(),
                    slug: Some(p.slug.clone()),
                    environments: p.envs.keys().cloned().collect(),
                    folders,
                    secrets,
                }
            })
            .collect();
        Seed {
            identities,
            projects,
        }
    }

    pub fn faults(&self) -> Faults {
        lock(&self.shared.faults).clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.shared.faults) = faults;
    }

    /// Applies a partial change; refuses an `error_rate` outside 0..=1.
    pub fn patch_faults(&self, patch: FaultsPatch) -> Result<Faults, EmulatorError> {
        let mut f = lock(&self.shared.faults);
        let mut next = f.clone();
        patch.apply(&mut next)?;
        *f = next.clone();
        Ok(next)
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            api_requests: c.api_requests.load(Ordering::Relaxed),
            logins: c.logins.load(Ordering::Relaxed),
            renewals: c.renewals.load(Ordering::Relaxed),
            faults_injected: c.faults_injected.load(Ordering::Relaxed),
        }
    }

    /// Expires every issued access token now (server-side TTL expiry: the next use answers
    /// 401 "Failed to renew MI access token due to TTL expiration").
    pub fn expire_all_tokens(&self) {
        let now = Instant::now();
        for t in lock(&self.shared.data).tokens.values_mut() {
            t.expires = Some(now);
        }
    }

    /// The axum router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()`
    /// so the rate limiter can key on the client IP (it falls back to one shared bucket).
    pub fn router(&self) -> Router {
        let state = self.shared.clone();
        let api = Router::new()
            .route("/api/v1/auth/universal-auth/login", post(login))
            .route("/api/v1/auth/token/renew", post(renew))
            .route("/api/v1/auth/token/revoke", post(revoke))
            .route("/api/v3/secrets/raw", get(list_secrets))
            .route(
                "/api/v3/secrets/raw/{secret_name}",
                get(get_secret)
                    .post(create_secret)
                    .patch(update_secret)
                    .delete(delete_secret),
            )
            .route("/api/v1/folders", get(list_folders).post(create_folder))
            .route(
                "/api/v1/webhooks",
                get(webhooks::list_webhooks).post(webhooks::create_webhook),
            )
            .route(
                "/api/v1/webhooks/{webhook_id}",
                delete(webhooks::delete_webhook),
            )
            .route_layer(middleware::from_fn_with_state(state.clone(), api_layer))
            .route(
                "/_emulator/faults",
                get(get_faults_handler).put(put_faults_handler),
            )
            .route("/_emulator/seed", post(seed_handler))
            .route("/_emulator/stats", get(stats_handler))
            .route("/_emulator/tokens/expire", post(expire_handler))
            .method_not_allowed_fallback(route_not_found)
            .fallback(route_not_found)
            .layer(DefaultBodyLimit::disable())
            .with_state(state);
        // The real router ignores trailing slashes; strip one before routing.
        let normalised = tower::ServiceExt::map_request(api, strip_trailing_slash);
        Router::new().fallback_service(normalised)
    }

    /// Serves the emulator on `addr` (use port 0 for a free one) until the handle is dropped
    /// or shut down. Returns the bound address.
    pub async fn spawn(self, addr: SocketAddr) -> std::io::Result<(SocketAddr, EmulatorHandle)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = self.router();
        let join = tokio::spawn(async move {
            let server = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(e) = server.await {
                tracing::error!(error = %e, "Infisical emulator stopped");
            }
        });
        tracing::info!(addr = %local, "Infisical emulator listening");
        Ok((
            local,
            EmulatorHandle {
                emulator: self,
                shutdown: Some(tx),
                join: Some(join),
            },
        ))
    }
}

fn strip_trailing_slash(mut req: Request) -> Request {
    let path = req.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let pq = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        if let Ok(pq) = pq.parse::<axum::http::uri::PathAndQuery>() {
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = Some(pq);
            if let Ok(uri) = axum::http::Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// Fastify's answer for an unknown route (or method).
async fn route_not_found(method: Method, uri: axum::http::Uri) -> Response {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    (
        StatusCode::NOT_FOUND,
        Json(json!({
            "message": format!("Route {method}:{pq} not found"),
            "error": "Not Found",
            "statusCode": 404,
        })),
    )
        .into_response()
}
