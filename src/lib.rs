//! tenant-vault: per-tenant encrypted secrets in PostgreSQL, served over HTTP.
//!
//! Dependencies point one way: `cli/dev -> app -> api -> service -> {keys, cache, audit,
//! store}`, `keys -> {crypto, store}`; `domain` and `config` are leaves anyone may use.

/// The HTTP API: routes, extractors, the one error-to-HTTP mapping.
pub mod api;
/// Composition root: builds the vault from settings and serves it.
pub mod app;
/// Append-only, hash-chained audit trail written in batches off the request path.
pub mod audit;
/// The in-memory secret cache (moka): bounded, TTL, single-flight loads.
pub mod cache;
/// The command line.
pub mod cli;
/// Settings: flags, environment variables, redacted secrets.
pub mod config;
/// Pure cryptography: envelopes, key derivation, zeroizing types.
pub mod crypto;
/// `tenant-vault dev`, the one-command local vault.
pub mod dev;
/// Validated names and ids.
pub mod domain;
/// `tenant-vault infisical-emulator`.
pub mod emulator_cmd;
/// `tenant-vault import infisical`.
pub mod import_cmd;
/// Infisical: the API client (Universal Auth, retries, circuit breaker) and a faithful emulator.
pub mod infisical;
/// Master key sources and keyrings; the only module that wraps and unwraps keys.
pub mod keys;
/// A private PostgreSQL cluster from the machine's binaries (dev mode and tests).
pub mod pg;
/// The vault's operations: auth, tenants, tokens, secret lookup and writes.
pub mod service;
/// PostgreSQL queries.
pub mod store;
/// Logging set-up.
pub mod telemetry;
