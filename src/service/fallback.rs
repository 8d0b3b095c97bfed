//! The third step of the lookup: a secret missing from the database is read from the tenant's
//! Infisical folder `/tenants/{tenant}/{key}`. Only validated slugs and keys get here: the
//! folder is built by `infisical::tenant_folder` from a `TenantSlug`, which cannot hold `/`,
//! `.` or `%`, so no request can climb out of `/tenants/{tenant}` (to the master key's folder, say).

use std::sync::Arc;

use async_trait::async_trait;

use crate::crypto::SecretValue;
use crate::domain::{SecretKey, TenantSlug};
use crate::infisical::{tenant_folder, BreakerState, InfisicalClient, InfisicalError};

#[derive(Debug, Clone, thiserror::Error)]
pub enum FallbackError {
    /// Unreachable or rate limiting: the lookup answers 503.
    #[error(transparent)]
    Unavailable(Arc<InfisicalError>),
    #[error("the value is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// It answered, but not with a value we can use.
    #[error(transparent)]
    Invalid(Arc<InfisicalError>),
}

/// Where secrets not yet in the database may be found.
#[async_trait]
pub trait SecretFallback: Send + Sync {
    /// For messages: "Infisical".
    fn name(&self) -> &'static str;
    /// Its circuit breaker, if it has one (reported by `/readyz`).
    fn breaker_state(&self) -> Option<BreakerState> {
        None
    }
    async fn fetch(
        &self,
        tenant: &TenantSlug,
        key: &SecretKey,
    ) -> Result<Option<SecretValue>, FallbackError>;
}

pub struct InfisicalFallback {
    client: InfisicalClient,
}

impl InfisicalFallback {
    pub fn new(client: InfisicalClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl SecretFallback for InfisicalFallback {
    fn name(&self) -> &'static str {
        "Infisical"
    }

    fn breaker_state(&self) -> Option<BreakerState> {
        Some(self.client.breaker_state())
    }

    async fn fetch(
        &self,
        tenant: &TenantSlug,
        key: &SecretKey,
    ) -> Result<Option<SecretValue>, FallbackError> {
        let folder = tenant_folder(tenant);
        match self.client.get_secret(&folder, key.as_str(), None).await {
            Ok(Some(secret)) => Ok(Some(SecretValue::new(secret.value.expose().to_owned()))),
            Ok(None) => Ok(None),
            Err(InfisicalError::TooLarge { limit, .. }) => Err(FallbackError::TooLarge { limit }),
            Err(e) if e.is_unavailable() || matches!(e, InfisicalError::RateLimited { .. }) => {
                Err(FallbackError::Unavailable(Arc::new(e)))
            }
            Err(e) => Err(FallbackError::Invalid(Arc::new(e))),
        }
    }
}
