//! The measured load generator: `concurrency` workers, each owning one keep-alive HTTP/1.1
//! connection (hyper's connection API, no pool, no locks between workers), closed loop,
//! for a bounded time and a bounded number of requests. Each worker records latencies in
//! its own HDR histogram; they are merged at the end.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

/// No single request may take longer than this; one that does counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Hard cap on requests per worker and phase, on top of the duration (bounded loops).
const MAX_REQUESTS_PER_WORKER: u64 = 5_000_000;

/// One request a workload asks for.
pub struct Req {
    pub method: Method,
    pub path: String,
    pub auth: HeaderValue,
    /// JSON body (PUT).
    pub body: Option<Bytes>,
    /// The `x-secret-source` a successful answer must carry (None: any).
    pub expect_source: Option<&'static str>,
}

/// Produces the next request for a worker; `None` ends that worker early (a finite key set).
pub type Workload = Arc<dyn Fn(&mut StdRng) -> Option<Req> + Send + Sync>;

#[derive(Debug, Clone, Serialize)]
pub struct PhaseStats {
    pub requests: u64,
    pub errors: u64,
    pub elapsed_s: f64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Answers by `x-secret-source` (GETs only).
    pub sources: BTreeMap<String, u64>,
    /// Answers whose source differed from the one expected (not errors: a hot read that
    /// missed the cache is still a correct read). Reported so the phase's nature is visible.
    pub unexpected_source: u64,
    /// The first few errors, for the report.
    pub error_samples: Vec<String>,
    /// Average cores used during the phase by each part of the bench's process tree.
    pub cpu_cores: BTreeMap<String, f64>,
}

impl PhaseStats {
    pub fn from_parts(
        hist: &Histogram<u64>,
        requests: u64,
        errors: u64,
        elapsed: Duration,
        sources: BTreeMap<String, u64>,
        unexpected_source: u64,
        error_samples: Vec<String>,
    ) -> Self {
        let ms = |ns: u64| ns as f64 / 1e6;
        let q = |q: f64| {
            if hist.is_empty() {
                0.0
            } else {
                ms(hist.value_at_quantile(q))
            }
        };
        let elapsed_s = elapsed.as_secs_f64();
        Self {
            requests,
            errors,
            elapsed_s,
            rps: if elapsed_s > 0.0 {
                requests as f64 / elapsed_s
            } else {
                0.0
            },
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            p999_ms: q(0.999),
            max_ms: if hist.is_empty() { 0.0 } else { ms(hist.max()) },
            mean_ms: if hist.is_empty() {
                0.0
            } else {
                hist.mean() / 1e6
            },
            sources,
            unexpected_source,
            error_samples,
            cpu_cores: BTreeMap::new(),
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 ns .. 120 s, 3 significant digits.
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("valid histogram bounds")
}

struct WorkerResult {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    sources: BTreeMap<String, u64>,
    unexpected_source: u64,
    error_samples: Vec<String>,
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// The outcome of one request: Ok(source header) or Err(description).
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    req: &Req,
) -> Result<Option<String>, (String, bool)> {
    let mut builder = Request::builder()
        .method(req.method.clone())
        .uri(req.path.as_str())
        .header(HOST, "127.0.0.1")
        .header(AUTHORIZATION, req.auth.clone());
    if req.body.is_some() {
        builder = builder.header(CONTENT_TYPE, "application/json");
    }
    let request = builder
        .body(Full::new(req.body.clone().unwrap_or_default()))
        .map_err(|e| (format!("request: {e}"), false))?;
    sender
        .ready()
        .await
        .map_err(|e| (format!("connection: {e}"), true))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| (format!("send: {e}"), true))?;
    let status = response.status();
    let source = response
        .headers()
        .get("x-secret-source")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| (format!("body: {e}"), true))?
        .to_bytes();
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        return Err((
            format!("{} {}: HTTP {status} {text}", req.method, req.path),
            false,
        ));
    }
    Ok(source)
}

