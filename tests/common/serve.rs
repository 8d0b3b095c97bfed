//! A real `tenant-vault serve` process for end-to-end tests (TLS, the HTTP edge, memory).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tenant-vault");
/// A DATABASE_URL nothing listens on: `serve` answers `/healthz` without a database.
pub const NO_DATABASE: &str = "postgres://postgres@127.0.0.1:1/none";

/// A running `tenant-vault serve`, killed on drop.
pub struct Serve {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: mpsc::Receiver<String>,
    /// What it logged up to and including the listening line.
    pub startup: String,
}

impl Serve {
    /// Starts `serve` with `args` (plus a master key, a data dir and no database, which
    /// `env` may override) and waits for its listening line; `Err(stderr)` if it exits first.
    pub fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Serve, String> {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(args)
            .args(["--log-format", "json", "--skip-migrations"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", NO_DATABASE)
            .env("TENANT_VAULT_MASTER_KEY_SOURCE", "env")
            .env("TENANT_VAULT_MASTER_KEY", "c".repeat(64))
            .env("TENANT_VAULT_DATA_DIR", dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            match log.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        continue;
                    };
                    let message = v["fields"]["message"].as_str().unwrap_or("");
                    if message.contains("tenant-vault listening") {
                        let addr: SocketAddr =
                            v["fields"]["addr"].as_str().unwrap().parse().unwrap();
                        let addr = SocketAddr::from(([127, 0, 0, 1], addr.port()));
                        return Ok(Serve {
                            child,
                            addr,
                            log,
                            startup: seen,
                        });
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if child.try_wait().unwrap().is_some() {
                        // Exited: collect what it said last.
                        while let Ok(line) = log.recv_timeout(Duration::from_millis(200)) {
                            seen.push_str(&line);
                            seen.push('\n');
                        }
                        return Err(seen);
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.wait();
                    return Err(seen);
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("serve did not report listening within 60 s; it said:\n{seen}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Log lines so far.
    pub fn drain_log(&self) -> String {
        self.log.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
