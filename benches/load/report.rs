//! The report: terminal table, `load.json`, `load.md` and `load.svg`.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Value};

use crate::scenario::{PhaseResult, PointResult};
use crate::Args;

pub fn machine_facts() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let os = read("/etc/os-release")
        .lines()
        .find(|l| l.starts_with("PRETTY_NAME="))
        .map(|l| {
            l.trim_start_matches("PRETTY_NAME=")
                .trim_matches('"')
                .to_string()
        })
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "rev-parse",
            "--short",
            "HEAD",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu_model,
        "memory_gib": ((mem_kib as f64 / 1024.0 / 1024.0) * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "os": os,
        "git_commit": commit,
        // Other work on the machine skews every figure; the ratios less so.
        "loadavg_at_start": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
    })
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn note(p: &PhaseResult) -> String {
    let mut parts = Vec::new();
    if let Some(r) = &p.rotation {
        parts.push(format!(
            "rotation {:.0} ms{}{}",
            r.client_ms,
            r.server_elapsed_ms
                .map_or(String::new(), |v| format!(" (server {v:.0} ms)")),
            r.rewrapped_data_keys
                .map_or(String::new(), |v| format!(", {v} data keys re-wrapped")),
        ));
    }
    if let Some(s) = &p.stats {
        if s.unexpected_source > 0 {
            parts.push(format!(
                "{} answers from another source",
                s.unexpected_source
            ));
        }
    }
    if let Some(n) = &p.note {
        if !n.is_empty() {
            parts.push(n.clone());
        }
    }
    parts.join("; ")
}

/// "tenant-vault 1.2, postgres 0.4, load generator 0.4"
fn cpu(p: &PhaseResult) -> String {
    p.stats
        .as_ref()
        .map(|s| {
            s.cpu_cores
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn ratio(p: &PointResult, a: &str, b: &str) -> Option<f64> {
    let (x, y) = (p.stats(a)?, p.stats(b)?);
    (y.rps > 0.0).then(|| x.rps / y.rps)
}

/// tenant-vault phase beside the OpenBao phase that does the same reads the same way:
/// from memory (OpenBao in memory, and on PostgreSQL with its cache), and from PostgreSQL
/// on every read (OpenBao with its cache off).
pub const OPENBAO_PAIRS: &[(&str, &str)] = &[
    ("hot", "openbao-inmem"),
    ("hot", "openbao-pg"),
    ("database", "openbao-pg-nocache"),
];

/// One tenant-vault / OpenBao comparison at a point.
struct Versus<'a> {
    ours: &'a str,
    theirs: &'a str,
    ours_stats: &'a crate::client::PhaseStats,
    theirs_stats: &'a crate::client::PhaseStats,
}

impl Versus<'_> {
    /// tenant-vault's throughput over OpenBao's (above 1: tenant-vault serves more).
    fn throughput(&self) -> f64 {
        self.ours_stats.rps / self.theirs_stats.rps.max(1e-9)
    }
    /// OpenBao's latency over tenant-vault's (above 1: tenant-vault answers sooner).
    fn p50(&self) -> f64 {
        self.theirs_stats.p50_ms / self.ours_stats.p50_ms.max(1e-9)
    }
    fn p99(&self) -> f64 {
        self.theirs_stats.p99_ms / self.ours_stats.p99_ms.max(1e-9)
    }
}

fn versus(p: &PointResult) -> Vec<Versus<'_>> {
    OPENBAO_PAIRS
        .iter()
        .filter_map(|&(ours, theirs)| {
            Some(Versus {
                ours,
                theirs,
                ours_stats: p.stats(ours)?,
                theirs_stats: p.stats(theirs)?,
            })
        })
        .collect()
}

