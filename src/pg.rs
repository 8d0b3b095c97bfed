//! A private PostgreSQL cluster run from the machine's PostgreSQL binaries, for
//! `tenant-vault dev` (a reused cluster under the data dir) and the integration tests
//! (one throwaway cluster per test process).
//!
//! Layout of a cluster dir `D`: `D/data` is PGDATA, `D/postgres.log` the server log
//! (appended across runs), `D/port` the port remembered from the last successful start,
//! and `D` also holds the Unix socket (`D/.s.PGSQL.<port>`; disabled if the path is too long).
//! With `ssl`, `D/tls` holds a local CA (`ca.crt`, `ca.key`) and the server's certificate
//! (`server.crt`, `server.key`, issued anew at each start for 127.0.0.1 and localhost).
//!
//! `postgres` runs as a direct child of a dedicated thread with `PR_SET_PDEATHSIG=SIGINT`, in
//! its own process group, so it never outlives this process (even after SIGKILL) and a
//! terminal Ctrl-C does not reach it. When running as root, `initdb`/`postgres` run as the
//! `postgres` user and `D` is chowned to it; every ancestor of `D` must be searchable by that
//! user (a fresh temp dir directly under /tmp or /var/tmp is fine).
//!
//! Longer than most files (about 650 lines of code, 170 of tests) and kept whole on purpose:
//! it is one concern, running a postmaster safely, and its parts (the `postgres` user switch,
//! the supervising thread, readiness, shutdown) share the cluster layout and the process
//! rules above; the tests that kill processes to check that supervision belong beside it.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

const START_TIMEOUT: Duration = Duration::from_secs(60);
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL server binaries (initdb, postgres) not found; searched {searched}. \
         Install them with `apt-get install postgresql` (Debian/Ubuntu), or put their bin directory on PATH"
    )]
    NotFound { searched: String },
    #[error(
        "running as root, but there is no `postgres` system user to run PostgreSQL as (it refuses to run as root); \
         install it with `apt-get install postgresql`, or run as a non-root user"
    )]
    NoPostgresUser,
    #[error(
        "PostgreSQL runs as the `postgres` user (we are root), but that user cannot reach {dir}: \
         {ancestor} is not searchable by it. Use a data dir under /var/tmp or /tmp instead, or `chmod o+x {ancestor}`",
        dir = dir.display(), ancestor = ancestor.display()
    )]
    Unreachable { dir: PathBuf, ancestor: PathBuf },
    #[error(
        "a PostgreSQL server is already running on this data dir (pid {pid}); stop it (`kill -INT {pid}`) or use another dir"
    )]
    AlreadyRunning { pid: i32 },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("initdb failed ({status}); its output:\n{output}")]
    Initdb { status: String, output: String },
    #[error("PostgreSQL did not start: {reason}. Server log {log}, last lines:\n{tail}", log = log.display())]
    Start {
        reason: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "PostgreSQL (pid {pid}) did not exit after SIGINT and SIGQUIT; kill it by hand: `kill -9 {pid}`"
    )]
    StopTimeout { pid: u32 },
    #[error("cannot make PostgreSQL's TLS certificate: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Io { what, source }
}

/// Where the PostgreSQL server binaries live.
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub bindir: PathBuf,
}

impl PgBinaries {
    /// Finds `initdb` and `postgres`: PATH first (following symlinks to the real bin dir),
    /// then `pg_config --bindir`, then the highest `/usr/lib/postgresql/<version>/bin`.
    pub fn locate() -> Result<Self, PgError> {
        let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
        let mut searched = Vec::new();
        if let Some(path) = std::env::var_os("PATH") {
            if let Some(d) = std::env::split_paths(&path).find(|d| has(d)) {
                let real = fs::canonicalize(d.join("postgres")).ok();
                let real = real.and_then(|p| p.parent().map(Path::to_path_buf));
                return Ok(Self {
                    bindir: real.filter(|r| has(r)).unwrap_or(d),
                });
            }
            searched.push(format!("PATH ({})", path.to_string_lossy()));
        }
        match std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
        {
            Ok(out) if out.status.success() => {
                let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if has(&d) {
                    return Ok(Self { bindir: d });
                }
                searched.push(format!("`pg_config --bindir` ({})", d.display()));
            }
            _ => searched.push("`pg_config --bindir` (no pg_config)".into()),
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort();
        if let Some((_, d)) = versions.into_iter().rev().find(|(_, d)| has(d)) {
            return Ok(Self { bindir: d });
        }
        searched.push("/usr/lib/postgresql/<version>/bin".into());
        Err(PgError::NotFound {
            searched: searched.join(", "),
        })
    }
}

/// How to run a cluster. PGDATA is `dir/data`; see the module docs for the layout.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub dir: PathBuf,
    /// `None`: reuse the port remembered in `dir` (unless it is taken now), else pick a free one.
    pub port: Option<u16>,
    /// Tests only: fsync, synchronous_commit and full_page_writes off (and initdb --no-sync).
    pub throwaway: bool,
    pub max_connections: u32,
    /// `ssl=on` with a certificate from a local CA in `dir/tls` (see [`PostgresCluster::ca_cert`]),
    /// so clients can connect with `sslmode=verify-full`; plain connections stay allowed.
    pub ssl: bool,
}

