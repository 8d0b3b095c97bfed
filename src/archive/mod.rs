//! The cold vault: OpenBao KV v2 holding the versions PostgreSQL no longer keeps (fallen out
//! of retention, or of a deleted secret), at `<mount>/tenants/{slug}/{key}`, one KV version
//! per archived version. Spoken to over OpenBao's HTTP API with AppRole credentials; the
//! orchestration (archive, then prune) is `service::archive`.
//!
//! - [`client`]: AppRole login and token renewal, a circuit breaker, the KV v2 calls.
//! - [`admin`]: `tenant-vault archive init` (mount, policy, role) with an admin token.
//! - [`server`]: a local `bao` server for `dev --archive` and the tests.

pub mod admin;
pub mod client;
pub mod error;
pub mod server;

pub use client::{ArchiveClient, ArchiveConfig, ArchivedEntry, TokenInfo};
pub use error::ArchiveError;
