//! Settings shared by the commands. Every setting is a `--flag` with an environment variable
//! (`TENANT_VAULT_*`, or Infisical's and PostgreSQL's own names); the doc comments below are
//! the `--help` text. Secrets are held in [`SecretValue`], which prints as `[redacted]` and
//! is wiped on drop.
//!
//! Kept whole although long: it is one concern, declarations of flags, one `clap::Args`
//! struct per group; the length is their `--help` text, and one file keeps every
//! environment variable name greppable in one place.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::crypto::SecretValue;

#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// PostgreSQL connection URL, e.g. postgres://user:pass@host:5432/tenant_vault
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_name = "URL")]
    pub database_url: SecretValue,

    /// PostgreSQL URL of the owner role, for migrations (`migrate`, `serve` at start-up) and
    /// `db grant`; unset, DATABASE_URL is used. Production: DATABASE_URL names the runtime
    /// role (rows only), this one the role that owns the tables. See README, "Database roles".
    #[arg(
        long,
        env = "TENANT_VAULT_MIGRATE_DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub migrate_database_url: Option<SecretValue>,

    /// Most connections the pool opens (the change listener and the audit writer open one
    /// more each, outside the pool).
    #[arg(
        long,
        env = "TENANT_VAULT_DB_MAX_CONNECTIONS",
        default_value_t = 32,
        value_name = "N"
    )]
    pub db_max_connections: u32,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKeySourceKind {
    /// `MASTER_ENCRYPTION_KEY_V{n}` secrets in Infisical (see --master-key-folder).
    Infisical,
    /// TENANT_VAULT_MASTER_KEY (one fixed key; cannot rotate).
    Env,
    /// Random key files in the data dir, as `tenant-vault dev` uses. Never for production.
    DevFile,
}

#[derive(clap::Args, Debug, Clone)]
pub struct KeyArgs {
    /// Where the master key comes from.
    #[arg(
        long,
        env = "TENANT_VAULT_MASTER_KEY_SOURCE",
        value_enum,
        default_value = "infisical"
    )]
    pub master_key_source: MasterKeySourceKind,

    /// The master key, for --master-key-source env: 32 bytes as 64 hex characters or base64,
    /// or a passphrase of at least 16 characters (stretched with Argon2id). Prefer the
    /// environment variable: a flag shows in `ps`.
    #[arg(
        long,
        env = "TENANT_VAULT_MASTER_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub master_key: Option<SecretValue>,

    /// Directory for the audit journal (used while the database is unreachable) and, with
    /// --master-key-source dev-file, the dev master key files.
    #[arg(
        long,
        env = "TENANT_VAULT_DATA_DIR",
        default_value = "./.tenant-vault",
        value_name = "DIR"
    )]
    pub data_dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServiceArgs {
    /// Seconds a secret stays in the memory cache; 0 turns the cache off; at most 3600.
    #[arg(long, env = "TENANT_VAULT_CACHE_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(0..=3600), value_name = "SECS")]
    pub cache_ttl_secs: u64,

    /// Most entries in each memory cache (secrets, unwrapped data keys, tokens).
    #[arg(long, env = "TENANT_VAULT_CACHE_MAX_ENTRIES", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..), value_name = "N")]
    pub cache_max_entries: u64,

    /// Seconds a key found nowhere (database and Infisical) is remembered as missing, so a
    /// missing key cannot hammer Infisical; 0 turns this off; at most 3600.
    #[arg(long, env = "TENANT_VAULT_NOT_FOUND_CACHE_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=3600), value_name = "SECS")]
    pub not_found_cache_secs: u64,

    /// Seconds past its TTL a cached value may still be served (marked
    /// `x-secret-source: stale`, with `Age`) while PostgreSQL and Infisical cannot be
    /// reached; then 503. 0 turns stale serving off.
    #[arg(long, env = "TENANT_VAULT_MAX_STALE_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=86_400), value_name = "SECS")]
    pub max_stale_secs: u64,

    /// Largest secret value accepted, in bytes; larger PUTs get 413.
    #[arg(long, env = "TENANT_VAULT_MAX_VALUE_BYTES", default_value_t = 65_536,
          value_parser = clap::value_parser!(u64).range(1..=16 * 1024 * 1024), value_name = "BYTES")]
    pub max_value_bytes: u64,

    /// Encryptions a tenant's data key makes before it rotates itself. Random 96-bit nonces
    /// allow at most 2^32 per key; the default, 2^31, stays far below that.
    #[arg(long, env = "TENANT_VAULT_DATA_KEY_MAX_ENCRYPTIONS", default_value_t = 1 << 31,
          value_parser = clap::value_parser!(i64).range(1..=(1i64 << 32) - (1 << 28)), value_name = "N")]
    pub data_key_max_encryptions: i64,

    /// Versions of each secret kept (the current one included); older ones are deleted.
    #[arg(long, env = "TENANT_VAULT_VERSION_RETENTION", default_value_t = 10,
          value_parser = clap::value_parser!(i32).range(1..=1000), value_name = "N")]
    pub version_retention: i32,

    #[command(flatten)]
    pub client_api: ClientApiArgs,

    #[command(flatten)]
    pub tokens: TokenArgs,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub audit: AuditArgs,
}

