//! How to reach Infisical: site, machine identity, project, environment, and the limits for
//! timeouts, retries, the breaker and sizes.

use std::fmt;
use std::time::Duration;

use zeroize::Zeroizing;

use super::error::{ConfigError, Result};

/// How to reach Infisical. `Debug` redacts the client secret.
#[derive(Clone)]
pub struct InfisicalConfig {
    /// `https://app.infisical.com`, `https://eu.infisical.com` or a self-hosted base URL,
    /// without `/api` (a trailing `/api` is tolerated and dropped).
    pub site_url: String,
    pub client_id: String,
    pub client_secret: Zeroizing<String>,
    pub project_id: String,
    /// Environment slug, e.g. `dev` or `prod`.
    pub environment: String,
    /// Whole-request timeout, body included. Default 5 s.
    pub request_timeout: Duration,
    /// Retries after the first attempt on 5xx, timeouts, transport errors and 429. Default 3.
    pub max_retries: u32,
    /// First backoff step (full jitter, doubling). Default 100 ms.
    pub retry_base_delay: Duration,
    /// Longest single backoff sleep. Default 2 s.
    pub retry_max_delay: Duration,
    /// Longest `Retry-After` the client will sleep; a longer one fails at once with
    /// [`InfisicalError::RateLimited`]. Default 10 s.
    pub max_retry_after: Duration,
    /// Consecutive failed attempts (transport, timeout, 5xx) that open the breaker. Default 5.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before one probe is let through. Default 10 s.
    pub breaker_cooldown: Duration,
    /// Largest secret value accepted in either direction. Default 64 KiB.
    pub max_value_bytes: usize,
    /// Largest response body read (lists). Default 16 MiB.
    pub max_response_bytes: usize,
}

impl fmt::Debug for InfisicalConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfisicalConfig")
            .field("site_url", &self.site_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("project_id", &self.project_id)
            .field("environment", &self.environment)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("breaker_threshold", &self.breaker_threshold)
            .field("breaker_cooldown", &self.breaker_cooldown)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl InfisicalConfig {
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;

    /// A configuration with the defaults documented on each field.
    pub fn new(
        site_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        project_id: impl Into<String>,
        environment: impl Into<String>,
    ) -> Self {
        Self {
            site_url: site_url.into(),
            client_id: client_id.into(),
            client_secret: Zeroizing::new(client_secret.into()),
            project_id: project_id.into(),
            environment: environment.into(),
            request_timeout: Duration::from_secs(5),
            max_retries: 3,
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(10),
            max_value_bytes: Self::DEFAULT_MAX_VALUE_BYTES,
            max_response_bytes: 16 * 1024 * 1024,
        }
    }

    /// Reads `INFISICAL_SITE_URL` (default `https://app.infisical.com`),
    /// `INFISICAL_CLIENT_ID`, `INFISICAL_CLIENT_SECRET`, `INFISICAL_PROJECT_ID` and
    /// `INFISICAL_ENVIRONMENT` (all required).
    pub fn from_env() -> Result<Self> {
        fn var(name: &'static str) -> Result<String, ConfigError> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                _ => Err(ConfigError::Missing(name)),
            }
        }
        let site = std::env::var("INFISICAL_SITE_URL")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| "https://app.infisical.com".to_owned());
        Ok(Self::new(
            site,
            var("INFISICAL_CLIENT_ID")?,
            var("INFISICAL_CLIENT_SECRET")?,
            var("INFISICAL_PROJECT_ID")?,
            var("INFISICAL_ENVIRONMENT")?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts() {
        let cfg = InfisicalConfig::new("http://x", "id", "s3cr3t-client", "p", "dev");
        let text = format!("{cfg:?}");
        assert!(!text.contains("s3cr3t-client"), "{text}");
        assert!(text.contains("[redacted]"));
        let v = crate::crypto::SecretValue::new("sk_live_123".into());
        assert_eq!(format!("{v:?}"), "SecretValue([redacted])");
        assert_eq!(v.expose(), "sk_live_123");
    }
}
