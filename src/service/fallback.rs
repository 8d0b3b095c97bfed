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

/// A secret as the fallback holds it: its value, and the id and version that tell a later
/// re-read whether it changed.
#[derive(Debug, Clone)]
pub struct RemoteSecret {
    pub key: String,
    pub value: SecretValue,
    pub id: String,
    pub version: i32,
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
    ) -> Result<Option<RemoteSecret>, FallbackError>;
    /// Every secret of the tenant's folder (one call), for a re-read.
    async fn list(&self, tenant: &TenantSlug) -> Result<Vec<RemoteSecret>, FallbackError>;
    /// The folder a tenant's secrets live in (for origins and messages).
    fn folder(&self, tenant: &TenantSlug) -> String {
        tenant_folder(tenant)
    }
    /// The (project, environment) webhooks must name; None when unknown.
    fn scope(&self) -> Option<(String, String)> {
        None
    }
}

fn classify(e: InfisicalError) -> FallbackError {
    match e {
        InfisicalError::TooLarge { limit, .. } => FallbackError::TooLarge { limit },
        e if e.is_unavailable() || matches!(e, InfisicalError::RateLimited { .. }) => {
            FallbackError::Unavailable(Arc::new(e))
        }
        e => FallbackError::Invalid(Arc::new(e)),
    }
}

pub fn remote(secret: crate::infisical::Secret) -> RemoteSecret {
    RemoteSecret {
        value: SecretValue::new(secret.value.expose().to_owned()),
        key: secret.key,
        id: secret.id,
        version: i32::try_from(secret.version).unwrap_or(i32::MAX),
    }
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
    ) -> Result<Option<RemoteSecret>, FallbackError> {
        let folder = tenant_folder(tenant);
        // A reader is waiting: bound the whole step, retries and `Retry-After` sleeps
        // included (the client honours a 429's Retry-After up to 10 s per attempt, which
        // would hold a miss far past "503 at once").
        let deadline = self.client.config().request_timeout * 2;
        match tokio::time::timeout(
            deadline,
            self.client.get_secret(&folder, key.as_str(), None),
        )
        .await
        {
            Ok(Ok(found)) => Ok(found.map(remote)),
            Ok(Err(e)) => Err(classify(e)),
            Err(_) => Err(FallbackError::Unavailable(Arc::new(
                InfisicalError::Timeout(deadline),
            ))),
        }
    }

    async fn list(&self, tenant: &TenantSlug) -> Result<Vec<RemoteSecret>, FallbackError> {
        let folder = tenant_folder(tenant);
        match self.client.list_secrets(&folder).await {
            Ok(all) => Ok(all.into_iter().map(remote).collect()),
            Err(e) => Err(classify(e)),
        }
    }

    fn scope(&self) -> Option<(String, String)> {
        let c = self.client.config();
        Some((c.project_id.clone(), c.environment.clone()))
    }
}
