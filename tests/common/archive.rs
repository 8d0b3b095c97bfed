//! A real OpenBao for the archive tests: the `bao` binary on a free port with file storage
//! and the file audit device, set up with `archive init`'s code against its root token.

use std::sync::Arc;
use std::time::Duration;

use tenant_vault::app::App;
use tenant_vault::archive::admin::{self, InitOutcome, InitRequest};
use tenant_vault::archive::server::{self, LocalBao};
use tenant_vault::archive::{ArchiveClient, ArchiveConfig};
use tenant_vault::config::ServiceArgs;
use tenant_vault::keys::DevFileSource;

use super::{fresh_database, TestApp};

pub const MOUNT: &str = "tenant-vault-archive";

pub struct TestBao {
    pub bao: LocalBao,
    pub init: InitOutcome,
    pub dir: tempfile::TempDir,
}

impl TestBao {
    /// Role tokens live `token_ttl` (renewable up to four times that).
    pub async fn start(token_ttl: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = server::locate().expect("the bao binary (scripts/install-deps)");
        let bao = LocalBao::start(&bin, dir.path(), None).await.unwrap();
        let init = admin::init(&InitRequest {
            addr: bao.url(),
            token: bao.root_token.clone(),
            ca_cert_pem: None,
            mount: MOUNT.into(),
            policy: MOUNT.into(),
            role: MOUNT.into(),
            retention: Duration::from_secs(1825 * 86_400),
            token_ttl,
            token_max_ttl: token_ttl * 4,
        })
        .await
        .unwrap();
        Self { bao, init, dir }
    }

    pub fn config(&self) -> ArchiveConfig {
        let mut cfg = ArchiveConfig::new(
            &self.bao.url(),
            MOUNT,
            &self.init.role_id,
            self.init.secret_id.clone(),
        );
        cfg.request_timeout = Duration::from_secs(3);
        cfg.breaker_cooldown = Duration::from_millis(500);
        cfg
    }

    pub fn client(&self) -> ArchiveClient {
        ArchiveClient::new(self.config()).unwrap()
    }

    /// A request with the root token, as an operator would look (status, JSON).
    pub async fn root(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::new()
            .request(method, format!("{}/v1/{path}", self.bao.url()))
            .header("X-Vault-Token", self.bao.root_token.expose())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    pub fn audit_log(&self) -> String {
        std::fs::read_to_string(&self.bao.audit_log).unwrap_or_default()
    }
}

impl TestApp {
    /// The application with the cold vault on, archiving to `bao`.
    pub async fn with_archive(bao: &TestBao, service: ServiceArgs) -> Self {
        let (pool, db_url) = fresh_database().await;
        let data_dir = tempfile::tempdir().unwrap();
        let source = Arc::new(DevFileSource::new(data_dir.path().to_path_buf()));
        let parts = tenant_vault::app::Parts::keys_only(source).with_archive(Some(bao.client()));
        let app = App::build_with(pool.clone(), parts, data_dir.path(), &service)
            .await
            .unwrap();
        Self::from_app(app, pool, db_url, Arc::new(data_dir), service).await
    }
}