pub fn print_point(p: &PointResult) {
    println!(
        "\n  {} tenants x {} secrets ({})",
        p.tenants, p.secrets_per_tenant, p.kind
    );
    println!(
        "  {:<14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}  note",
        "phase", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "errors"
    );
    for ph in &p.phases {
        match &ph.stats {
            Some(s) => println!(
                "  {:<14} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}  {}",
                ph.name,
                s.rps,
                ms(s.p50_ms),
                ms(s.p90_ms),
                ms(s.p99_ms),
                ms(s.p999_ms),
                ms(s.max_ms),
                s.errors,
                note(ph)
            ),
            None => println!(
                "  {:<14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}  {}",
                ph.name,
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                ph.errors(),
                note(ph)
            ),
        }
    }
    println!("  CPU cores used per phase (2 = the whole machine if it has 2 cores):");
    for ph in &p.phases {
        let c = cpu(ph);
        if !c.is_empty() {
            println!("    {:<14} {c}", ph.name);
        }
    }
    if let Some(r) = ratio(p, "hot", "http-ceiling") {
        println!("  hot / http-ceiling      = {:.0}%", r * 100.0);
    }
    if let Some(r) = ratio(p, "hot-strict", "hot") {
        println!("  hot-strict / hot        = {:.0}%", r * 100.0);
    }
    if let Some(r) = ratio(p, "database", "db-ceiling") {
        println!("  database / db-ceiling   = {:.0}%", r * 100.0);
    }
    if let Some(r) = ratio(p, "write", "db-write-ceiling") {
        println!("  write / db-write-ceiling = {:.0}%", r * 100.0);
    }
    if let Some(r) = ratio(p, "hot-limits", "hot") {
        println!("  hot-limits / hot        = {:.0}%", r * 100.0);
    }
    for v in versus(p) {
        println!(
            "  {} / {} = {:.2}x the throughput; OpenBao's p50 {:.2}x, p99 {:.2}x tenant-vault's",
            v.ours,
            v.theirs,
            v.throughput(),
            v.p50(),
            v.p99()
        );
    }
    if let Some(k) = p.service_rss_after_warm_kib {
        println!(
            "  service peak RSS after warming: {:.1} MiB (whole point: {})",
            k as f64 / 1024.0,
            p.service_rss_peak_kib
                .map_or("?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
        );
    }
}

pub struct Report<'a> {
    pub args: &'a Args,
    pub machine: Value,
    pub pg_version: Option<String>,
    pub points: &'a [PointResult],
    pub total_s: f64,
    pub failure: Option<String>,
}

struct Target {
    name: &'static str,
    goal: &'static str,
    measured: String,
    met: Option<bool>,
}