/// Default life of a new token: 90 days.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 90 * 24 * 3600;
/// Default longest life of a token: one year.
pub const DEFAULT_TOKEN_MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// No setting may make a token live longer than ten years.
const TOKEN_TTL_CEILING_SECS: u64 = 10 * 365 * 24 * 3600;

/// How long tokens live (every kind: admin, tenant, service).
#[derive(clap::Args, Debug, Clone)]
pub struct TokenArgs {
    /// Seconds a new token lives when its request names no TTL; at most
    /// --token-max-ttl-secs.
    #[arg(long, env = "TENANT_VAULT_TOKEN_DEFAULT_TTL_SECS", default_value_t = DEFAULT_TOKEN_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(60..=TOKEN_TTL_CEILING_SECS), value_name = "SECS")]
    pub token_default_ttl_secs: u64,

    /// The longest TTL a token may be issued with; a longer `ttl_secs` is refused with 400.
    #[arg(long, env = "TENANT_VAULT_TOKEN_MAX_TTL_SECS", default_value_t = DEFAULT_TOKEN_MAX_TTL_SECS,
          value_parser = clap::value_parser!(u64).range(60..=TOKEN_TTL_CEILING_SECS), value_name = "SECS")]
    pub token_max_ttl_secs: u64,
}

impl Default for TokenArgs {
    fn default() -> Self {
        Self {
            token_default_ttl_secs: DEFAULT_TOKEN_TTL_SECS,
            token_max_ttl_secs: DEFAULT_TOKEN_MAX_TTL_SECS,
        }
    }
}