#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// `Some(postgres user)` when we are root (the binaries must then run as that user).
fn run_as() -> Result<Option<RunAs>, PgError> {
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // SAFETY: getpwnam_r writes only into `pwd`/`buf`, which outlive the call.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut res = std::ptr::null_mut();
    let name = c"postgres".as_ptr();
    let rc = unsafe { libc::getpwnam_r(name, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut res) };
    if rc != 0 || res.is_null() {
        return Err(PgError::NoPostgresUser);
    }
    Ok(Some(RunAs {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    }))
}

/// The first existing ancestor of `dir` (not `dir` itself) that `who` cannot search.
fn unreachable_ancestor(dir: &Path, who: RunAs) -> Option<PathBuf> {
    let blocked = |a: &Path| match fs::metadata(a) {
        Ok(m) if m.uid() == who.uid => m.mode() & 0o100 == 0,
        Ok(m) if m.gid() == who.gid => m.mode() & 0o010 == 0,
        Ok(m) => m.mode() & 0o001 == 0,
        Err(_) => false, // does not exist yet: we create it
    };
    dir.ancestors()
        .skip(1)
        .find(|a| blocked(a))
        .map(Path::to_path_buf)
}

fn check_reach(dir: &Path, who: RunAs) -> Result<(), PgError> {
    match unreachable_ancestor(dir, who) {
        Some(ancestor) => Err(PgError::Unreachable {
            dir: dir.to_path_buf(),
            ancestor,
        }),
        None => Ok(()),
    }
}

/// Whether the user PostgreSQL will run as can reach `dir` (always true unless we are root).
/// Missing parts of the path count as reachable (they are created world-searchable with the
/// usual umask). Callers can use this to pick a fallback such as /var/tmp.
pub fn postgres_can_reach(dir: &Path) -> bool {
    match run_as() {
        Ok(None) => true,
        Ok(Some(who)) => {
            let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            unreachable_ancestor(&abs, who).is_none()
        }
        Err(_) => false,
    }
}

/// Alive and not a zombie.
fn pid_alive(pid: i32) -> bool {
    let errno = || io::Error::last_os_error().raw_os_error();
    if pid <= 0 || (unsafe { libc::kill(pid, 0) } != 0 && errno() != Some(libc::EPERM)) {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            s.rsplit(')')
                .next()
                .and_then(|r| r.trim_start().chars().next())
                != Some('Z')
        }
        Err(_) => !Path::new("/proc/self/stat").exists(),
    }
}

/// The pid of a live postmaster that holds `data` (per its `postmaster.pid`), if any.
fn live_postmaster(data: &Path) -> Option<i32> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_else(|_| "post".into());
    (pid_alive(pid) && comm.starts_with("post")).then_some(pid)
}

fn free_port() -> Result<u16, PgError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(io_err("picking a free port"))?;
    Ok(l.local_addr()
        .map_err(io_err("picking a free port"))?
        .port())
}

fn log_tail(path: &Path, from: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[(from as usize).min(bytes.len())..]).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