impl Report<'_> {
    fn main_point(&self) -> Option<&PointResult> {
        self.points.iter().find(|p| p.kind == "all")
    }

    fn sweep_point(&self, tenants: usize) -> Option<&PointResult> {
        self.points
            .iter()
            .find(|p| p.tenants == tenants && p.kind != "rotate-only")
    }

    fn targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        let main = self.main_point();
        let pct =
            |v: Option<f64>| v.map_or("not measured".into(), |r| format!("{:.0}%", r * 100.0));
        let hot_ratio = main.and_then(|p| ratio(p, "hot", "http-ceiling"));
        out.push(Target {
            name: "hot / http-ceiling",
            goal: ">= 60%",
            measured: pct(hot_ratio),
            met: hot_ratio.map(|r| r >= 0.60),
        });
        let hot_p99 = main.and_then(|p| p.stats("hot")).map(|s| s.p99_ms);
        out.push(Target {
            name: "hot p99",
            goal: "< 2 ms",
            measured: hot_p99.map_or("not measured".into(), |v| format!("{} ms", ms(v))),
            met: hot_p99.map(|v| v < 2.0),
        });
        // Only with --limits-compare: the default rate limits cost under 5% (same run).
        if let Some(r) = main.and_then(|p| ratio(p, "hot-limits", "hot")) {
            out.push(Target {
                name: "hot-limits / hot",
                goal: ">= 95%",
                measured: pct(Some(r)),
                met: Some(r >= 0.95),
            });
        }
        let db_ratio = main.and_then(|p| ratio(p, "database", "db-ceiling"));
        out.push(Target {
            name: "database / db-ceiling",
            goal: ">= 50%",
            measured: pct(db_ratio),
            met: db_ratio.map(|r| r >= 0.50),
        });
        let write_ratio = main.and_then(|p| ratio(p, "write", "db-write-ceiling"));
        out.push(Target {
            name: "write / db-write-ceiling",
            goal: ">= 25%",
            measured: pct(write_ratio),
            met: write_ratio.map(|r| r >= 0.25),
        });
        let errors: u64 = self
            .points
            .iter()
            .flat_map(|p| p.phases.iter())
            .map(PhaseResult::errors)
            .sum();
        out.push(Target {
            name: "errors, every phase",
            goal: "0",
            measured: errors.to_string(),
            met: Some(errors == 0 && self.failure.is_none()),
        });
        let rot10k = self
            .sweep_point(10_000)
            .and_then(|p| p.phase("rotate"))
            .and_then(|ph| ph.rotation.as_ref())
            .map(|r| r.server_elapsed_ms.unwrap_or(r.client_ms));
        out.push(Target {
            name: "rotation at 10,000 tenants",
            goal: "< 2 s",
            measured: rot10k.map_or("not measured".into(), |v| format!("{v:.0} ms")),
            met: rot10k.map(|v| v < 2000.0),
        });
        let p99 = |n| {
            self.sweep_point(n)
                .and_then(|p| p.stats("hot"))
                .map(|s| s.p99_ms)
        };
        let growth = match (p99(100), p99(10_000)) {
            (Some(a), Some(b)) if a > 0.0 => Some(b / a - 1.0),
            _ => None,
        };
        out.push(Target {
            name: "hot p99 at 10,000 vs 100 tenants",
            goal: "within +20%",
            measured: growth.map_or("not measured".into(), |g| format!("{:+.0}%", g * 100.0)),
            met: growth.map(|g| g <= 0.20),
        });
        out
    }

    pub fn to_json(&self) -> Value {
        let targets: Vec<Value> = self
            .targets()
            .into_iter()
            .map(|t| json!({"name": t.name, "goal": t.goal, "measured": t.measured, "met": t.met}))
            .collect();
        let ratios: Vec<Value> = self
            .points
            .iter()
            .filter(|p| p.kind != "rotate-only")
            .map(|p| {
                json!({
                    "tenants": p.tenants,
                    "hot_over_http_ceiling": ratio(p, "hot", "http-ceiling"),
                    "hot_limits_over_hot": ratio(p, "hot-limits", "hot"),
                    "hot_strict_over_hot": ratio(p, "hot-strict", "hot"),
                    "database_over_db_ceiling": ratio(p, "database", "db-ceiling"),
                    "write_over_db_write_ceiling": ratio(p, "write", "db-write-ceiling"),
                    "hot_over_openbao_inmem": ratio(p, "hot", "openbao-inmem"),
                    "hot_over_openbao_pg": ratio(p, "hot", "openbao-pg"),
                    "database_over_openbao_pg_nocache": ratio(p, "database", "openbao-pg-nocache"),
                })
            })
            .collect();
        json!({
            "bench": "tenant-vault load",
            "command": self.args.command_line,
            "started_at": chrono::Utc::now().to_rfc3339(),
            "settings": {
                "tenants": self.args.tenants,
                "secrets_per_tenant": self.args.secrets_per_tenant,
                "concurrency": self.args.concurrency,
                "duration_s": self.args.duration.as_secs_f64(),
                "sweep": self.args.sweep,
                "quick": self.args.quick,
                "phases": self.args.phases,
            },
            "machine": self.machine,
            "postgresql": self.pg_version,
            "points": self.points,
            "ratios": ratios,
            "openbao_comparison": self.openbao_json(),
            "targets": targets,
            "total_s": self.total_s,
            "loadavg_at_end": std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            "failure": self.failure,
        })
    }

    /// The comparisons at the main point: figures of both sides and their ratios.
    fn openbao_json(&self) -> Value {
        let Some(p) = self.main_point() else {
            return Value::Null;
        };
        let rows: Vec<Value> = versus(p)
            .iter()
            .map(|v| {
                json!({
                    "tenant_vault_phase": v.ours,
                    "openbao_phase": v.theirs,
                    "tenant_vault": {"rps": v.ours_stats.rps, "p50_ms": v.ours_stats.p50_ms, "p99_ms": v.ours_stats.p99_ms},
                    "openbao": {"rps": v.theirs_stats.rps, "p50_ms": v.theirs_stats.p50_ms, "p99_ms": v.theirs_stats.p99_ms},
                    "throughput_tenant_vault_over_openbao": v.throughput(),
                    "p50_openbao_over_tenant_vault": v.p50(),
                    "p99_openbao_over_tenant_vault": v.p99(),
                })
            })
            .collect();
        if rows.is_empty() && p.openbao.is_empty() {
            return Value::Null;
        }
        json!({
            "openbao_version": self.machine.get("openbao"),
            "tenants": p.tenants,
            "secrets_per_tenant": p.secrets_per_tenant,
            "servers": p.openbao,
            "pairs": rows,
        })
    }

    fn openbao_text(&self) -> String {
        let mut s = String::new();
        let Some(p) = self.main_point() else {
            return s;
        };
        for v in versus(p) {
            let _ = writeln!(
                s,
                "  {:<9} {:>8.0} req/s p50 {:>7} ms | {:<18} {:>8.0} req/s p50 {:>7} ms | {:.2}x throughput",
                v.ours,
                v.ours_stats.rps,
                ms(v.ours_stats.p50_ms),
                v.theirs,
                v.theirs_stats.rps,
                ms(v.theirs_stats.p50_ms),
                v.throughput()
            );
        }
        if !s.is_empty() {
            s.insert_str(
                0,
                "tenant-vault beside OpenBao (same client, concurrency and key mix):\n",
            );
        }
        s
    }

    pub fn summary_text(&self) -> String {
        let mut s = String::new();
        if cfg!(debug_assertions) {
            // CI's smoke run (`--profile dev`): every phase ran, but nothing was measured.
            s.push_str(
                "NOTE: built without optimisation (`--profile dev`): a smoke run of every phase, \
                 not a measurement; the numbers below say nothing about speed\n",
            );
        }
        s.push_str(&self.openbao_text());
        s.push_str("targets (issue 5):\n");
        for t in self.targets() {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "-",
            };
            let _ = writeln!(
                s,
                "  {:<34} goal {:<12} measured {:<14} {verdict}",
                t.name, t.goal, t.measured
            );
        }
        s
    }

    fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "# tenant-vault load bench\n");
        let _ = writeln!(s, "Command: `{}`  ", self.args.command_line);
        let _ = writeln!(
            s,
            "Machine: {} cores, {}, {} GiB memory, {} (kernel {}); PostgreSQL {}; commit {}; load average at start {}  ",
            m["cores"],
            m["cpu_model"].as_str().unwrap_or("?"),
            m["memory_gib"],
            m["os"].as_str().unwrap_or("?"),
            m["kernel"].as_str().unwrap_or("?"),
            self.pg_version.as_deref().unwrap_or("?"),
            m["git_commit"].as_str().unwrap_or("?"),
            m["loadavg_at_start"].as_str().unwrap_or("?"),
        );
        let _ = writeln!(
            s,
            "Settings: concurrency {}, {:.1} s per phase, closed loop (each connection sends its next request when the last answer arrives). Total run {:.0} s.\n",
            self.args.concurrency,
            self.args.duration.as_secs_f64(),
            self.total_s
        );
        if let Some(f) = &self.failure {
            let _ = writeln!(s, "**The run failed:** {f}\n");
        }
        let _ = writeln!(s, "![p50 and p99 per phase across the sweep](load.svg)\n");
        let _ = writeln!(
            s,
            "## Targets\n\n| target | goal | measured | |\n|---|---|---|---|"
        );
        for t in self.targets() {
            let verdict = match t.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {verdict} |",
                t.name, t.goal, t.measured
            );
        }
        if let Some(p) = self.main_point().filter(|p| !versus(p).is_empty()) {
            let _ = writeln!(
                s,
                "\n## tenant-vault beside OpenBao\n\n{}, {} tenants x {} secrets in KV v2 (`{}/tenants/{{slug}}/{{key}}`), one policy and one token per tenant, read with the same client, concurrency and key mix, in turns with the tenant-vault phase.\n",
                self.machine["openbao"].as_str().unwrap_or("OpenBao"),
                p.tenants,
                p.secrets_per_tenant,
                crate::openbao::MOUNT,
            );
            let _ = writeln!(
                s,
                "| tenant-vault | req/s | p50 ms | p99 ms | OpenBao | req/s | p50 ms | p99 ms | throughput, tenant-vault / OpenBao | p50, OpenBao / tenant-vault |\n|---|---:|---:|---:|---|---:|---:|---:|---:|---:|"
            );
            for v in versus(p) {
                let _ = writeln!(
                    s,
                    "| `{}` | {:.0} | {} | {} | `{}` | {:.0} | {} | {} | **{:.2}x** | {:.2}x |",
                    v.ours,
                    v.ours_stats.rps,
                    ms(v.ours_stats.p50_ms),
                    ms(v.ours_stats.p99_ms),
                    v.theirs,
                    v.theirs_stats.rps,
                    ms(v.theirs_stats.p50_ms),
                    ms(v.theirs_stats.p99_ms),
                    v.throughput(),
                    v.p50()
                );
            }
            for run in &p.openbao {
                let loaded = if run.load_requests == 0 {
                    "on the storage loaded above".to_string()
                } else {
                    format!(
                        "loaded in {:.1} s ({} requests)",
                        run.load_s, run.load_requests
                    )
                };
                let _ = writeln!(
                    s,
                    "\n`{}`: {} storage, OpenBao cache {}, {loaded}, warmed in {:.1} s, peak RSS {}.",
                    run.phase,
                    run.storage,
                    if run.cache { "on" } else { "off" },
                    run.warm_s,
                    run.rss_peak_kib
                        .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                );
            }
        }
        for p in self.points {
            let _ = writeln!(
                s,
                "\n## {} tenants x {} secrets ({})\n",
                p.tenants, p.secrets_per_tenant, p.kind
            );
            let _ = writeln!(
                s,
                "Seeded in {:.1} s ({} requests); warmed in {:.1} s. Service peak RSS after warming: {}; over the point: {}.\n",
                p.seed_s,
                p.seed_requests,
                p.warm_s,
                p.service_rss_after_warm_kib
                    .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
                p.service_rss_peak_kib
                    .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            );
            let _ = writeln!(
                s,
                "| phase | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors | CPU cores used | note |\n|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
            );
            for ph in &p.phases {
                match &ph.stats {
                    Some(st) => {
                        let _ = writeln!(
                            s,
                            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
                            ph.name,
                            st.rps,
                            ms(st.p50_ms),
                            ms(st.p90_ms),
                            ms(st.p99_ms),
                            ms(st.p999_ms),
                            ms(st.max_ms),
                            st.errors,
                            cpu(ph),
                            note(ph)
                        );
                    }
                    None => {
                        let _ = writeln!(
                            s,
                            "| {} | - | - | - | - | - | - | {} | | {} |",
                            ph.name,
                            ph.errors(),
                            note(ph)
                        );
                    }
                }
            }
            let mut ratios = Vec::new();
            if let Some(r) = ratio(p, "hot", "http-ceiling") {
                ratios.push(format!("hot / http-ceiling = **{:.0}%**", r * 100.0));
            }
            if let Some(r) = ratio(p, "database", "db-ceiling") {
                ratios.push(format!("database / db-ceiling = **{:.0}%**", r * 100.0));
            }
            if let Some(r) = ratio(p, "write", "db-write-ceiling") {
                ratios.push(format!("write / db-write-ceiling = **{:.0}%**", r * 100.0));
            }
            for v in versus(p) {
                ratios.push(format!(
                    "{} / {} = **{:.2}x**",
                    v.ours,
                    v.theirs,
                    v.throughput()
                ));
            }
            if !ratios.is_empty() {
                let _ = writeln!(s, "\n{}", ratios.join("; "));
            }
        }
        let sweep: Vec<&PointResult> = self.points.iter().collect();
        if sweep.len() > 1 {
            let _ = writeln!(
                s,
                "\n## Sweep\n\n| tenants | secrets/tenant | hot p50 | hot p99 | database p50 | database p99 | hot/ceiling | database/ceiling | rotation ms | data keys re-wrapped |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
            for p in sweep {
                let st = |n: &str, f: fn(&crate::client::PhaseStats) -> f64| {
                    p.stats(n).map_or("-".into(), |s| ms(f(s)))
                };
                let rot = p.phase("rotate").and_then(|ph| ph.rotation.as_ref());
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    p.tenants,
                    p.secrets_per_tenant,
                    st("hot", |s| s.p50_ms),
                    st("hot", |s| s.p99_ms),
                    st("database", |s| s.p50_ms),
                    st("database", |s| s.p99_ms),
                    ratio(p, "hot", "http-ceiling")
                        .map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
                    ratio(p, "database", "db-ceiling")
                        .map_or("-".into(), |r| format!("{:.0}%", r * 100.0)),
                    rot.map_or("-".into(), |r| format!(
                        "{:.0}",
                        r.server_elapsed_ms.unwrap_or(r.client_ms)
                    )),
                    rot.and_then(|r| r.rewrapped_data_keys)
                        .map_or("-".into(), |v| v.to_string()),
                );
            }
        }
        s
    }

    pub fn write(&self, dir: &Path) -> Result<(), String> {
        let json = serde_json::to_string_pretty(&self.to_json()).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("load.json"), json).map_err(|e| e.to_string())?;
        std::fs::write(dir.join("load.md"), self.markdown()).map_err(|e| e.to_string())?;
        plot(self, &dir.join("load.svg")).map_err(|e| format!("load.svg: {e}"))?;
        Ok(())
    }
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(127, 127, 127),
];

