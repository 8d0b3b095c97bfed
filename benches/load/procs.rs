//! Child processes the bench starts: tenant-vault services and the http-ceiling server.
//! Every child gets a parent-death signal (so a killed bench leaves nothing behind), is
//! killed when its guard is dropped (panic, Ctrl-C), and is stopped with SIGTERM and a
//! bounded wait otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct ChildGuard {
    pub name: String,
    pub child: Option<Child>,
    pub pid: u32,
}

impl ChildGuard {
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Self, String> {
        cmd.kill_on_drop(true);
        // SAFETY: prctl and getppid are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("starting {name}: {e}"))?;
        let pid = child.id().unwrap_or(0);
        Ok(Self {
            name: name.into(),
            child: Some(child),
            pid,
        })
    }

    /// Exited already? (Some(status text))
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                eprintln!(
                    "{} (pid {}) ignored SIGTERM; killing it",
                    self.name, self.pid
                );
                let _ = child.kill().await;
            }
        }
    }

    /// Peak resident set size (VmHWM) and current (VmRSS), in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        };
        Some((field("VmHWM:")?, field("VmRSS:")?))
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// How to run one tenant-vault process.
pub struct ServiceSpec<'a> {
    pub binary: &'a Path,
    pub name: &'a str,
    pub database_url: &'a str,
    pub data_dir: &'a Path,
    pub log_file: PathBuf,
    pub cache_ttl_secs: u64,
    pub cache_max_entries: u64,
    pub db_max_connections: u32,
    /// INFISICAL_* variables (empty: no fallback configured).
    pub infisical: Vec<(String, String)>,
    /// The settings' default rate limits and quotas (`hot-limits`); otherwise they are off,
    /// so the bench measures the vault, not its throttling.
    pub default_limits: bool,
    /// TENANT_VAULT_AUDIT_MODE: `batched` (the default) or `strict`.
    pub audit_mode: &'a str,
}

pub struct Service {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
}

impl Service {
    pub async fn start(spec: ServiceSpec<'_>) -> Result<Self, String> {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let port = free_port()?;
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let log = std::fs::File::options()
                .create(true)
                .append(true)
                .open(&spec.log_file)
                .map_err(|e| format!("{}: {e}", spec.log_file.display()))?;
            let mut cmd = Command::new(spec.binary);
            cmd.arg("serve");
            clear_inherited_settings(&mut cmd);
            cmd.env("DATABASE_URL", spec.database_url)
                .env("TENANT_VAULT_LISTEN", addr.to_string())
                // Rotation needs a source that can make new versions; env cannot.
                .env("TENANT_VAULT_MASTER_KEY_SOURCE", "dev-file")
                .env("TENANT_VAULT_DATA_DIR", spec.data_dir)
                .env(
                    "TENANT_VAULT_CACHE_TTL_SECS",
                    spec.cache_ttl_secs.to_string(),
                )
                .env(
                    "TENANT_VAULT_CACHE_MAX_ENTRIES",
                    spec.cache_max_entries.to_string(),
                )
                .env(
                    "TENANT_VAULT_DB_MAX_CONNECTIONS",
                    spec.db_max_connections.to_string(),
                )
                .env("TENANT_VAULT_AUDIT_MODE", spec.audit_mode)
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log);
            for (k, v) in &spec.infisical {
                cmd.env(k, v);
            }
            if !spec.default_limits {
                for k in [
                    "TENANT_VAULT_RATE_LIMIT_TOKEN_RPS",
                    "TENANT_VAULT_RATE_LIMIT_TENANT_RPS",
                    "TENANT_VAULT_RATE_LIMIT_AUTH_FAILURES_PER_MIN",
                    "TENANT_VAULT_QUOTA_MAX_SECRETS",
                    "TENANT_VAULT_QUOTA_MAX_BYTES",
                ] {
                    cmd.env(k, "0");
                }
            }
            let mut guard = ChildGuard::spawn(spec.name, cmd)?;
            match wait_ready(&mut guard, addr).await {
                Ok(()) => return Ok(Self { guard, addr }),
                Err(e) => {
                    guard.stop().await;
                    last_err = e;
                    let tail = tail(&spec.log_file, 20);
                    if !tail.contains("Address already in use") {
                        return Err(format!("{last_err}; last log lines:\n{tail}"));
                    }
                }
            }
        }
        Err(last_err)
    }
}