async fn initdb(
    bin: &PgBinaries,
    opts: &ClusterOptions,
    who: Option<RunAs>,
) -> Result<(), PgError> {
    let data = opts.dir.join("data");
    if data.exists() {
        // No PG_VERSION: the leftover of an interrupted initdb.
        fs::remove_dir_all(&data)
            .map_err(io_err(format!("removing incomplete {}", data.display())))?;
    }
    tracing::info!(dir = %data.display(), "creating PostgreSQL cluster (initdb)");
    let mut cmd = tokio::process::Command::new(bin.bindir.join("initdb"));
    cmd.arg("-D").arg(&data).args([
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-locale",
    ]);
    if opts.throwaway {
        cmd.arg("--no-sync");
    }
    cmd.current_dir(&opts.dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(w) = who {
        cmd.uid(w.uid).gid(w.gid);
    }
    let out = match tokio::time::timeout(INITDB_TIMEOUT, cmd.output()).await {
        Err(_) => {
            return Err(PgError::Initdb {
                status: "timed out".into(),
                output: String::new(),
            });
        }
        Ok(r) => r.map_err(io_err(format!("running {}/initdb", bin.bindir.display())))?,
    };
    if !out.status.success() {
        let output = String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).into_owned();
        return Err(PgError::Initdb {
            status: out.status.to_string(),
            output,
        });
    }
    Ok(())
}

/// Spawns `cmd` from a dedicated thread that then waits for it (PDEATHSIG is tied to the
/// spawning thread, so that thread must live as long as the child). `exited` turns true
/// before the child is reaped, so a pid signalled while it is false cannot be recycled.
fn spawn_supervised(
    mut cmd: std::process::Command,
    exited: Arc<Mutex<bool>>,
) -> io::Result<(
    oneshot::Receiver<io::Result<u32>>,
    oneshot::Receiver<ExitStatus>,
)> {
    let (pid_tx, pid_rx) = oneshot::channel();
    let (exit_tx, exit_rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("postmaster".into())
        .spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => return drop(pid_tx.send(Err(e))),
            };
            if pid_tx.send(Ok(child.id())).is_err() {
                // `start` was cancelled before it took ownership: don't leave a server behind.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
            }
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let flags = libc::WEXITED | libc::WNOWAIT;
            while unsafe { libc::waitid(libc::P_PID, child.id(), &mut info, flags) } != 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
            *exited.lock().unwrap_or_else(|e| e.into_inner()) = true;
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        })?;
    Ok((pid_rx, exit_rx))
}

/// One minimal protocol round trip: the server answers a startup packet with an
/// authentication message ('R') once it accepts connections, with an error before.
async fn accepts_connections(port: u16) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let params = b"user\0postgres\0database\0postgres\0\0";
        let mut msg = ((8 + params.len()) as u32).to_be_bytes().to_vec();
        msg.extend(196608u32.to_be_bytes()); // protocol 3.0
        msg.extend(params);
        s.write_all(&msg).await?;
        let tag = s.read_u8().await?;
        let _ = s.write_all(&[b'X', 0, 0, 0, 4]).await; // Terminate
        Ok::<_, io::Error>(tag == b'R')
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), probe).await,
        Ok(Ok(true))
    )
}

/// Our postmaster's `postmaster.pid` says it is up (pg_ctl's own readiness check).
fn pidfile_ready(data: &Path, pid: u32) -> bool {
    let text = fs::read_to_string(data.join("postmaster.pid")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
        && lines.get(7).is_none_or(|s| s.trim() == "ready")
}

/// The CA in `tls` (kept across starts) and a new server certificate from it for 127.0.0.1
/// and localhost. PostgreSQL insists that its key is private to the user it runs as.
fn server_certificate(tls: &Path, who: Option<RunAs>) -> Result<(), PgError> {
    use crate::tls::{write_file, write_private, LocalCa};
    fs::create_dir_all(tls).map_err(io_err(format!("creating {}", tls.display())))?;
    let (ca, _) = LocalCa::load_or_create(tls, "tenant-vault test PostgreSQL CA")?;
    let server = ca.issue_server(&["127.0.0.1", "localhost"])?;
    let (crt, key) = (tls.join("server.crt"), tls.join("server.key"));
    write_private(&key, server.key_pem.as_bytes())?;
    write_file(&crt, server.cert_pem.as_bytes(), 0o600)?;
    if let Some(w) = who {
        for p in [tls, crt.as_path(), key.as_path()] {
            std::os::unix::fs::chown(p, Some(w.uid), Some(w.gid))
                .map_err(io_err(format!("chown {} to postgres", p.display())))?;
        }
    }
    Ok(())
}

/// `postgres` for `opts` on 127.0.0.1:`port`, logging to `log`, as `who`, dying with its parent.
fn postmaster_command(
    bin: &PgBinaries,
    opts: &ClusterOptions,
    port: u16,
    who: Option<RunAs>,
    log: fs::File,
) -> io::Result<std::process::Command> {
    // The socket path must fit in sun_path (108 bytes) and be a plain list item; else no socket.
    let d = opts.dir.to_string_lossy();
    let plain = d.len() < 88 && !d.contains([',', '"', ' ']);
    let mut settings = vec![
        format!("unix_socket_directories={}", if plain { &d } else { "" }),
        format!("max_connections={}", opts.max_connections),
        "listen_addresses=127.0.0.1".into(),
        "logging_collector=off".into(),
    ];
    if opts.ssl {
        let tls = opts.dir.join("tls");
        settings.extend([
            "ssl=on".into(),
            format!("ssl_cert_file={}", tls.join("server.crt").display()),
            format!("ssl_key_file={}", tls.join("server.key").display()),
        ]);
    }
    if opts.throwaway {
        settings.extend(
            [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ]
            .map(Into::into),
        );
    }
    let mut cmd = std::process::Command::new(bin.bindir.join("postgres"));
    cmd.arg("-D")
        .arg(opts.dir.join("data"))
        .arg("-p")
        .arg(port.to_string());
    cmd.args(settings.iter().flat_map(|s| ["-c", s]));
    cmd.current_dir(&opts.dir)
        .env_remove("PGDATA")
        .process_group(0);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(w) = who {
        cmd.uid(w.uid).gid(w.gid);
    }
    let parent = unsafe { libc::getpid() };
    // SAFETY: only async-signal-safe calls. std runs this after setgid/setuid, as it must be:
    // a credential change clears the parent-death signal.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH)); // parent already gone
            }
            Ok(())
        })
    };
    Ok(cmd)
}