/// Rate limits, quotas and memory bounds (see the README, "Limits and the HTTP edge").
/// Rates are per replica; 0 turns a limit off.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct LimitArgs {
    /// Requests per second one token may make (per replica; 0: no limit).
    #[arg(
        long,
        env = "TENANT_VAULT_RATE_LIMIT_TOKEN_RPS",
        default_value_t = 100,
        value_name = "N"
    )]
    pub rate_limit_token_rps: u32,

    /// Requests one token may make at once above its rate.
    #[arg(long, env = "TENANT_VAULT_RATE_LIMIT_TOKEN_BURST", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub rate_limit_token_burst: u32,

    /// Requests per second on one tenant, all its tokens together (per replica; 0: no limit).
    #[arg(
        long,
        env = "TENANT_VAULT_RATE_LIMIT_TENANT_RPS",
        default_value_t = 500,
        value_name = "N"
    )]
    pub rate_limit_tenant_rps: u32,

    /// Requests on one tenant at once above its rate.
    #[arg(long, env = "TENANT_VAULT_RATE_LIMIT_TENANT_BURST", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub rate_limit_tenant_burst: u32,

    /// Failed authentications per minute from one client address before it gets 429s
    /// (per replica; 0: no limit).
    #[arg(
        long,
        env = "TENANT_VAULT_RATE_LIMIT_AUTH_FAILURES_PER_MIN",
        default_value_t = 30,
        value_name = "N"
    )]
    pub rate_limit_auth_failures_per_min: u32,

    /// Failed authentications from one address at once before the per-minute rate applies.
    #[arg(long, env = "TENANT_VAULT_RATE_LIMIT_AUTH_FAILURES_BURST", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    pub rate_limit_auth_failures_burst: u32,

    /// Concurrent Infisical lookups one tenant's cache misses may run (per replica).
    #[arg(long, env = "TENANT_VAULT_INFISICAL_TENANT_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=1000), value_name = "N")]
    pub infisical_tenant_concurrency: u32,

    /// Bytes of secret values the memory cache may hold (per replica), beside its entry cap.
    #[arg(long, env = "TENANT_VAULT_CACHE_MAX_BYTES", default_value_t = 256 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..), value_name = "BYTES")]
    pub cache_max_bytes: u64,

    /// Secrets one tenant may hold (0: no limit; per-tenant overrides through the admin API).
    #[arg(
        long,
        env = "TENANT_VAULT_QUOTA_MAX_SECRETS",
        default_value_t = 10_000,
        value_name = "N"
    )]
    pub quota_max_secrets: u64,

    /// Total bytes of one tenant's current secret values, as stored (0: no limit).
    #[arg(long, env = "TENANT_VAULT_QUOTA_MAX_BYTES", default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub quota_max_bytes: u64,
}

impl Default for LimitArgs {
    /// The same values as the command line's defaults.
    fn default() -> Self {
        Self {
            rate_limit_token_rps: 100,
            rate_limit_token_burst: 200,
            rate_limit_tenant_rps: 500,
            rate_limit_tenant_burst: 1000,
            rate_limit_auth_failures_per_min: 30,
            rate_limit_auth_failures_burst: 20,
            infisical_tenant_concurrency: 4,
            cache_max_bytes: 256 * 1024 * 1024,
            quota_max_secrets: 10_000,
            quota_max_bytes: 64 * 1024 * 1024,
        }
    }
}

impl TokenArgs {
    /// Refuses a default longer than the maximum (a start-up error, before listening).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.token_default_ttl_secs > self.token_max_ttl_secs {
            anyhow::bail!(
                "--token-default-ttl-secs ({}) is larger than --token-max-ttl-secs ({}); \
                 TENANT_VAULT_TOKEN_DEFAULT_TTL_SECS must not exceed TENANT_VAULT_TOKEN_MAX_TTL_SECS",
                self.token_default_ttl_secs,
                self.token_max_ttl_secs
            );
        }
        Ok(())
    }
}

impl LimitArgs {
    /// The defaults with every request rate limit off (tests, benches, one-shot commands).
    pub fn without_rate_limits() -> Self {
        Self {
            rate_limit_token_rps: 0,
            rate_limit_tenant_rps: 0,
            rate_limit_auth_failures_per_min: 0,
            ..Self::default()
        }
    }
}

/// When an answer waits for its audit row.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuditMode {
    /// Events are written in batches (at least every 100 ms) after the answer; while the
    /// database is away they go to the journal file.
    #[default]
    Batched,
    /// Fail closed: an answer leaves only once its audit row is committed in the database;
    /// if it cannot be, the request fails with 503 and no value.
    Strict,
}