fn log_bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.01, 10.0);
    }
    (lo / 1.8, hi * 1.8)
}

type Points = Vec<(f64, f64)>;
type PlotResult = Result<(), Box<dyn std::error::Error>>;

fn plot(report: &Report<'_>, path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (1400, 860)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(36);
    let m = &report.machine;
    title.titled(
        &format!(
            "tenant-vault load bench: concurrency {}, {:.1} s phases; {} cores, {}",
            report.args.concurrency,
            report.args.duration.as_secs_f64(),
            m["cores"],
            m["cpu_model"].as_str().unwrap_or("?")
        ),
        ("sans-serif", 18),
    )?;
    let (top, bottom) = body.split_vertically(400);
    plot_phases(report, &top)?;
    let panels = bottom.split_evenly((1, 2));
    plot_sweep(report, &panels[0])?;
    plot_rotation(report, &panels[1])?;
    root.present()?;
    Ok(())
}

/// "; throughput tenant-vault / OpenBao: hot / openbao-inmem 2.10x, ..."
fn versus_caption(p: &PointResult) -> String {
    let parts: Vec<String> = versus(p)
        .iter()
        .map(|v| format!("{} / {} {:.2}x", v.ours, v.theirs, v.throughput()))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("; throughput tenant-vault / OpenBao: {}", parts.join(", "))
    }
}