/// A running postmaster. Dropping it without `stop` sends SIGINT (no wait).
#[derive(Debug)]
pub struct PostgresCluster {
    dir: PathBuf,
    port: u16,
    pid: u32,
    exited: Arc<Mutex<bool>>,
    exit_rx: Option<oneshot::Receiver<ExitStatus>>,
}

impl PostgresCluster {
    /// initdb if `opts.dir` has no cluster yet (superuser `postgres`, trust auth for
    /// loopback/socket only, UTF8), start `postgres` on 127.0.0.1:port and wait (bounded)
    /// until it accepts connections.
    pub async fn start(binaries: &PgBinaries, mut opts: ClusterOptions) -> Result<Self, PgError> {
        let who = run_as()?;
        opts.dir = std::path::absolute(&opts.dir).map_err(io_err("resolving the cluster dir"))?;
        if let Some(w) = who {
            check_reach(&opts.dir, w)?;
        }
        let what = format!("creating {}", opts.dir.display());
        fs::create_dir_all(&opts.dir).map_err(io_err(what))?;
        opts.dir = fs::canonicalize(&opts.dir).map_err(io_err("resolving the cluster dir"))?;
        let dir = opts.dir.clone();
        let (data, log_path, port_file) =
            (dir.join("data"), dir.join("postgres.log"), dir.join("port"));
        let chown = |p: &Path| match who {
            Some(w) => std::os::unix::fs::chown(p, Some(w.uid), Some(w.gid))
                .map_err(io_err(format!("chown {} to postgres", p.display()))),
            None => Ok(()),
        };
        if let Some(w) = who {
            check_reach(&dir, w)?;
            chown(&dir)?;
        }
        if let Some(pid) = live_postmaster(&data) {
            return Err(PgError::AlreadyRunning { pid });
        }
        if !data.join("PG_VERSION").exists() {
            initdb(binaries, &opts, who).await?;
        }
        if opts.ssl {
            server_certificate(&dir.join("tls"), who)?;
        }
        let remembered = fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let port_free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        let (mut port, picked) = match (opts.port, remembered) {
            (Some(p), _) => (p, false),
            (None, Some(p)) if port_free(p) => (p, false),
            (None, Some(p)) => {
                tracing::warn!(
                    port = p,
                    "remembered PostgreSQL port is taken, picking another"
                );
                (free_port()?, true)
            }
            (None, None) => (free_port()?, true),
        };
        let log = |e| io_err(format!("opening {}", log_path.display()))(e);
        for attempt in 1.. {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(log)?;
            chown(&log_path)?;
            let offset = file.metadata().map_err(log)?.len();
            let cmd = postmaster_command(binaries, &opts, port, who, file).map_err(log)?;
            let exited = Arc::new(Mutex::new(false));
            let spawn_err =
                |e| io_err(format!("starting {}/postgres", binaries.bindir.display()))(e);
            let (pid_rx, exit_rx) = spawn_supervised(cmd, exited.clone()).map_err(spawn_err)?;
            let gone = || io::Error::other("supervisor thread died");
            let pid = pid_rx
                .await
                .unwrap_or_else(|_| Err(gone()))
                .map_err(spawn_err)?;
            let exit_rx = Some(exit_rx);
            let mut cluster = Self {
                dir: dir.clone(),
                port,
                pid,
                exited,
                exit_rx,
            };
            let Err(reason) = cluster.wait_ready().await else {
                let _ = fs::write(&port_file, format!("{port}\n"));
                tracing::info!(port, pid, dir = %dir.display(), "PostgreSQL is up");
                return Ok(cluster);
            };
            let _ = cluster.shutdown().await;
            let tail = log_tail(&log_path, offset);
            if !(picked && attempt < 3 && tail.contains("could not bind")) {
                return Err(PgError::Start {
                    reason,
                    log: log_path,
                    tail,
                });
            }
            port = free_port()?; // lost a race for the port we picked: pick another
        }
        unreachable!()
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let data = self.dir.join("data");
        loop {
            if let Some(rx) = self.exit_rx.as_mut() {
                let status = match rx.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => None,
                    Ok(status) => Some(status.to_string()),
                    Err(_) => Some("unknown status".into()),
                };
                if let Some(status) = status {
                    self.exit_rx = None; // already reaped: nothing to stop
                    return Err(format!("postgres exited during startup ({status})"));
                }
            }
            if pidfile_ready(&data, self.pid) && accepts_connections(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                let secs = START_TIMEOUT.as_secs();
                return Err(format!(
                    "not accepting connections on 127.0.0.1:{} after {secs}s",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The cluster dir (PGDATA is `dir()/data`, the log `dir()/postgres.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate that signed the server's, when started with `ssl`: a client's
    /// `sslrootcert` for `sslmode=verify-full`.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        let ca = self.dir.join("tls").join("ca.crt");
        ca.is_file().then_some(ca)
    }

    /// `postgres://postgres@127.0.0.1:{port}/{database}`
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    fn signal(&self, sig: libc::c_int) {
        if !*self.exited.lock().unwrap_or_else(|e| e.into_inner()) {
            unsafe { libc::kill(self.pid as libc::pid_t, sig) };
        }
    }

    async fn shutdown(&mut self) -> Result<(), PgError> {
        let Some(mut rx) = self.exit_rx.take() else {
            return Ok(());
        };
        self.signal(libc::SIGINT);
        if tokio::time::timeout(STOP_TIMEOUT, &mut rx).await.is_err() {
            tracing::warn!(
                pid = self.pid,
                "PostgreSQL ignored fast shutdown, sending SIGQUIT"
            );
            self.signal(libc::SIGQUIT);
            if tokio::time::timeout(QUIT_TIMEOUT, &mut rx).await.is_err() {
                return Err(PgError::StopTimeout { pid: self.pid });
            }
        }
        Ok(())
    }

    /// Fast shutdown (SIGINT) and wait for the postmaster to exit; SIGQUIT after 30 s.
    pub async fn stop(mut self) -> Result<(), PgError> {
        self.shutdown().await
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        if self.exit_rx.is_some() {
            self.signal(libc::SIGINT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    const CHILD_ENV: &str = "TENANT_VAULT_PG_TEST_CHILD_DIR";

    fn opts(dir: &Path, port: Option<u16>) -> ClusterOptions {
        let dir = dir.to_path_buf();
        ClusterOptions {
            dir,
            port,
            throwaway: true,
            max_connections: 300,
            ssl: false,
        }
    }

    async fn start(dir: &Path, port: Option<u16>) -> Result<PostgresCluster, PgError> {
        PostgresCluster::start(&PgBinaries::locate().unwrap(), opts(dir, port)).await
    }

    fn psql(c: &PostgresCluster, sql: &str) -> String {
        let bindir = PgBinaries::locate().unwrap().bindir;
        let exe = Some(bindir.join("psql")).filter(|p| p.exists());
        let mut cmd = std::process::Command::new(exe.unwrap_or_else(|| "psql".into()));
        cmd.args([
            "-XqAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "postgres",
            "-d",
            &c.url("postgres"),
        ]);
        let out = cmd.args(["-c", sql]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "psql: {err}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn port_open(port: u16) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    #[tokio::test]
    async fn start_stop_restart_keeps_port_and_data() {
        let tmp = tempfile::tempdir().unwrap();
        let c = start(tmp.path(), None).await.unwrap();
        let (port, pid) = (c.port(), c.pid());
        assert_eq!(psql(&c, "SELECT 1"), "1");
        psql(&c, "CREATE TABLE t (x int); INSERT INTO t VALUES (42)");
        let pgid = unsafe { libc::getpgid(pid as i32) };
        assert_eq!(
            pgid, pid as i32,
            "postmaster must lead its own process group"
        );

        let err = start(tmp.path(), None).await.expect_err("must refuse");
        assert!(
            matches!(err, PgError::AlreadyRunning { pid: p } if p as u32 == pid),
            "{err}"
        );
        assert!(err.to_string().contains("already running on this data dir"));

        c.stop().await.unwrap();
        assert!(!port_open(port), "port {port} still open after stop");
        assert!(!pid_alive(pid as i32), "postmaster {pid} alive after stop");

        // A port taken by someone else: clear error with the server log's tail.
        let taken = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let err = start(tmp.path(), Some(taken_port))
            .await
            .expect_err("port is taken");
        let msg = err.to_string();
        assert!(
            msg.contains("postgres.log") && msg.contains("could not bind"),
            "{msg}"
        );

        // A stale postmaster.pid (dead pid) left by a killed run must not block a restart.
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        dead.wait().unwrap();
        let stale = format!("{}\n{}\n", dead.id(), tmp.path().join("data").display());
        fs::write(tmp.path().join("data/postmaster.pid"), stale).unwrap();

        let c = start(tmp.path(), None).await.unwrap();
        assert_eq!(c.port(), port, "remembered port not reused");
        assert_eq!(psql(&c, "SELECT x FROM t"), "42");
        c.stop().await.unwrap();
    }

    /// Run by `postmaster_dies_with_killed_parent` in a child process: start, report, sleep.
    #[test]
    #[ignore = "a child process of postmaster_dies_with_killed_parent, which runs it"]
    fn child_helper_process() {
        let dir = std::env::var_os(CHILD_ENV)
            .expect("run by postmaster_dies_with_killed_parent, which sets the cluster dir");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let c = rt.block_on(start(Path::new(&dir), None)).unwrap();
        println!("\nREADY {} {}", c.pid(), c.port());
        std::thread::sleep(Duration::from_secs(120));
    }

    #[tokio::test]
    async fn postmaster_dies_with_killed_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "pg::tests::child_helper_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = io::BufReader::new(child.stdout.take().unwrap());
        let ready = stdout.lines().map_while(Result::ok).find_map(|l| {
            let (pid, port) = l.strip_prefix("READY ")?.split_once(' ')?;
            Some((pid.parse::<i32>().ok()?, port.parse::<u16>().ok()?))
        });
        let _ = child.kill(); // SIGKILL
        child.wait().unwrap();
        let (pid, port) = ready.expect("helper did not start a cluster");
        let deadline = Instant::now() + Duration::from_secs(10);
        while pid_alive(pid) {
            assert!(
                Instant::now() < deadline,
                "postmaster {pid} outlived its SIGKILLed parent"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!port_open(port));
        // The dir is reusable right away, on the same port.
        let c = start(tmp.path(), None).await.unwrap();
        assert_eq!(c.port(), port);
        c.stop().await.unwrap();
    }

    #[tokio::test]
    async fn unreachable_dir_is_reported_when_root() {
        if unsafe { libc::geteuid() } != 0 {
            return eprintln!("skipped: only meaningful as root");
        }
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(tmp.path()).unwrap();
        fs::set_permissions(&base, fs::Permissions::from_mode(0o700)).unwrap(); // like /root
        let dir = base.join("sub/cluster");
        assert!(!postgres_can_reach(&dir));
        assert!(postgres_can_reach(Path::new("/var/tmp/tenant-vault-pg")));
        let err = start(&dir, None).await.expect_err("must fail");
        let msg = err.to_string();
        assert!(
            matches!(&err, PgError::Unreachable { ancestor, .. } if *ancestor == base),
            "{msg}"
        );
        assert!(
            msg.contains("/var/tmp") && msg.contains(&*dir.to_string_lossy()),
            "{msg}"
        );
        assert!(
            !base.join("sub").exists(),
            "nothing created under an unreachable dir"
        );
    }
}