/// The audit trail's settings.
#[derive(clap::Args, Debug, Clone)]
pub struct AuditArgs {
    /// `batched` (default) or `strict` (answer only after the audit row is committed).
    #[arg(
        long,
        env = "TENANT_VAULT_AUDIT_MODE",
        value_enum,
        default_value = "batched"
    )]
    pub audit_mode: AuditMode,

    /// Seconds between audit checkpoints (last id, chain value, count, time) written outside
    /// the database: `audit-checkpoint.json` in the data dir, and with Infisical as the key
    /// source, a secret in the master key folder. `tenant-vault audit verify` checks them.
    #[arg(long, env = "TENANT_VAULT_AUDIT_CHECKPOINT_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400), value_name = "SECS")]
    pub audit_checkpoint_secs: u64,
}

impl Default for AuditArgs {
    fn default() -> Self {
        Self {
            audit_mode: AuditMode::Batched,
            audit_checkpoint_secs: 60,
        }
    }
}

/// The routes client caches use: the event stream (`GET /v1/events`) and batch reads
/// (`POST /v1/secrets/batch-get`).
#[derive(clap::Args, Debug, Clone)]
pub struct ClientApiArgs {
    /// Seconds of silence after which an event stream gets a `: heartbeat` comment line.
    #[arg(long, env = "TENANT_VAULT_EVENTS_HEARTBEAT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=300), value_name = "SECS")]
    pub events_heartbeat_secs: u64,

    /// Recent events each replica keeps, so a stream that reconnects with `Last-Event-ID`
    /// gets what it missed; further back it gets `reset`.
    #[arg(long, env = "TENANT_VAULT_EVENTS_REPLAY_WINDOW", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000), value_name = "EVENTS")]
    pub events_replay_window: u64,

    /// Events an event stream may fall behind (a slow reader) before it skips ahead and
    /// gets `reset`. One buffer of this size is shared by all streams of a replica.
    #[arg(long, env = "TENANT_VAULT_EVENTS_STREAM_BUFFER", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=65_536), value_name = "EVENTS")]
    pub events_stream_buffer: u64,

    /// Most (tenant, key) items in one `POST /v1/secrets/batch-get`; more is 400.
    #[arg(long, env = "TENANT_VAULT_BATCH_GET_MAX_ITEMS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=1000), value_name = "N")]
    pub batch_get_max_items: u64,
}

impl Default for ClientApiArgs {
    fn default() -> Self {
        Self {
            events_heartbeat_secs: 15,
            events_replay_window: 10_000,
            events_stream_buffer: 1024,
            batch_get_max_items: 100,
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "TENANT_VAULT_LISTEN",
        default_value = "127.0.0.1:8210",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,

    /// Seconds before a request is abandoned with 503.
    #[arg(long, env = "TENANT_VAULT_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=600), value_name = "SECS")]
    pub request_timeout_secs: u64,

    /// Seconds a client has to send a request's headers, counted from the connection's
    /// start or the end of the previous response (so also HTTP/1.1's keep-alive idle time).
    #[arg(long, env = "TENANT_VAULT_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=600), value_name = "SECS")]
    pub http_header_timeout_secs: u64,

    /// Seconds a connection may move no byte either way before it is closed.
    #[arg(long, env = "TENANT_VAULT_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECS")]
    pub http_idle_timeout_secs: u64,

    /// Open connections served at once; more wait in the kernel's accept queue.
    #[arg(long, env = "TENANT_VAULT_HTTP_MAX_CONNECTIONS", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    pub http_max_connections: u32,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Log format.
    #[arg(
        long,
        env = "TENANT_VAULT_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Log filter, in tracing's EnvFilter syntax (e.g. `info`, `tenant_vault=debug`).
    #[arg(
        long,
        env = "TENANT_VAULT_LOG",
        default_value = "info",
        global = true,
        value_name = "FILTER"
    )]
    pub log: String,
}