async fn worker(
    addr: SocketAddr,
    workload: Workload,
    deadline: Instant,
    stop: Arc<AtomicBool>,
    seed: u64,
) -> WorkerResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = WorkerResult {
        hist: new_histogram(),
        requests: 0,
        errors: 0,
        sources: BTreeMap::new(),
        unexpected_source: 0,
        error_samples: Vec::new(),
    };
    let note = |out: &mut WorkerResult, e: String| {
        out.errors += 1;
        if out.error_samples.len() < 3 {
            out.error_samples.push(e);
        }
    };
    let mut sender = match connect(addr).await {
        Ok(s) => Some(s),
        Err(e) => {
            note(&mut out, e);
            None
        }
    };
    for _ in 0..MAX_REQUESTS_PER_WORKER {
        if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(req) = workload(&mut rng) else { break };
        if sender.is_none() {
            match connect(addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    note(&mut out, e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let s = sender.as_mut().expect("connected above");
        let started = Instant::now();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, send(s, &req)).await;
        let took = started.elapsed();
        out.requests += 1;
        let _ = out.hist.record((took.as_nanos() as u64).max(1));
        match result {
            Ok(Ok(source)) => {
                if req.method == Method::GET {
                    let name = source.clone().unwrap_or_else(|| "none".into());
                    *out.sources.entry(name).or_default() += 1;
                    if let Some(expected) = req.expect_source {
                        if source.as_deref() != Some(expected) {
                            out.unexpected_source += 1;
                        }
                    }
                }
            }
            Ok(Err((e, broken))) => {
                note(&mut out, e);
                if broken {
                    sender = None;
                }
            }
            Err(_) => {
                note(&mut out, format!("{} {}: timed out", req.method, req.path));
                sender = None;
            }
        }
    }
    out
}

/// Unfinished figures of one or more runs, to merge before turning into [`PhaseStats`].
pub struct Raw {
    pub hist: Histogram<u64>,
    pub requests: u64,
    pub errors: u64,
    pub sources: BTreeMap<String, u64>,
    pub unexpected_source: u64,
    pub error_samples: Vec<String>,
    pub elapsed: Duration,
    /// CPU seconds used by each part of the bench's process tree.
    pub cpu_secs: BTreeMap<String, f64>,
}

impl Raw {
    pub fn new() -> Self {
        Self {
            hist: new_histogram(),
            requests: 0,
            errors: 0,
            sources: BTreeMap::new(),
            unexpected_source: 0,
            error_samples: Vec::new(),
            elapsed: Duration::ZERO,
            cpu_secs: BTreeMap::new(),
        }
    }

    /// Counts one request that started at `t0`; an error keeps its message among the
    /// first few (for the load that is not HTTP: the database ceilings).
    pub fn record(&mut self, t0: Instant, outcome: Result<(), String>) {
        let _ = self.hist.record((t0.elapsed().as_nanos() as u64).max(1));
        self.requests += 1;
        if let Err(e) = outcome {
            self.errors += 1;
            if self.error_samples.len() < 3 {
                self.error_samples.push(e);
            }
        }
    }

    /// Waits for `workers` and merges their tallies; a worker that died counts as an error.
    pub async fn join(workers: Vec<tokio::task::JoinHandle<Raw>>, started: Instant) -> Raw {
        let mut raw = Raw::new();
        for w in workers {
            match w.await {
                Ok(r) => raw.merge(r),
                Err(e) => {
                    raw.errors += 1;
                    raw.error_samples.push(format!("worker failed: {e}"));
                }
            }
        }
        raw.elapsed = started.elapsed();
        raw
    }

    pub fn merge(&mut self, other: Raw) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        self.requests += other.requests;
        self.errors += other.errors;
        self.unexpected_source += other.unexpected_source;
        for (k, v) in other.sources {
            *self.sources.entry(k).or_default() += v;
        }
        for s in other.error_samples {
            if self.error_samples.len() < 5 {
                self.error_samples.push(s);
            }
        }
        self.elapsed += other.elapsed;
        for (k, v) in other.cpu_secs {
            *self.cpu_secs.entry(k).or_default() += v;
        }
    }

    pub fn finish(self) -> PhaseStats {
        let mut stats = PhaseStats::from_parts(
            &self.hist,
            self.requests,
            self.errors,
            self.elapsed,
            self.sources,
            self.unexpected_source,
            self.error_samples,
        );
        let secs = self.elapsed.as_secs_f64().max(1e-3);
        stats.cpu_cores = self
            .cpu_secs
            .into_iter()
            .map(|(k, v)| (k, (v / secs * 100.0).round() / 100.0))
            .filter(|(_, v)| *v >= 0.01)
            .collect();
        stats
    }
}

/// Drives `workload` against `addr` with `concurrency` connections for `duration`.
/// `stop` ends it early when set.
pub async fn run_raw(
    addr: SocketAddr,
    concurrency: usize,
    duration: Duration,
    workload: Workload,
    stop: Arc<AtomicBool>,
) -> Raw {
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|i| {
            tokio::spawn(worker(
                addr,
                workload.clone(),
                deadline,
                stop.clone(),
                0x5eed_0000 + i as u64 * 7919 + started.elapsed().as_nanos() as u64,
            ))
        })
        .collect();
    let mut raw = Raw::new();
    for t in tasks {
        match t.await {
            Ok(r) => raw.merge(Raw {
                hist: r.hist,
                requests: r.requests,
                errors: r.errors,
                sources: r.sources,
                unexpected_source: r.unexpected_source,
                error_samples: r.error_samples,
                elapsed: Duration::ZERO,
                cpu_secs: BTreeMap::new(),
            }),
            Err(e) => {
                raw.errors += 1;
                raw.error_samples.push(format!("worker failed: {e}"));
            }
        }
    }
    raw.elapsed = started.elapsed();
    raw
}

pub fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("tokens are ASCII")
}