/// Panel 1: p50 and p99 of every phase at --tenants.
fn plot_phases<DB: DrawingBackend>(
    report: &Report<'_>,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let Some(p) = report.main_point() else {
        return Ok(());
    };
    let phases: Vec<(&str, f64, f64)> = p
        .phases
        .iter()
        .filter_map(|ph| {
            ph.stats
                .as_ref()
                .map(|s| (ph.name.as_str(), s.p50_ms, s.p99_ms))
        })
        .collect();
    let (lo, hi) = log_bounds(phases.iter().flat_map(|(_, a, b)| [*a, *b]));
    let names: Vec<String> = phases.iter().map(|(n, _, _)| n.to_string()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "latency by phase, {} tenants{}",
                p.tenants,
                versus_caption(p)
            ),
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(55)
        .build_cartesian_2d(-1i32..names.len() as i32, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_labels(names.len() + 2)
        .x_label_formatter(&|i| {
            usize::try_from(*i)
                .ok()
                .and_then(|i| names.get(i).cloned())
                .unwrap_or_default()
        })
        .x_label_style(("sans-serif", if names.len() > 9 { 10 } else { 13 }))
        .y_desc("ms (log)")
        .disable_x_mesh()
        .draw()?;
    for (i, (_, p50, p99)) in phases.iter().enumerate() {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(i as i32, *p50), (i as i32, *p99)],
            BLACK.mix(0.4),
        )))?;
    }
    chart
        .draw_series(
            phases
                .iter()
                .enumerate()
                .map(|(i, (_, p50, _))| Circle::new((i as i32, *p50), 5, PALETTE[0].filled())),
        )?
        .label("p50")
        .legend(|(x, y)| Circle::new((x, y), 5, PALETTE[0].filled()));
    chart
        .draw_series(
            phases.iter().enumerate().map(|(i, (_, _, p99))| {
                TriangleMarker::new((i as i32, *p99), 6, PALETTE[1].filled())
            }),
        )?
        .label("p99")
        .legend(|(x, y)| TriangleMarker::new((x, y), 6, PALETTE[1].filled()));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// Panel 2: p50 and p99 of hot, database and the ceilings against the tenant count.