/// How to reach Infisical, with Infisical's own variable names.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InfisicalArgs {
    /// Infisical base URL: https://app.infisical.com (US Cloud), https://eu.infisical.com (EU
    /// Cloud) or your self-hosted URL. Unset: Infisical is not used.
    #[arg(long, env = "INFISICAL_SITE_URL", value_name = "URL")]
    pub infisical_site_url: Option<String>,

    /// Universal Auth client id of the machine identity.
    #[arg(long, env = "INFISICAL_CLIENT_ID", value_name = "ID")]
    pub infisical_client_id: Option<String>,

    /// Universal Auth client secret of the machine identity.
    #[arg(
        long,
        env = "INFISICAL_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub infisical_client_secret: Option<SecretValue>,

    /// Project (workspace) id holding the master key folder and /tenants.
    #[arg(long, env = "INFISICAL_PROJECT_ID", value_name = "ID")]
    pub infisical_project_id: Option<String>,

    /// Environment slug to read and write.
    #[arg(
        long,
        env = "INFISICAL_ENVIRONMENT",
        default_value = "prod",
        value_name = "SLUG"
    )]
    pub infisical_environment: String,

    /// Folder holding MASTER_ENCRYPTION_KEY_V1, _V2, ... (never under /tenants).
    #[arg(
        long,
        env = "TENANT_VAULT_MASTER_KEY_FOLDER",
        default_value = "/tenant-vault",
        value_name = "PATH"
    )]
    pub master_key_folder: String,

    /// On a database miss, read /tenants/{tenant}/{key} from Infisical and import it.
    #[arg(long, env = "TENANT_VAULT_INFISICAL_FALLBACK", default_value_t = true,
          action = clap::ArgAction::Set, value_name = "BOOL")]
    pub infisical_fallback: bool,

    /// Milliseconds one Infisical request may take before it counts as failed.
    #[arg(long, env = "TENANT_VAULT_INFISICAL_TIMEOUT_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(100..=60_000), value_name = "MS")]
    pub infisical_timeout_ms: u64,

    #[command(flatten)]
    pub sync: SyncArgs,
}

/// Keeping Infisical and tenant-vault in step (README: "Keeping Infisical and tenant-vault
/// in step").
#[derive(clap::Args, Debug, Clone)]
pub struct SyncArgs {
    /// How secrets imported from Infisical behave: `follow` (Infisical stays their source of
    /// truth: edits and deletes there reach tenant-vault) or `import-once` (imported on first
    /// read, then left alone). Per tenant: `PUT /v1/admin/tenants/{tenant}/infisical-mode`.
    #[arg(long, env = "TENANT_VAULT_INFISICAL_MODE", default_value = "follow",
          value_parser = ["follow", "import-once"], value_name = "MODE")]
    pub infisical_mode: String,

    /// The secret key of the Infisical webhook (`POST /v1/hooks/infisical`); unset, the
    /// receiver answers 404.
    #[arg(
        long,
        env = "TENANT_VAULT_INFISICAL_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub infisical_webhook_secret: Option<SecretValue>,

    /// Seconds a webhook's timestamp may be away from now (replay window).
    #[arg(long, env = "TENANT_VAULT_INFISICAL_WEBHOOK_WINDOW_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=3600), value_name = "SECS")]
    pub infisical_webhook_window_secs: u64,

    /// Seconds between re-reads of each followed Infisical folder without a webhook (the
    /// safety net; jittered; 0 turns it off).
    #[arg(long, env = "TENANT_VAULT_INFISICAL_RECHECK_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(0..=604_800), value_name = "SECS")]
    pub infisical_recheck_secs: u64,

    /// Most re-check list calls per minute across all replicas. Infisical's rate limits: 40
    /// per minute for secret routes on a self-hosted server without licence, 120+ on Cloud.
    #[arg(long, env = "TENANT_VAULT_INFISICAL_RECHECK_PER_MINUTE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=6000), value_name = "N")]
    pub infisical_recheck_per_minute: u32,
}