/// Our own settings from the bench's environment must not leak into the children.
fn clear_inherited_settings(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TENANT_VAULT_") || k.starts_with("INFISICAL_") || k == "DATABASE_URL" {
            cmd.env_remove(k.as_ref());
        }
    }
}

async fn wait_ready(guard: &mut ChildGuard, addr: SocketAddr) -> Result<(), String> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{addr}/readyz");
    loop {
        if let Some(status) = guard.exited() {
            return Err(format!("{} exited during start-up ({status})", guard.name));
        }
        if let Ok(r) = client
            .get(&url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{} not ready on {addr} after 60 s", guard.name));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Starts the http-ceiling server: this very bench binary re-executed in server mode, so
/// it runs in its own process and runtime exactly as tenant-vault does.
pub async fn start_ceiling(
    map_file: &Path,
    log_file: &Path,
) -> Result<(ChildGuard, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let log = std::fs::File::create(log_file).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(exe);
    cmd.arg("--serve-http-ceiling")
        .arg(map_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    let mut guard = ChildGuard::spawn("http-ceiling", cmd)?;
    let stdout = guard
        .child
        .as_mut()
        .and_then(|c| c.stdout.take())
        .ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .map_err(|_| "http-ceiling did not start within 30 s".to_string())?
        .map_err(|e| e.to_string())?
        .ok_or("http-ceiling exited before listening")?;
    let addr = line
        .strip_prefix("LISTENING ")
        .and_then(|a| a.trim().parse().ok())
        .ok_or_else(|| format!("unexpected line from http-ceiling: {line}"))?;
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((guard, addr))
}

/// CPU time of the bench's process tree, per part (tenant-vault, postgres, http-ceiling,
/// openbao, and the load generator itself), to show where a phase's CPU went on a machine whose cores
/// everything shares.
pub struct CpuSnapshot {
    ticks: std::collections::HashMap<u32, (String, u64)>,
}

fn stat_of(pid: u32) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

impl CpuSnapshot {
    pub fn take() -> Self {
        let me = std::process::id();
        let mut procs = Vec::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                    if let Some((ppid, t)) = stat_of(pid) {
                        procs.push((pid, ppid, t));
                    }
                }
            }
        }
        let parent: std::collections::HashMap<u32, u32> =
            procs.iter().map(|&(p, pp, _)| (p, pp)).collect();
        let mut ticks = std::collections::HashMap::new();
        for &(pid, _, t) in &procs {
            // Walk up to our direct child (or ourselves).
            let mut cur = pid;
            let mut top = None;
            for _ in 0..64 {
                if cur == me {
                    top = Some(me);
                    break;
                }
                match parent.get(&cur) {
                    Some(&pp) if pp == me => {
                        top = Some(cur);
                        break;
                    }
                    Some(&pp) if pp > 1 => cur = pp,
                    _ => break,
                }
            }
            let Some(top) = top else { continue };
            let label = if top == me {
                "load generator".to_string()
            } else {
                let comm = std::fs::read_to_string(format!("/proc/{top}/comm"))
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                match comm.as_str() {
                    "postgres" | "tenant-vault" => comm,
                    "bao" => "openbao".into(),
                    c if c.starts_with("load") => "http-ceiling".into(),
                    _ => "other".into(),
                }
            };
            ticks.insert(pid, (label, t));
        }
        Self { ticks }
    }

    /// CPU seconds used by each part since `earlier`.
    pub fn cpu_secs_since(&self, earlier: &CpuSnapshot) -> std::collections::BTreeMap<String, f64> {
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let mut out = std::collections::BTreeMap::new();
        for (pid, (label, t)) in &self.ticks {
            let before = earlier.ticks.get(pid).map_or(0, |(_, b)| *b);
            *out.entry(label.clone()).or_insert(0.0) += t.saturating_sub(before) as f64 / hz;
        }
        out
    }
}
