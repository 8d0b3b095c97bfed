//! Contract tests that pin the Infisical emulator to the real API's documented shapes
//! (`infisical-api.md`), and tests of the Infisical client against the emulator: login and
//! token refresh, retries, Retry-After, the circuit breaker, timeouts, malformed answers,
//! size limits and connection failures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tenant_vault::domain::TenantSlug;
use tenant_vault::infisical::emulator::{Role, SeedIdentity, SeedProject};
use tenant_vault::infisical::{
    tenant_folder, BreakerState, Emulator, EmulatorConfig, EmulatorHandle, Faults, InfisicalClient,
    InfisicalConfig, InfisicalError, Seed,
};

const PROJECT: &str = "0fac55f1-c7cf-486f-b194-c0eaf9e7f350";
const CLIENT_ID: &str = "9a1c7e52-1111-4c3b-9d7e-5f0c2b7a1e01";
const CLIENT_SECRET: &str = "cs-4b01e7f0a9d24c1b8e6f3a2d1c0b9a8f";
const VIEWER_ID: &str = "viewer-client";
const OUTSIDER_ID: &str = "outsider-client";
const SHORT_ID: &str = "short-ttl-client";
const OTHER_SECRET: &str = "another-client-secret";
const STRIPE: &str = "sk_test_acme_v1";
const MASTER: &str = "bWFzdGVyLWtleS12MQ==";

fn identity(id: &str, secret: &str, role: Role, max_ttl: Option<u64>) -> SeedIdentity {
    SeedIdentity {
        client_id: id.into(),
        client_secret: secret.into(),
        access_token_max_ttl: max_ttl,
        role,
        projects: None,
    }
}

fn seed() -> Seed {
    let mut dev = BTreeMap::new();
    dev.insert(
        "/tenants/acme".to_owned(),
        BTreeMap::from([
            ("STRIPE_KEY".to_owned(), STRIPE.to_owned()),
            ("SENDGRID_TOKEN".to_owned(), "SG.acme".to_owned()),
        ]),
    );
    dev.insert(
        "/tenants/globex".to_owned(),
        BTreeMap::from([("STRIPE_KEY".to_owned(), "sk_test_globex".to_owned())]),
    );
    dev.insert(
        "/tenant-vault".to_owned(),
        BTreeMap::from([("MASTER_ENCRYPTION_KEY_V1".to_owned(), MASTER.to_owned())]),
    );
    let mut outsider = identity(OUTSIDER_ID, OTHER_SECRET, Role::Admin, None);
    outsider.projects = Some(vec!["some-other-project".into()]);
    Seed {
        identities: vec![
            identity(CLIENT_ID, CLIENT_SECRET, Role::Admin, None),
            identity(VIEWER_ID, OTHER_SECRET, Role::Viewer, None),
            identity(SHORT_ID, OTHER_SECRET, Role::Admin, Some(3600)),
            outsider,
        ],
        projects: vec![SeedProject {
            id: PROJECT.into(),
            slug: Some("tenant-vault".into()),
            environments: vec!["dev".into(), "staging".into(), "prod".into()],
            folders: BTreeMap::from([("dev".to_owned(), vec!["/tenants/initech".to_owned()])]),
            secrets: BTreeMap::from([("dev".to_owned(), dev)]),
        }],
    }
}

struct Env {
    base: String,
    handle: EmulatorHandle,
    http: reqwest::Client,
}

