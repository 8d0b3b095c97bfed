//! tenant-vault: per-tenant encrypted secrets in PostgreSQL, served over HTTP.
//!
//! Dependencies point one way; no module imports one above it:
//!
//! ```text
//! cli (with cli::dev)                     the commands
//!  -> app                                 composition root, the one place that serves
//!   -> api                                HTTP routes
//!    -> service                           the vault's operations
//!     -> keys, cache, infisical, archive, audit
//!                                         key rings, caches, Infisical and OpenBao clients, audit
//!                                         (one sideways edge: keys -> infisical, the Infisical
//!                                         master key source)
//!      -> store                           SQL
//!       -> crypto, domain                 pure (crypto uses domain's names)
//! ```
//!
//! Beside the chain, leaves anyone below `cli` may import: `config` (settings; secrets in
//! `crypto`'s `SecretValue`), `breaker` (the circuit breaker of the Infisical and OpenBao
//! clients and the service), `failpoint` (test-only crash points), `telemetry` (logging and
//! metrics set-up, used by `cli` and `api`; reads `config`), `server` (the accept loop `app`
//! serves with: header and idle timeouts, a connection cap), `tls` (the HTTPS acceptor
//! `server` and `app` use, a local CA for `dev` and `pg`), and `pg` (a private PostgreSQL for
//! `cli::dev` and the tests; uses `tls`).

/// The HTTP API: routes, extractors, the one error-to-HTTP mapping.
pub mod api;
/// Composition root: builds the vault from settings and serves it.
pub mod app;
/// The cold vault: versions out of retention and deleted secrets archived to OpenBao KV v2.
pub mod archive;
/// Append-only, hash-chained audit trail written in batches off the request path.
pub mod audit;
/// A circuit breaker for remote dependencies (a leaf, like `domain`).
pub mod breaker;
/// The in-memory secret cache (moka): bounded, TTL, single-flight loads.
pub mod cache;
/// The command line: one module per command under `cli/`, including `tenant-vault dev`.
pub mod cli;
/// Settings: flags, environment variables, redacted secrets.
pub mod config;
/// Pure cryptography: envelopes, key derivation, zeroizing types.
pub mod crypto;
/// Validated names and ids.
pub mod domain;
/// Test-only crash points (`TENANT_VAULT_TEST_FAILPOINT`) for tests/faults.rs.
pub mod failpoint;
/// Infisical: the API client (Universal Auth, retries, circuit breaker) and a faithful emulator.
pub mod infisical;
/// Master key sources and keyrings; the only module that wraps and unwraps keys.
pub mod keys;
/// A private PostgreSQL cluster from the machine's binaries (dev mode and tests).
pub mod pg;
/// The accept loop: header-read and idle timeouts, connection cap, client addresses.
pub mod server;
/// The vault's operations: auth, tenants, tokens, secret lookup and writes.
pub mod service;
/// PostgreSQL queries.
pub mod store;
/// Logging and metrics set-up.
pub mod telemetry;
/// TLS: the reloadable server acceptor and a local CA for dev mode and tests.
pub mod tls;