fn plot_sweep<DB: DrawingBackend>(
    report: &Report<'_>,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let points: Vec<&PointResult> = report
        .points
        .iter()
        .filter(|p| p.kind != "rotate-only")
        .collect();
    let series_names = ["hot", "database", "http-ceiling", "db-ceiling"];
    let mut series: Vec<(&str, Points, Points)> = Vec::new();
    for name in series_names {
        let mut p50 = Vec::new();
        let mut p99 = Vec::new();
        for p in &points {
            if let Some(s) = p.stats(name) {
                p50.push((p.tenants as f64, s.p50_ms));
                p99.push((p.tenants as f64, s.p99_ms));
            }
        }
        if !p50.is_empty() {
            series.push((name, p50, p99));
        }
    }
    let (ylo, yhi) = log_bounds(
        series
            .iter()
            .flat_map(|(_, a, b)| a.iter().chain(b.iter()).map(|p| p.1)),
    );
    let (xlo, xhi) = log_bounds(points.iter().map(|p| p.tenants as f64));
    let mut chart = ChartBuilder::on(area)
        .caption(
            "p50 (thin, o) and p99 (thick, ^) vs tenants",
            ("sans-serif", 15),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("tenants (log)")
        .y_desc("ms (log)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, (name, p50, p99)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart.draw_series(LineSeries::new(p50.clone(), color.stroke_width(1)))?;
        chart.draw_series(
            p50.iter()
                .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
        )?;
        chart
            .draw_series(LineSeries::new(p99.clone(), color.stroke_width(3)))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(
            p99.iter()
                .map(|&(x, y)| TriangleMarker::new((x, y), 5, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// Panel 3: master key rotation time against data keys (one per tenant), with the
/// 10x-secrets point marked apart.
fn plot_rotation<DB: DrawingBackend>(
    report: &Report<'_>,
    area: &DrawingArea<DB, plotters::coord::Shift>,
) -> PlotResult
where
    DB::ErrorType: 'static,
{
    let mut normal = Vec::new();
    let mut dense = Vec::new();
    for p in report.points {
        let Some(r) = p.phase("rotate").and_then(|ph| ph.rotation.as_ref()) else {
            continue;
        };
        let keys = r.rewrapped_data_keys.unwrap_or(p.tenants as u64).max(1) as f64;
        let v = r.server_elapsed_ms.unwrap_or(r.client_ms).max(0.01);
        if p.kind == "rotate-only" {
            dense.push((keys, v, p.secrets_per_tenant));
        } else {
            normal.push((keys, v, p.secrets_per_tenant));
        }
    }
    if normal.is_empty() && dense.is_empty() {
        area.titled(
            "master key rotation: not measured (route not available)",
            ("sans-serif", 15),
        )?;
        return Ok(());
    }
    let (xlo, xhi) = log_bounds(normal.iter().chain(dense.iter()).map(|p| p.0));
    let (ylo, yhi) = log_bounds(normal.iter().chain(dense.iter()).map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption("master key rotation vs data keys", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((xlo..xhi).log_scale(), (ylo..yhi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("data keys re-wrapped (log)")
        .y_desc("ms (log)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    let spt = report.args.secrets_per_tenant;
    if !normal.is_empty() {
        let line: Vec<(f64, f64)> = normal.iter().map(|p| (p.0, p.1)).collect();
        chart.draw_series(LineSeries::new(line.clone(), PALETTE[0].stroke_width(2)))?;
        chart
            .draw_series(
                line.iter()
                    .map(|&(x, y)| Circle::new((x, y), 5, PALETTE[0].filled())),
            )?
            .label(format!("{spt} secrets per tenant"))
            .legend(|(x, y)| Circle::new((x, y), 5, PALETTE[0].filled()));
    }
    if !dense.is_empty() {
        chart
            .draw_series(
                dense
                    .iter()
                    .map(|&(x, y, _)| TriangleMarker::new((x, y), 7, PALETTE[1].filled())),
            )?
            .label(format!("{} secrets per tenant", spt * 10))
            .legend(|(x, y)| TriangleMarker::new((x, y), 7, PALETTE[1].filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
