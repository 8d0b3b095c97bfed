//! Shared fixtures for the Infisical test binaries (`infisical_contract`, `infisical_client`):
//! one seeded project with several identities, and `Env`, an emulator on a free port with a
//! raw HTTP client for speaking the wire protocol directly.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use tenant_vault::infisical::emulator::{Role, SeedIdentity, SeedProject};
use tenant_vault::infisical::{
    Emulator, EmulatorConfig, EmulatorHandle, InfisicalClient, InfisicalConfig, Seed,
};

pub const PROJECT: &str = "0fac55f1-c7cf-486f-b194-c0eaf9e7f350";
pub const CLIENT_ID: &str = "9a1c7e52-1111-4c3b-9d7e-5f0c2b7a1e01";
pub const CLIENT_SECRET: &str = "cs-4b01e7f0a9d24c1b8e6f3a2d1c0b9a8f";
pub const VIEWER_ID: &str = "viewer-client";
pub const OUTSIDER_ID: &str = "outsider-client";
pub const SHORT_ID: &str = "short-ttl-client";
pub const OTHER_SECRET: &str = "another-client-secret";
pub const STRIPE: &str = "sk_test_acme_v1";
pub const MASTER: &str = "bWFzdGVyLWtleS12MQ==";

pub fn identity(id: &str, secret: &str, role: Role, max_ttl: Option<u64>) -> SeedIdentity {
    SeedIdentity {
        client_id: id.into(),
        client_secret: secret.into(),
        access_token_max_ttl: max_ttl,
        role,
        projects: None,
    }
}

/// The project every test starts from: secrets for two tenants and the master key in `dev`,
/// an empty folder for a third tenant, and one identity per role/TTL/membership case.
pub fn seed() -> Seed {
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

/// A running emulator seeded with [`seed`] (or a given config) and a plain HTTP client.
pub struct Env {
    pub base: String,
    pub handle: EmulatorHandle,
    pub http: reqwest::Client,
}

impl Env {
    pub fn emu(&self) -> &Emulator {
        self.handle.emulator()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn login_as(&self, id: &str, secret: &str) -> String {
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

    pub async fn token(&self) -> String {
        self.login_as(CLIENT_ID, CLIENT_SECRET).await
    }

    pub async fn get_secret(
        &self,
        token: &str,
        name: &str,
        query: &[(&str, &str)],
    ) -> (u16, Value) {
        status_json(self.get_secret_raw(token, name, query).await).await
    }

    /// `get_secret`'s response itself, for its headers.
    pub async fn get_secret_raw(
        &self,
        token: &str,
        name: &str,
        query: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut q = vec![("workspaceId", PROJECT), ("environment", "dev")];
        q.extend_from_slice(query);
        self.http
            .get(self.url(&format!("/api/v3/secrets/raw/{name}")))
            .query(&q)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn write(
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

    pub async fn list(&self, token: &str, query: &[(&str, &str)]) -> (u16, Value) {
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

    pub async fn put_faults(&self, faults: Value) -> (u16, Value) {
        let r = self
            .http
            .put(self.url("/_emulator/faults"))
            .json(&faults)
            .send()
            .await
            .unwrap();
        status_json(r).await
    }

    pub fn client_config(&self) -> InfisicalConfig {
        let mut cfg = InfisicalConfig::new(&self.base, CLIENT_ID, CLIENT_SECRET, PROJECT, "dev");
        cfg.request_timeout = Duration::from_secs(3);
        cfg.retry_base_delay = Duration::from_millis(10);
        cfg.retry_max_delay = Duration::from_millis(50);
        cfg.breaker_cooldown = Duration::from_millis(300);
        cfg
    }

    pub fn client(&self) -> InfisicalClient {
        InfisicalClient::new(self.client_config()).unwrap()
    }
}

pub async fn status_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, v)
}

pub async fn start_with(config: EmulatorConfig) -> Env {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (addr, handle) = Emulator::new(config).spawn(addr).await.unwrap();
    Env {
        base: format!("http://{addr}"),
        handle,
        http: reqwest::Client::new(),
    }
}

pub async fn start() -> Env {
    start_with(EmulatorConfig {
        seed: seed(),
        ..Default::default()
    })
    .await
}

/// The error body shape: statusCode, message, error.
pub fn assert_error(v: &Value, status: u16, message: &str, error: &str) {
    assert_eq!(v["statusCode"], status, "{v}");
    assert_eq!(v["message"], message, "{v}");
    assert_eq!(v["error"], error, "{v}");
}

pub fn acme() -> [(&'static str, &'static str); 1] {
    [("secretPath", "/tenants/acme")]
}

pub fn body(path: &str, extra: Value) -> Value {
    let mut b = json!({"workspaceId": PROJECT, "environment": "dev", "secretPath": path});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            b[k] = v;
        }
    }
    b
}