impl Env {
    fn emu(&self) -> &Emulator {
        self.handle.emulator()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn login_as(&self, id: &str, secret: &str) -> String {
        let r = self
            .http
            .post(self.url("/api/v1/auth/universal-auth/login"))
            .json(&json!({"clientId": id, "clientSecret": secret}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        v["accessToken"].as_str().unwrap().to_owned()
    }

    async fn token(&self) -> String {
        self.login_as(CLIENT_ID, CLIENT_SECRET).await
    }

    async fn get_secret(&self, token: &str, name: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let mut q = vec![("workspaceId", PROJECT), ("environment", "dev")];
        q.extend_from_slice(query);
        let r = self
            .http
            .get(self.url(&format!("/api/v3/secrets/raw/{name}")))
            .query(&q)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    async fn write(
        &self,
        method: reqwest::Method,
        token: &str,
        name: &str,
        body: Value,
    ) -> (u16, Value) {
        let r = self
            .http
            .request(method, self.url(&format!("/api/v3/secrets/raw/{name}")))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    async fn list(&self, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let r = self
            .http
            .get(self.url("/api/v3/secrets/raw"))
            .query(query)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    async fn put_faults(&self, faults: Value) -> (u16, Value) {
        let r = self
            .http
            .put(self.url("/_emulator/faults"))
            .json(&faults)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    fn client_config(&self) -> InfisicalConfig {
        let mut cfg = InfisicalConfig::new(&self.base, CLIENT_ID, CLIENT_SECRET, PROJECT, "dev");
        cfg.request_timeout = Duration::from_secs(3);
        cfg.retry_base_delay = Duration::from_millis(10);
        cfg.retry_max_delay = Duration::from_millis(50);
        cfg.breaker_cooldown = Duration::from_millis(300);
        cfg
    }

    fn client(&self) -> InfisicalClient {
        InfisicalClient::new(self.client_config()).unwrap()
    }
}

async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, v)
}

async fn start_with(config: EmulatorConfig) -> Env {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, handle) = Emulator::new(config).spawn(addr).await.unwrap();
    Env {
        base: format!("http://{addr}"),
        handle,
        http: reqwest::Client::new(),
    }
}

async fn start() -> Env {
    start_with(EmulatorConfig {
        seed: seed(),
        ..Default::default()
    })
    .await
}

/// The error body shape: statusCode, message, error.
fn assert_error(v: &Value, status: u16, message: &str, error: &str) {
    assert_eq!(v["statusCode"], status, "{v}");
    assert_eq!(v["message"], message, "{v}");
    assert_eq!(v["error"], error, "{v}");
}

fn acme() -> [(&'static str, &'static str); 1] {
    [("secretPath", "/tenants/acme")]
}

fn body(path: &str, extra: Value) -> Value {
    let mut b = json!({"workspaceId": PROJECT, "environment": "dev", "secretPath": path});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            b[k] = v;
        }
    }
    b
}

// ============================================================================================
// Contract tests: the emulator speaks Infisical's API.
// ============================================================================================

#[tokio::test]
async fn login_answers_the_documented_fields() {
    let env = start().await;
    let r = env
        .http
        .post(env.url("/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tokenType"], "Bearer");
    assert_eq!(v["expiresIn"], 7200);
    assert_eq!(v["accessTokenMaxTTL"], 2_592_000);
    let token = v["accessToken"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT");
    assert_eq!(env.emu().stats().logins, 1);
}

#[tokio::test]
async fn login_failures_are_401_and_validation_is_422() {
    let env = start().await;
    let login = |b: Value| {
        let env = &env;
        async move {
            let r = env
                .http
                .post(env.url("/api/v1/auth/universal-auth/login"))
                .json(&b)
                .send()
                .await
                .unwrap();
            status_json(r).await
        }
    };
    let (s, v) = login(json!({"clientId": CLIENT_ID, "clientSecret": "wrong"})).await;
    assert_eq!(s, 401);
    assert_error(&v, 401, "Invalid credentials", "UnauthorizedError");
    let (s, v) = login(json!({"clientId": "nobody", "clientSecret": "x"})).await;
    assert_eq!(s, 401);
    assert_error(&v, 401, "Invalid credentials", "UnauthorizedError");
    let (s, v) = login(json!({"clientId": CLIENT_ID})).await;
    assert_eq!(s, 422);
    assert_eq!(v["error"], "ValidationFailure");
    assert_eq!(v["message"][0]["path"], json!(["clientSecret"]));
    assert_eq!(v["message"][0]["message"], "Required");
    assert_eq!(env.emu().stats().logins, 0);
}

#[tokio::test]
async fn bad_tokens_split_into_401_and_403_token_error() {
    let env = start().await;
    let get = |auth: Option<String>| {
        let env = &env;
        async move {
            let mut rb = env
                .http
                .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
                .query(&[("workspaceId", PROJECT), ("environment", "dev")])
                .query(&acme());
            if let Some(a) = auth {
                rb = rb.header("authorization", a);
            }
            status_json(rb.send().await.unwrap()).await
        }
    };
    let (s, v) = get(None).await;
    assert_eq!(s, 401);
    assert_error(&v, 401, "Token missing", "UnauthorizedError");

    let malformed = "The provided access token is malformed. Please use a valid token or generate a new one and try again.";
    let (s, v) = get(Some("Bearer not-a-jwt".into())).await;
    assert_eq!(s, 403);
    assert_error(&v, 403, malformed, "TokenError");
    let (s, v) = get(Some("Basic Zm9vOmJhcg==".into())).await;
    assert_eq!(s, 403);
    assert_error(&v, 403, malformed, "TokenError");

    // A real token with its signature replaced.
    let token = env.token().await;
    let (head, _) = token.rsplit_once('.').unwrap();
    let (s, v) = get(Some(format!(
        "Bearer {head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    )))
    .await;
    assert_eq!(s, 403);
    assert_error(&v, 403, "invalid signature", "TokenError");

    // Revoked: 401.
    let r = env
        .http
        .post(env.url("/api/v1/auth/token/revoke"))
        .json(&json!({"accessToken": token}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 200);
    assert_eq!(v["message"], "Successfully revoked access token");
    let (s, v) = get(Some(format!("Bearer {token}"))).await;
    assert_eq!(s, 401);
    assert_error(
        &v,
        401,
        "No identity access token found",
        "UnauthorizedError",
    );
}

#[tokio::test]
async fn expired_token_is_401_then_deleted() {
    let env = start().await;
    env.put_faults(json!({"token_ttl_secs": 1})).await;
    let token = env.token().await;
    let (s, _) = env.get_secret(&token, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (s, v) = env.get_secret(&token, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 401);
    assert_error(
        &v,
        401,
        "Failed to renew MI access token due to TTL expiration",
        "UnauthorizedError",
    );
    let (s, v) = env.get_secret(&token, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 401);
    assert_eq!(v["message"], "No identity access token found");
}

#[tokio::test]
async fn renew_extends_below_max_ttl_and_deletes_past_it() {
    let env = start().await;
    // TTL 120 s below max TTL 3600 s: renew works and returns a token that works.
    env.put_faults(json!({"token_ttl_secs": 120})).await;
    let token = env.login_as(SHORT_ID, OTHER_SECRET).await;
    let r = env
        .http
        .post(env.url("/api/v1/auth/token/renew"))
        .json(&json!({"accessToken": token}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["expiresIn"], 120);
    assert_eq!(v["accessTokenMaxTTL"], 3600);
    assert_eq!(v["tokenType"], "Bearer");
    let renewed = v["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(env.get_secret(&renewed, "STRIPE_KEY", &acme()).await.0, 200);

    // Default identity with TTL == max TTL: the renew fails and deletes the token.
    env.put_faults(json!({"token_ttl_secs": 2_592_000})).await;
    let token = env.token().await;
    let r = env
        .http
        .post(env.url("/api/v1/auth/token/renew"))
        .json(&json!({"accessToken": token}))
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 401);
    assert_error(
        &v,
        401,
        "Failed to renew MI access token past its Max TTL expiration",
        "UnauthorizedError",
    );
    let (s, v) = env.get_secret(&token, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 401);
    assert_eq!(v["message"], "No identity access token found");
}

#[tokio::test]
async fn secret_lifecycle_shapes_and_versions() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "API_KEY",
            body(
                "/tenants/initech",
                json!({"secretValue": "v1", "secretComment": "c"}),
            ),
        )
        .await;
    assert_eq!(s, 200, "create answers 200, never 201");
    let sec = &v["secret"];
    for field in [
        "id",
        "_id",
        "workspace",
        "environment",
        "version",
        "type",
        "secretKey",
        "secretValue",
        "secretComment",
        "createdAt",
        "updatedAt",
    ] {
        assert!(sec.get(field).is_some(), "missing {field} in {sec}");
    }
    assert_eq!(sec["id"], sec["_id"]);
    assert_eq!(sec["workspace"], PROJECT);
    assert_eq!(sec["environment"], "dev");
    assert_eq!(sec["version"], 1);
    assert_eq!(sec["type"], "shared");
    assert_eq!(sec["secretKey"], "API_KEY");
    assert_eq!(sec["secretValue"], "v1");
    assert_eq!(sec["secretComment"], "c");
    assert!(sec["createdAt"].as_str().unwrap().ends_with('Z'));

    let (s, v) = env
        .write(
            reqwest::Method::PATCH,
            &t,
            "API_KEY",
            body("/tenants/initech", json!({"secretValue": "v2"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["secret"]["version"], 2);

    let init = [("secretPath", "/tenants/initech")];
    let (s, v) = env.get_secret(&t, "API_KEY", &init).await;
    assert_eq!(s, 200);
    assert_eq!(v["secret"]["secretValue"], "v2");
    assert_eq!(v["secret"]["version"], 2);
    assert_eq!(v["secret"]["tags"], json!([]));

    let (s, v) = env
        .get_secret(
            &t,
            "API_KEY",
            &[("secretPath", "/tenants/initech"), ("version", "1")],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["secret"]["secretValue"], "v1");
    assert_eq!(v["secret"]["version"], 1);
    let (s, v) = env
        .get_secret(
            &t,
            "API_KEY",
            &[("secretPath", "/tenants/initech"), ("version", "9")],
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, "Secret with name 'API_KEY' not found", "NotFound");

    let (s, v) = env
        .write(
            reqwest::Method::DELETE,
            &t,
            "API_KEY",
            body("/tenants/initech", json!({})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        v["secret"]["secretValue"], "v2",
        "delete returns the deleted secret"
    );
    let (s, _) = env.get_secret(&t, "API_KEY", &init).await;
    assert_eq!(s, 404);
    let (s, v) = env
        .write(
            reqwest::Method::DELETE,
            &t,
            "API_KEY",
            body("/tenants/initech", json!({})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(
        &v,
        404,
        "Secret with name 'API_KEY' not found",
        "DeleteSecret",
    );
    let (s, v) = env
        .write(
            reqwest::Method::PATCH,
            &t,
            "NOPE",
            body("/tenants/acme", json!({"secretValue": "x"})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, "Secret with name NOPE not found", "NotFound");
}

#[tokio::test]
async fn missing_secret_and_missing_folder_are_different_404s_but_list_is_200() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env.get_secret(&t, "NEVER_CREATED", &acme()).await;
    assert_eq!(s, 404);
    assert_error(
        &v,
        404,
        "Secret with name 'NEVER_CREATED' not found",
        "NotFound",
    );

    let (s, v) = env
        .get_secret(&t, "STRIPE_KEY", &[("secretPath", "/tenants/nobody")])
        .await;
    assert_eq!(s, 404);
    assert_error(
        &v,
        404,
        "Folder with path '/tenants/nobody' in environment with slug 'dev' not found",
        "GetSecretByName",
    );

    // An existing environment without the folder, and an unknown environment.
    for env_slug in ["staging", "nope"] {
        let r = env
            .http
            .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
            .query(&[
                ("workspaceId", PROJECT),
                ("environment", env_slug),
                ("secretPath", "/tenants/acme"),
            ])
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        let (s, v) = status_json(r).await;
        assert_eq!(s, 404);
        assert_eq!(
            v["message"],
            format!(
                "Folder with path '/tenants/acme' in environment with slug '{env_slug}' not found"
            )
        );
    }

    // Without secretPath the root is searched.
    let (s, v) = env.get_secret(&t, "STRIPE_KEY", &[]).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"], "NotFound");

    let empty = json!({"secrets": [], "imports": []});
    let (s, v) = env
        .list(
            &t,
            &[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants/nobody"),
            ],
        )
        .await;
    assert_eq!((s, &v), (200, &empty));
    let (s, v) = env
        .list(
            &t,
            &[
                ("workspaceId", PROJECT),
                ("environment", "nope"),
                ("secretPath", "/tenants/acme"),
            ],
        )
        .await;
    assert_eq!((s, &v), (200, &empty));

    let (s, v) = env
        .list(
            &t,
            &[("environment", "dev"), ("secretPath", "/tenants/acme")],
        )
        .await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Missing workspace id or environment", "BadRequest");
    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
        .query(&[("workspaceId", PROJECT), ("secretPath", "/tenants/acme")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Missing environment", "BadRequest");

    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
        .query(&[
            ("workspaceId", "00000000-0000-0000-0000-000000000000"),
            ("environment", "dev"),
            ("secretPath", "/tenants/acme"),
        ])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 404);
    assert_eq!(v["error"], "NotFound");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("Project with ID"));
}

#[tokio::test]
async fn list_shapes_and_recursion() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env
        .list(
            &t,
            &[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants/acme"),
            ],
        )
        .await;
    assert_eq!(s, 200);
    let secrets = v["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    assert!(secrets
        .iter()
        .all(|s| s["secretPath"] == "/tenants/acme" && s["tags"] == json!([])));
    assert!(
        v.get("imports").is_none(),
        "imports only with include_imports=true"
    );

    let (_, v) = env
        .list(
            &t,
            &[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants"),
            ],
        )
        .await;
    assert_eq!(
        v["secrets"],
        json!([]),
        "not recursive: /tenants itself holds nothing"
    );

    let (s, v) = env
        .list(
            &t,
            &[
                ("workspaceSlug", "tenant-vault"),
                ("environment", "dev"),
                ("secretPath", "/tenants"),
                ("recursive", "true"),
                ("include_imports", "true"),
            ],
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["imports"], json!([]));
    let mut got: Vec<(String, String)> = v["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["secretPath"].as_str().unwrap().to_owned(),
                s["secretKey"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("/tenants/acme".to_owned(), "SENDGRID_TOKEN".to_owned()),
            ("/tenants/acme".to_owned(), "STRIPE_KEY".to_owned()),
            ("/tenants/globex".to_owned(), "STRIPE_KEY".to_owned()),
        ]
    );
}

#[tokio::test]
async fn values_are_trimmed_like_the_server() {
    let env = start().await;
    let t = env.token().await;
    let init = "/tenants/initech";
    let (_, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "PADDED",
            body(init, json!({"secretValue": "  padded value  "})),
        )
        .await;
    assert_eq!(v["secret"]["secretValue"], "padded value");
    let (_, v) = env
        .write(
            reqwest::Method::PATCH,
            &t,
            "PADDED",
            body(init, json!({"secretValue": "  line1\nline2\n"})),
        )
        .await;
    assert_eq!(v["secret"]["secretValue"], "line1\nline2\n");
    let (_, v) = env.get_secret(&t, "PADDED", &[("secretPath", init)]).await;
    assert_eq!(v["secret"]["secretValue"], "line1\nline2\n");
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "EMPTY",
            body(init, json!({"secretValue": ""})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["secret"]["secretValue"], "");
}

#[tokio::test]
async fn writes_into_a_missing_folder_are_refused_and_create_nothing() {
    let env = start().await;
    let t = env.token().await;
    let nobody = "/tenants/nobody";
    let msg = "Folder with path '/tenants/nobody' in environment with slug 'dev' not found";
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "K",
            body(nobody, json!({"secretValue": "v"})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, msg, "CreateSecret");
    let (s, v) = env
        .write(
            reqwest::Method::PATCH,
            &t,
            "K",
            body(nobody, json!({"secretValue": "v"})),
        )
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, msg, "UpdateSecret");
    let (s, v) = env
        .write(reqwest::Method::DELETE, &t, "K", body(nobody, json!({})))
        .await;
    assert_eq!(s, 404);
    assert_error(&v, 404, msg, "DeleteSecret");
    let (s, v) = env.get_secret(&t, "K", &[("secretPath", nobody)]).await;
    assert_eq!(s, 404);
    assert_eq!(
        v["error"], "GetSecretByName",
        "the folder still does not exist"
    );
}

#[tokio::test]
async fn duplicate_create_is_400() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "STRIPE_KEY",
            body("/tenants/acme", json!({"secretValue": "dup"})),
        )
        .await;
    assert_eq!(s, 400);
    assert_error(&v, 400, "Secret already exist", "BadRequest");
    let (_, v) = env.get_secret(&t, "STRIPE_KEY", &acme()).await;
    assert_eq!(v["secret"]["secretValue"], STRIPE, "unchanged");
}

#[tokio::test]
async fn secret_path_normalisation() {
    let env = start().await;
    let t = env.token().await;
    let (s, _) = env
        .get_secret(&t, "STRIPE_KEY", &[("secretPath", "/tenants/acme/")])
        .await;
    assert_eq!(s, 200, "trailing slash stripped");
    for (path, status) in [
        ("tenants/acme", 404),
        ("//tenants//acme", 404),
        ("/tenants/acme/../globex", 500),
    ] {
        let (s, v) = env
            .get_secret(&t, "STRIPE_KEY", &[("secretPath", path)])
            .await;
        assert_eq!(s, status, "{path}: {v}");
    }
    let (_, v) = env
        .get_secret(
            &t,
            "STRIPE_KEY",
            &[("secretPath", "/tenants/acme/../globex")],
        )
        .await;
    assert_error(&v, 500, "Something went wrong", "Find by secret path");
    // The router ignores a trailing slash on the URL.
    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/STRIPE_KEY/"))
        .query(&[
            ("workspaceId", PROJECT),
            ("environment", "dev"),
            ("secretPath", "/tenants/acme"),
        ])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_500_and_schema_errors_422() {
    let env = start().await;
    let t = env.token().await;
    let post_raw = |name: &str, raw: Vec<u8>| {
        let env = &env;
        let t = t.clone();
        let url = env.url(&format!("/api/v3/secrets/raw/{name}"));
        async move {
            let r = env
                .http
                .post(url)
                .bearer_auth(t)
                .header("content-type", "application/json")
                .body(raw)
                .send()
                .await
                .unwrap();
            status_json(r).await
        }
    };
    let (s, v) = post_raw("MAL", b"{not json".to_vec()).await;
    assert_eq!(s, 500);
    assert_error(&v, 500, "Something went wrong", "InternalServerError");

    let big = |n: usize| {
        serde_json::to_vec(&body(
            "/tenants/initech",
            json!({"secretValue": "A".repeat(n)}),
        ))
        .unwrap()
    };
    let (s, _) = post_raw("BIG900K", big(900 * 1024)).await;
    assert_eq!(s, 200, "900 KiB fits under the 1 MiB body limit");
    let (s, v) = post_raw("BIG1100K", big(1100 * 1024)).await;
    assert_eq!(s, 500, "over 1 MiB is a 500, not a 413");
    assert_eq!(v["error"], "InternalServerError");

    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &t,
            "NOVAL",
            body("/tenants/initech", json!({})),
        )
        .await;
    assert_eq!(s, 422);
    assert_eq!(v["error"], "ValidationFailure");
    assert_eq!(
        v["message"][0],
        json!({"code": "invalid_type", "expected": "string", "received": "undefined",
               "path": ["secretValue"], "message": "Required"})
    );
}

#[tokio::test]
async fn folders_create_list_and_idempotence() {
    let env = start().await;
    let t = env.token().await;
    let create = |name: &str, path: &str| {
        let env = &env;
        let b = json!({"workspaceId": PROJECT, "environment": "dev", "name": name, "path": path});
        let t = t.clone();
        async move {
            let r = env
                .http
                .post(env.url("/api/v1/folders"))
                .bearer_auth(t)
                .json(&b)
                .send()
                .await
                .unwrap();
            status_json(r).await
        }
    };
    let (s, v) = create("hooli", "/tenants").await;
    assert_eq!(s, 200);
    let f = &v["folder"];
    for field in [
        "id",
        "name",
        "version",
        "createdAt",
        "updatedAt",
        "envId",
        "parentId",
        "isReserved",
    ] {
        assert!(f.get(field).is_some(), "missing {field} in {f}");
    }
    assert_eq!(f["name"], "hooli");
    assert_eq!(f["isReserved"], false);
    let (s, again) = create("hooli", "/tenants").await;
    assert_eq!(s, 200, "an existing folder answers 200");
    assert_eq!(again["folder"]["id"], f["id"]);

    let (s, _) = create("x", "/nope/deeper").await;
    assert_eq!(s, 200, "missing parents are created on the way");
    let (s, v) = create("a.b", "/tenants").await;
    assert_eq!(s, 400);
    assert_eq!(v["error"], "BadRequest");

    let list = |path: &str| {
        let env = &env;
        let t = t.clone();
        let q = [
            ("workspaceId", PROJECT),
            ("environment", "dev"),
            ("path", path),
        ];
        let rb = env
            .http
            .get(env.url("/api/v1/folders"))
            .query(&q)
            .bearer_auth(t);
        async move { status_json(rb.send().await.unwrap()).await }
    };
    let (s, v) = list("/tenants").await;
    assert_eq!(s, 200);
    let mut names: Vec<&str> = v["folders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["acme", "globex", "hooli", "initech"]);
    let (_, v) = list("/nope").await;
    assert_eq!(
        v["folders"].as_array().unwrap().len(),
        1,
        "direct children only"
    );
    let (s, v) = list("/does-not-exist").await;
    assert_eq!((s, v), (200, json!({"folders": []})));
}

#[tokio::test]
async fn permissions_viewer_and_non_member() {
    let env = start().await;
    let viewer = env.login_as(VIEWER_ID, OTHER_SECRET).await;
    assert_eq!(env.get_secret(&viewer, "STRIPE_KEY", &acme()).await.0, 200);
    let (s, v) = env
        .write(
            reqwest::Method::POST,
            &viewer,
            "NEWONE",
            body("/tenants/acme", json!({"secretValue": "x"})),
        )
        .await;
    assert_eq!(s, 403);
    assert_error(
        &v,
        403,
        "You are not allowed to create on secrets",
        "PermissionDenied",
    );

    let outsider = env.login_as(OUTSIDER_ID, OTHER_SECRET).await;
    let (s, v) = env.get_secret(&outsider, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 403);
    assert_eq!(v["message"], "You are not allowed to access this resource");
    assert_eq!(
        v["error"],
        format!("Identity is not a member of the specified project with ID '{PROJECT}'")
    );
}

#[tokio::test]
async fn rate_limit_switch_answers_429_with_retry_after_on_every_api_route() {
    let env = start().await;
    let t = env.token().await;
    let (s, v) = env
        .put_faults(json!({"rate_limit": true, "retry_after_secs": 7}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["rate_limit"], true);
    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
        .query(&[
            ("workspaceId", PROJECT),
            ("environment", "dev"),
            ("secretPath", "/tenants/acme"),
        ])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert!(r.headers().contains_key("x-ratelimit-limit"));
    assert!(r.headers().contains_key("x-ratelimit-reset"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["statusCode"], 429);
    assert_eq!(v["error"], "RateLimitExceeded");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("Rate limit exceeded"));

    let r = env
        .http
        .post(env.url("/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let (s, _) = env
        .list(&t, &[("workspaceId", PROJECT), ("environment", "dev")])
        .await;
    assert_eq!(s, 429);

    let r = env
        .http
        .get(env.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    let f: Faults = r.json().await.unwrap();
    assert!(f.rate_limit);
    assert_eq!(f.retry_after_secs, 7);
    env.put_faults(json!({"rate_limit": false})).await;
    assert_eq!(env.get_secret(&t, "STRIPE_KEY", &acme()).await.0, 200);
}

#[tokio::test]
async fn per_route_limiter_counts_per_pattern() {
    let env = start_with(EmulatorConfig {
        seed: seed(),
        rate_limit_per_minute: Some(3),
        ..Default::default()
    })
    .await;
    let t = env.token().await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let r = env
            .http
            .get(env.url("/api/v3/secrets/raw/STRIPE_KEY"))
            .query(&[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants/acme"),
            ])
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-limit"], "3");
        remaining.push(
            r.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["2", "1", "0"]);
    // Same route pattern, another name: same bucket.
    let r = env
        .http
        .get(env.url("/api/v3/secrets/raw/SENDGRID_TOKEN"))
        .query(&[
            ("workspaceId", PROJECT),
            ("environment", "dev"),
            ("secretPath", "/tenants/acme"),
        ])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // The list route is its own bucket; a rejected login carries no x-ratelimit headers.
    let (s, _) = env
        .list(&t, &[("workspaceId", PROJECT), ("environment", "dev")])
        .await;
    assert_eq!(s, 200);
    let r = env
        .http
        .get(env.url("/api/v1/folders"))
        .query(&[("workspaceId", PROJECT), ("environment", "dev")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.headers().contains_key("x-ratelimit-limit"));
}

#[tokio::test]
async fn down_switch_answers_503_everywhere_but_the_control_plane() {
    let env = start().await;
    let t = env.token().await;
    env.put_faults(json!({"down": true})).await;
    let (s, v) = env.get_secret(&t, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 503);
    assert_eq!(v["statusCode"], 503);
    let r = env
        .http
        .post(env.url("/api/v1/auth/universal-auth/login"))
        .json(&json!({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = env
        .http
        .get(env.url("/api/v1/folders"))
        .query(&[("workspaceId", PROJECT), ("environment", "dev")])
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let r = env
        .http
        .get(env.url("/_emulator/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["down"], true);
    assert_eq!(
        f,
        json!({"latency_ms": 0, "error_rate": 0.0, "rate_limit": false, "token_ttl_secs": 7200,
               "down": true, "retry_after_secs": 1, "fail_next": 0, "rate_limit_next": 0,
               "malformed_json": false})
    );
}

#[tokio::test]
async fn error_switches_and_fault_validation() {
    let env = start().await;
    let t = env.token().await;
    env.put_faults(json!({"error_rate": 1.0})).await;
    let (s, v) = env.get_secret(&t, "STRIPE_KEY", &acme()).await;
    assert_eq!(s, 500);
    assert_error(&v, 500, "Something went wrong", "InternalServerError");
    env.put_faults(json!({"error_rate": 0.0, "fail_next": 2}))
        .await;
    assert_eq!(env.get_secret(&t, "STRIPE_KEY", &acme()).await.0, 500);
    assert_eq!(env.get_secret(&t, "STRIPE_KEY", &acme()).await.0, 500);
    assert_eq!(env.get_secret(&t, "STRIPE_KEY", &acme()).await.0, 200);

    let (s, _) = env.put_faults(json!({"error_rate": 2.0})).await;
    assert_eq!(s, 400);
    let (s, _) = env.put_faults(json!({"explode": true})).await;
    assert_eq!(s, 400);
    assert_eq!(
        env.emu().faults().error_rate,
        0.0,
        "a refused change changes nothing"
    );
}

#[tokio::test]
async fn etag_and_unknown_routes() {
    let env = start().await;
    let t = env.token().await;
    let req = || {
        env.http
            .get(env.url("/api/v3/secrets/raw"))
            .query(&[
                ("workspaceId", PROJECT),
                ("environment", "dev"),
                ("secretPath", "/tenants/acme"),
            ])
            .bearer_auth(&t)
    };
    let r = req().send().await.unwrap();
    let etag = r.headers()["etag"].clone();
    let r = req().header("if-none-match", etag).send().await.unwrap();
    assert_eq!(r.status(), 304);
    assert!(r.bytes().await.unwrap().is_empty());

    let r = env
        .http
        .get(env.url("/api/v4/secrets?projectId=x"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    let (s, v) = status_json(r).await;
    assert_eq!(s, 404);
    assert_eq!(
        v,
        json!({"message": "Route GET:/api/v4/secrets?projectId=x not found", "error": "Not Found", "statusCode": 404})
    );
}

#[tokio::test]
async fn seeding_from_a_file_and_through_the_control_api() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("seed.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&json!({
            "identities": [{"clientId": "dev-client", "clientSecret": "dev-secret"}],
            "projects": [{
                "id": "p1",
                "folders": {"dev": ["/tenants/empty"]},
                "secrets": {"dev": {"/tenants/acme": {"K": "  v  "}}}
            }]
        }))
        .unwrap(),
    )
    .unwrap();
    let seed = Seed::from_file(&file).unwrap();
    let env = start_with(EmulatorConfig {
        seed,
        ..Default::default()
    })
    .await;
    let t = env.login_as("dev-client", "dev-secret").await;
    let get = |name: &str, path: &str| {
        let rb = env
            .http
            .get(env.url(&format!("/api/v3/secrets/raw/{name}")))
            .query(&[
                ("workspaceId", "p1"),
                ("environment", "dev"),
                ("secretPath", path),
            ])
            .bearer_auth(&t);
        async move { status_json(rb.send().await.unwrap()).await }
    };
    let (s, v) = get("K", "/tenants/acme").await;
    assert_eq!(s, 200);
    assert_eq!(
        v["secret"]["secretValue"], "v",
        "seed values are trimmed too"
    );
    let (s, v) = get("K", "/tenants/empty").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (404, Some("NotFound")),
        "folder exists, secret not"
    );

    let r = env
        .http
        .post(env.url("/_emulator/seed"))
        .json(
            &json!({"projects": [{"id": "p1", "secrets": {"dev": {"/tenants/new": {"N": "n"}}}}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get("N", "/tenants/new").await.0, 200);
    let r = env
        .http
        .post(env.url("/_emulator/seed"))
        .json(&json!({"projects": [{"id": "p1", "secrets": {"nope": {"/x": {"N": "n"}}}}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "unknown environment refused");
    assert!(Seed::from_file(dir.path().join("missing.json")).is_err());

    // The builder used by dev mode: one identity, one project, a master key.
    let built = Seed::single("p2", "id2", "secret2").with_secret(
        "p2",
        "dev",
        "/tenant-vault",
        "MASTER_ENCRYPTION_KEY_V1",
        MASTER,
    );
    env.emu().seed(&built).unwrap();
    let mut cfg = InfisicalConfig::new(&env.base, "id2", "secret2", "p2", "dev");
    cfg.request_timeout = Duration::from_secs(3);
    let c = InfisicalClient::new(cfg).unwrap();
    let key = c
        .get_secret("/tenant-vault", "MASTER_ENCRYPTION_KEY_V1", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(key.value.expose(), MASTER);
}

// ============================================================================================
// Client tests.
// ============================================================================================

#[tokio::test]
async fn client_reads_writes_and_lists() {
    let env = start().await;
    let c = env.client();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    let s = c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.expose(), STRIPE);
    assert_eq!(s.version, 1);
    assert_eq!(s.key, "STRIPE_KEY");
    assert!(
        c.get_secret(&acme, "NOPE", None).await.unwrap().is_none(),
        "secret 404"
    );
    assert!(
        c.get_secret("/tenants/nobody", "STRIPE_KEY", None)
            .await
            .unwrap()
            .is_none(),
        "folder 404"
    );
    let master = c
        .get_secret("/tenant-vault", "MASTER_ENCRYPTION_KEY_V1", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(master.value.expose(), MASTER);

    // A new tenant: folder first (idempotent), then secrets.
    let hooli = tenant_folder(&TenantSlug::parse("hooli").unwrap());
    assert!(matches!(
        c.create_secret(&hooli, "K", "v").await,
        Err(InfisicalError::FolderNotFound(_))
    ));
    c.ensure_folder_path(&hooli).await.unwrap();
    let f1 = c.create_folder("/tenants", "hooli").await.unwrap();
    let f2 = c.create_folder("/tenants", "hooli").await.unwrap();
    assert_eq!(f1, f2, "create_folder is idempotent");
    let created = c.create_secret(&hooli, "API_KEY", "  one  ").await.unwrap();
    assert_eq!(
        created.value.expose(),
        "one",
        "the stored (trimmed) value is returned"
    );
    assert!(matches!(
        c.create_secret(&hooli, "API_KEY", "x").await,
        Err(InfisicalError::AlreadyExists)
    ));
    let updated = c.update_secret(&hooli, "API_KEY", "two").await.unwrap();
    assert_eq!(updated.version, 2);
    let v1 = c
        .get_secret(&hooli, "API_KEY", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v1.version, v1.value.expose()), (1, "one"));
    assert!(c
        .get_secret(&hooli, "API_KEY", Some(7))
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        c.update_secret(&hooli, "MISSING", "x").await,
        Err(InfisicalError::NotFound)
    ));

    let listed = c.list_secrets(&acme).await.unwrap();
    let mut keys: Vec<_> = listed.iter().map(|s| s.key.as_str()).collect();
    keys.sort();
    assert_eq!(keys, ["SENDGRID_TOKEN", "STRIPE_KEY"]);
    assert!(listed
        .iter()
        .all(|s| s.secret_path.as_deref() == Some("/tenants/acme")));
    assert!(c.list_secrets("/tenants/nobody").await.unwrap().is_empty());
    let all = c.list_secrets_recursive("/tenants").await.unwrap();
    assert_eq!(all.len(), 4);
    let mut folders: Vec<_> = c
        .list_folders("/tenants")
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    folders.sort();
    assert_eq!(folders, ["acme", "globex", "hooli", "initech"]);
    assert!(c.delete_secret(&hooli, "API_KEY").await.unwrap());
    assert!(!c.delete_secret(&hooli, "API_KEY").await.unwrap());
    assert_eq!(env.emu().stats().logins, 1, "one login for the whole run");
}

#[tokio::test]
async fn client_refuses_paths_and_names_that_could_escape_before_any_request() {
    let env = start().await;
    let c = env.client();
    for slug in [
        "..",
        "acme/../../tenant-vault",
        "%2e%2e",
        "acme%2f..",
        "",
        "ACME",
    ] {
        assert!(TenantSlug::parse(slug).is_err(), "{slug:?}");
    }
    for path in [
        "/tenants/acme/../../tenant-vault",
        "/tenants/%2e%2e",
        "tenants/acme",
        "/tenants//acme",
    ] {
        assert!(matches!(
            c.get_secret(path, "MASTER_ENCRYPTION_KEY_V1", None).await,
            Err(InfisicalError::InvalidArgument(_))
        ));
    }
    for name in ["../MASTER", "A/B", "%2e%2e", ".env", ""] {
        assert!(matches!(
            c.get_secret("/tenants/acme", name, None).await,
            Err(InfisicalError::InvalidArgument(_))
        ));
    }
    assert_eq!(
        env.emu().stats().api_requests,
        0,
        "nothing reached Infisical"
    );
}

#[tokio::test]
async fn client_logs_in_again_when_the_server_expires_its_token() {
    let env = start().await;
    let c = env.client();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    // Server-side expiry mid-run: the held token now gets 401.
    env.emu().expire_all_tokens();
    let s = c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.expose(), STRIPE);
    assert_eq!(env.emu().stats().logins, 2);
}

#[tokio::test]
async fn client_logs_in_again_after_403_token_error() {
    let env = start().await;
    let c = env.client();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    // A restarted emulator has a new signing key: the old token fails its signature check.
    let addr: SocketAddr = env.base.trim_start_matches("http://").parse().unwrap();
    env.handle.shutdown().await;
    let emu = Emulator::new(EmulatorConfig {
        seed: seed(),
        ..Default::default()
    });
    let (_, handle) = loop {
        match emu.clone().spawn(addr).await {
            Ok(x) => break x,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let s = c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.expose(), STRIPE);
    assert_eq!(
        handle.emulator().stats().logins,
        1,
        "re-login on the new server"
    );
}

#[tokio::test]
async fn client_renews_when_ttl_is_below_max_ttl() {
    let env = start().await;
    env.put_faults(json!({"token_ttl_secs": 6})).await;
    let mut cfg = env.client_config();
    cfg.client_id = SHORT_ID.into(); // max TTL 3600
    cfg.client_secret = OTHER_SECRET.to_owned().into();
    let c = InfisicalClient::new(cfg).unwrap();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    // Past 80% of the TTL (4.8 s), a second before expiry.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    let st = env.emu().stats();
    assert_eq!((st.logins, st.renewals), (1, 1));
}

#[tokio::test]
async fn client_logs_in_instead_of_renewing_when_ttl_equals_max_ttl() {
    let env = start().await;
    env.emu()
        .seed(&Seed {
            identities: vec![identity("equal-ttl", OTHER_SECRET, Role::Admin, Some(3))],
            projects: vec![],
        })
        .unwrap();
    env.put_faults(json!({"token_ttl_secs": 3})).await;
    let mut cfg = env.client_config();
    cfg.client_id = "equal-ttl".into();
    cfg.client_secret = OTHER_SECRET.to_owned().into();
    let c = InfisicalClient::new(cfg).unwrap();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(c
        .get_secret(&acme, "STRIPE_KEY", None)
        .await
        .unwrap()
        .is_some());
    let st = env.emu().stats();
    assert_eq!(
        (st.logins, st.renewals),
        (2, 0),
        "a renew would have deleted the token"
    );
}

#[tokio::test]
async fn concurrent_callers_share_one_login() {
    let env = start().await;
    let c = env.client();
    let acme = tenant_folder(&TenantSlug::parse("acme").unwrap());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            let acme = acme.clone();
            tokio::spawn(async move { c.get_secret(&acme, "STRIPE_KEY", None).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    assert_eq!(env.emu().stats().logins, 1);
}

#[tokio::test]
async fn client_retries_5xx_then_succeeds() {
    let env = start().await;
    let c = env.client();
    c.login().await.unwrap();
    env.put_faults(json!({"fail_next": 2})).await;
    let before = env.emu().stats().api_requests;
    let s = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.expose(), STRIPE);
    assert_eq!(
        env.emu().stats().api_requests - before,
        3,
        "two 500s, then success"
    );
    assert_eq!(c.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn client_honours_retry_after_on_429() {
    let env = start().await;
    let c = env.client();
    c.login().await.unwrap();
    env.put_faults(json!({"rate_limit_next": 1, "retry_after_secs": 1}))
        .await;
    let started = Instant::now();
    let s = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap();
    assert!(s.is_some());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited for Retry-After"
    );
    assert_eq!(env.emu().stats().faults_injected, 1);
}

#[tokio::test]
async fn client_gives_up_on_429_storms_and_long_retry_after() {
    let env = start().await;
    let mut cfg = env.client_config();
    cfg.max_retries = 1;
    let c = InfisicalClient::new(cfg).unwrap();
    c.login().await.unwrap();
    env.put_faults(json!({"rate_limit": true, "retry_after_secs": 1}))
        .await;
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::RateLimited { .. }), "{err}");
    assert!(err.is_unavailable());

    // A Retry-After longer than the client's bound fails at once.
    env.put_faults(json!({"retry_after_secs": 120})).await;
    let started = Instant::now();
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, InfisicalError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(120)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        c.breaker_state(),
        BreakerState::Closed,
        "429 is not an outage"
    );
}

#[tokio::test]
async fn circuit_breaker_opens_fast_when_down_and_recovers() {
    let env = start().await;
    let mut cfg = env.client_config();
    cfg.breaker_threshold = 3;
    cfg.max_retries = 2;
    cfg.breaker_cooldown = Duration::from_millis(300);
    let c = InfisicalClient::new(cfg).unwrap();
    c.login().await.unwrap();
    env.put_faults(json!({"down": true})).await;
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(c.breaker_state(), BreakerState::Open);

    let before = env.emu().stats().api_requests;
    for _ in 0..20 {
        let started = Instant::now();
        let err = c
            .get_secret("/tenants/acme", "STRIPE_KEY", None)
            .await
            .unwrap_err();
        assert!(matches!(err, InfisicalError::CircuitOpen), "{err}");
        assert!(err.is_unavailable());
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "open breaker answers fast"
        );
    }
    assert_eq!(
        env.emu().stats().api_requests,
        before,
        "no request while open"
    );

    env.put_faults(json!({"down": false})).await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    let s = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap();
    assert!(s.is_some(), "half-open probe succeeds");
    assert_eq!(c.breaker_state(), BreakerState::Closed);
}

#[tokio::test]
async fn slow_answers_time_out() {
    let env = start().await;
    let mut cfg = env.client_config();
    cfg.request_timeout = Duration::from_millis(200);
    cfg.max_retries = 1;
    let c = InfisicalClient::new(cfg).unwrap();
    c.login().await.unwrap();
    env.put_faults(json!({"latency_ms": 1500})).await;
    let started = Instant::now();
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, InfisicalError::Timeout(d) if d == Duration::from_millis(200)),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "bounded by the client timeout"
    );
}

#[tokio::test]
async fn malformed_json_is_an_invalid_response() {
    let env = start().await;
    let c = env.client();
    c.login().await.unwrap();
    env.put_faults(json!({"malformed_json": true})).await;
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::InvalidResponse(_)), "{err}");
    assert!(!err.is_unavailable());
    // Also during login.
    let c2 = env.client();
    let err = c2.login().await.unwrap_err();
    assert!(matches!(err, InfisicalError::InvalidResponse(_)), "{err}");
}

#[tokio::test]
async fn too_large_values_are_refused_both_ways() {
    let env = start().await;
    let big = "B".repeat(100 * 1024);
    env.emu()
        .seed(&Seed {
            identities: vec![],
            projects: vec![SeedProject {
                id: PROJECT.into(),
                slug: None,
                environments: vec!["dev".into()],
                folders: BTreeMap::new(),
                secrets: BTreeMap::from([(
                    "dev".to_owned(),
                    BTreeMap::from([(
                        "/tenants/acme".to_owned(),
                        BTreeMap::from([("HUGE".to_owned(), big.clone())]),
                    )]),
                )]),
            }],
        })
        .unwrap();
    let c = env.client();
    let err = c
        .get_secret("/tenants/acme", "HUGE", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, InfisicalError::TooLarge { limit: 65536, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("65536"));
    let before = env.emu().stats().api_requests;
    let err = c
        .create_secret("/tenants/acme", "HUGE2", &"x".repeat(64 * 1024 + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::TooLarge { .. }), "{err}");
    assert_eq!(
        env.emu().stats().api_requests,
        before,
        "refused before sending"
    );

    let mut cfg = env.client_config();
    cfg.max_value_bytes = 1024 * 1024;
    let roomy = InfisicalClient::new(cfg).unwrap();
    let s = roomy
        .get_secret("/tenants/acme", "HUGE", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value.len(), big.len());
}

#[tokio::test]
async fn connection_refused_is_a_clear_unavailable_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = InfisicalConfig::new(
        format!("http://{addr}"),
        CLIENT_ID,
        CLIENT_SECRET,
        PROJECT,
        "dev",
    );
    cfg.retry_base_delay = Duration::from_millis(5);
    cfg.retry_max_delay = Duration::from_millis(10);
    let c = InfisicalClient::new(cfg).unwrap();
    let started = Instant::now();
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert!(err.is_unavailable());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn credentials_and_permissions_errors_leak_nothing() {
    let env = start().await;
    let mut cfg = env.client_config();
    cfg.client_secret = "definitely-wrong-secret".to_owned().into();
    let c = InfisicalClient::new(cfg).unwrap();
    let err = c
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::Unauthorized(_)), "{err}");
    for text in [err.to_string(), format!("{err:?}"), format!("{c:?}")] {
        assert!(!text.contains("definitely-wrong-secret"), "{text}");
    }

    let mut cfg = env.client_config();
    cfg.client_id = VIEWER_ID.into();
    cfg.client_secret = OTHER_SECRET.to_owned().into();
    let viewer = InfisicalClient::new(cfg).unwrap();
    let s = viewer
        .get_secret("/tenants/acme", "STRIPE_KEY", None)
        .await
        .unwrap()
        .unwrap();
    assert!(!format!("{s:?}").contains(STRIPE), "values print redacted");
    let err = viewer
        .create_secret("/tenants/acme", "NEW", "super-secret-value")
        .await
        .unwrap_err();
    assert!(matches!(err, InfisicalError::Forbidden(_)), "{err}");
    assert!(!err.to_string().contains("super-secret-value"));
}

#[tokio::test]
async fn redirects_are_not_followed_or_retried() {
    // A site URL that answers with a redirect (e.g. http -> https) is a configuration error.
    let app = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::MOVED_PERMANENTLY,
            [("location", "https://example.invalid/")],
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = hits.clone();
    let app = app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            next.run(req)
        },
    ));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let c = InfisicalClient::new(InfisicalConfig::new(
        format!("http://{addr}"),
        CLIENT_ID,
        CLIENT_SECRET,
        PROJECT,
        "dev",
    ))
    .unwrap();
    let err = c.login().await.unwrap_err();
    assert!(matches!(err, InfisicalError::InvalidResponse(_)), "{err}");
    assert!(err.to_string().contains("INFISICAL_SITE_URL"), "{err}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "no retry"
    );
    assert_eq!(c.breaker_state(), BreakerState::Closed);
}
