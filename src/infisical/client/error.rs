//! What the client can fail with. Every message names what went wrong and never carries a
//! token, the client secret or a secret value.

use std::time::Duration;

/// Everything the client can fail with. Messages name what went wrong and never include a
/// token, the client secret or a secret value.
#[derive(Debug, thiserror::Error)]
pub enum InfisicalError {
    /// A path, name or value was refused before any request was made.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The client configuration is unusable (bad site URL, missing setting).
    #[error("invalid Infisical configuration: {0}")]
    Config(#[from] ConfigError),
    /// Connection refused, reset, DNS failure, or 5xx answers after all retries.
    #[error("Infisical is unavailable: {0}")]
    Unavailable(String),
    /// No answer within the per-request timeout, after all retries.
    #[error("Infisical did not answer within {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open after repeated failures: no request was made.
    #[error("Infisical is unavailable: circuit breaker open after repeated failures")]
    CircuitOpen,
    /// 429 after all retries, or a `Retry-After` longer than the client is willing to wait.
    #[error("Infisical rate limit exceeded{}", fmt_retry_after(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// Login refused, or the server kept refusing a freshly obtained token.
    #[error("Infisical refused authentication: {0}")]
    Unauthorized(String),
    /// The machine identity lacks a permission (403 other than `TokenError`).
    #[error("Infisical denied access: {0}")]
    Forbidden(String),
    /// `create_secret` of a name that exists.
    #[error("secret already exists in Infisical")]
    AlreadyExists,
    /// `update_secret` of a secret that does not exist.
    #[error("secret not found in Infisical")]
    NotFound,
    /// A write into a folder that does not exist (Infisical never creates folders on writes).
    #[error("Infisical folder {0} does not exist")]
    FolderNotFound(String),
    /// A read of `version` N came back with another version: this server ignores `?version=`.
    #[error(
        "Infisical returned version {got} when version {requested} was asked for \
         (this server ignores ?version=)"
    )]
    VersionMismatch { requested: i64, got: i64 },
    /// Any other 4xx answer.
    #[error("Infisical rejected the request (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    /// An answer that is not what the API documents (malformed JSON, missing fields,
    /// redirects, unknown route).
    #[error("invalid response from Infisical: {0}")]
    InvalidResponse(String),
    /// A secret value (or a whole response) larger than the configured limit.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: &'static str, limit: usize },
}

fn fmt_retry_after(d: &Option<Duration>) -> String {
    match d {
        Some(d) => format!(" (retry after {}s)", d.as_secs()),
        None => String::new(),
    }
}

impl InfisicalError {
    /// Errors that mean "Infisical cannot be used right now" (answer 503, keep serving what is
    /// cached), as opposed to answers about the request itself.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Timeout(_) | Self::CircuitOpen | Self::RateLimited { .. }
        )
    }
}

pub type Result<T, E = InfisicalError> = std::result::Result<T, E>;

/// Why a client configuration is unusable. Names the setting, never its value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required environment variable is unset or blank.
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("INFISICAL_SITE_URL is not a valid URL")]
    SiteUrlInvalid,
    #[error("INFISICAL_SITE_URL must be an http or https URL")]
    SiteUrlScheme,
    #[error("INFISICAL_SITE_URL cannot be a base")]
    SiteUrlNotBase,
    #[error("client id, project id and environment must be set")]
    MissingScope,
    #[error("could not build the HTTP client")]
    HttpClient(#[source] reqwest::Error),
}
