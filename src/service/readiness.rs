//! Readiness, as `/readyz` reports it: the database answers, the audit trail is writable and a
//! master key is loaded.

use std::time::Duration;

use super::Vault;
use crate::infisical::BreakerState;
use crate::store;

/// One readiness check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// The database answered within the time allowed.
    pub database: bool,
    /// Audit events are being stored or journalled.
    pub audit: bool,
    /// The version new data keys are wrapped under; 0 when none is loaded.
    pub master_key_version: i32,
    /// The Infisical lookup's circuit breaker (None: no fallback configured). Informational:
    /// an open breaker does not make the service unready, cached and stored secrets still serve.
    pub infisical_breaker: Option<BreakerState>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.database && self.audit && self.master_key_version > 0
    }
}

impl Vault {
    /// Checks the dependencies a request needs; the database gets at most `timeout`.
    pub async fn readiness(&self, timeout: Duration) -> Readiness {
        let db = tokio::time::timeout(timeout, store::ping(&self.pool)).await;
        Readiness {
            database: matches!(db, Ok(Ok(()))),
            audit: !self.audit.is_failing(),
            master_key_version: self.masters().active_version(),
            infisical_breaker: self.fallback.as_ref().and_then(|f| f.breaker_state()),
        }
    }
}