impl Default for SyncArgs {
    fn default() -> Self {
        Self {
            infisical_mode: "follow".into(),
            infisical_webhook_secret: None,
            infisical_webhook_window_secs: 300,
            infisical_recheck_secs: 300,
            infisical_recheck_per_minute: 30,
        }
    }
}

/// TLS for `serve` (see docs/tls.md; the checks are in `tls`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate chain (leaf first) to serve HTTPS with (TLS 1.2 and 1.3). Re-read,
    /// with the key, on SIGHUP: new connections get the new certificate, open ones stay.
    #[arg(long, env = "TENANT_VAULT_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TENANT_VAULT_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA certificate(s): every client must then present a certificate they signed
    /// (service-to-service deployments). Re-read on SIGHUP.
    #[arg(long, env = "TENANT_VAULT_TLS_CLIENT_CA", value_name = "PEM")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve plain HTTP on a non-loopback --listen address. Only behind a TLS-terminating
    /// proxy on a private network; without TLS, `serve` refuses such an address.
    #[arg(long, env = "TENANT_VAULT_INSECURE_NO_TLS")]
    pub insecure_no_tls: bool,
}

/// The cold vault: OpenBao KV v2 for versions out of retention and deleted secrets (see the
/// README, "The cold vault"). Off unless TENANT_VAULT_ARCHIVE_ADDR is set.
#[derive(clap::Args, Debug, Clone)]
pub struct ArchiveArgs {
    /// OpenBao address, e.g. https://openbao.internal:8200. Unset: no archive (pruned
    /// versions and deleted secrets are gone from the database for good).
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_ADDR", value_name = "URL")]
    pub archive_addr: Option<String>,

    /// The KV version 2 mount the archive writes under (`<mount>/tenants/{slug}/{key}`).
    #[arg(
        long,
        env = "TENANT_VAULT_ARCHIVE_MOUNT",
        default_value = "tenant-vault-archive",
        value_name = "PATH"
    )]
    pub archive_mount: String,

    /// AppRole role id (from `tenant-vault archive init`).
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_ROLE_ID", value_name = "ID")]
    pub archive_role_id: Option<String>,

    /// File holding the AppRole role id (instead of --archive-role-id).
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_ROLE_ID_FILE", value_name = "FILE")]
    pub archive_role_id_file: Option<PathBuf>,

    /// AppRole secret id. Prefer --archive-secret-id-file or the environment variable: a
    /// flag shows in `ps`.
    #[arg(
        long,
        env = "TENANT_VAULT_ARCHIVE_SECRET_ID",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub archive_secret_id: Option<SecretValue>,

    /// File holding the AppRole secret id.
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_SECRET_ID_FILE", value_name = "FILE")]
    pub archive_secret_id_file: Option<PathBuf>,

    /// PEM CA certificate(s) to trust for an https:// archive address.
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_CACERT", value_name = "PEM")]
    pub archive_cacert: Option<PathBuf>,

    /// Days the archive keeps a version (KV v2 `delete_version_after`); default 5 years.
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_RETENTION_DAYS", default_value_t = 1825,
          value_parser = clap::value_parser!(u32).range(1..=36_500), value_name = "DAYS")]
    pub archive_retention_days: u32,

    /// Milliseconds one OpenBao request may take.
    #[arg(long, env = "TENANT_VAULT_ARCHIVE_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::value_parser!(u64).range(100..=60_000), value_name = "MS")]
    pub archive_timeout_ms: u64,
}

impl Default for ArchiveArgs {
    fn default() -> Self {
        Self {
            archive_addr: None,
            archive_mount: "tenant-vault-archive".into(),
            archive_role_id: None,
            archive_role_id_file: None,
            archive_secret_id: None,
            archive_secret_id_file: None,
            archive_cacert: None,
            archive_retention_days: 1825,
            archive_timeout_ms: 5000,
        }
    }
}
