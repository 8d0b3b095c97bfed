//! Infisical: the HTTP client tenant-vault uses to reach it, and an in-memory emulator of the
//! part of its API that the client uses.
//!
//! Infisical holds the master key (folder `/tenant-vault` by default) and the secrets that have
//! not been migrated into PostgreSQL yet (folders `/tenants/{slug}`). The same client code has to
//! work against Infisical Cloud, old and new self-hosted servers, and the emulator, so both
//! halves follow `infisical-api.md` (paths, fields, status codes) rather than each other.
//!
//! - [`client`]: Universal Auth login and token refresh, retries with jittered backoff,
//!   `Retry-After`, a circuit breaker, size limits, and error messages that never carry a
//!   token, client secret or value.
//! - [`emulator`]: an axum router that answers like the real server, with fault switches
//!   for latency, 5xx, 429, outages and token expiry. See `docs/infisical-emulator.md`.
//! - [`paths`]: the allow-lists that keep a tenant inside `/tenants/{slug}`.

mod breaker;
pub mod client;
pub mod emulator;
pub mod paths;
pub mod webhook;

pub use breaker::BreakerState;
pub use client::{ConfigError, Folder, InfisicalClient, InfisicalConfig, InfisicalError, Secret};
pub use emulator::{Emulator, EmulatorConfig, EmulatorError, EmulatorHandle, Faults, Seed};
pub use paths::{tenant_folder, validate_folder_path, validate_secret_name};

/// Infisical's value trimming on create and update: leading and trailing whitespace is removed,
/// and if the submitted value ended in `\n`, one `\n` is put back. (JavaScript's `trim()`,
/// which also strips U+FEFF.) The client uses it to predict what the server will store.
pub fn trim_value(value: &str) -> String {
    let mut out = value
        .trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
        .to_owned();
    if value.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::trim_value;

    #[test]
    fn trimming_matches_the_server() {
        assert_eq!(trim_value("  padded value  "), "padded value");
        assert_eq!(trim_value("  line1\nline2\n"), "line1\nline2\n");
        assert_eq!(trim_value(""), "");
        assert_eq!(trim_value("\n"), "\n");
        assert_eq!(trim_value("a\r\n"), "a\n");
        assert_eq!(trim_value("\tx\t"), "x");
        assert_eq!(trim_value("bWFzdGVy=="), "bWFzdGVy==");
    }
}
