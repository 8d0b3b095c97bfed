//! Reading the audit trail: `audit verify` (the chain and the checkpoints), `audit export`
//! (every row, streamed) and `GET /v1/admin/audit` (filtered pages, newest first).

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use super::{InputError, RequestContext, ServiceError, Vault};
use crate::audit::{self, AuditAction, AuditOutcome, FoundCheckpoint, VerifyError, VerifyReport};
use crate::domain::TenantSlug;
use crate::store::{self, audit::AuditFilter, audit::StoredAuditRow};

/// Most rows in one page of `GET /v1/admin/audit`.
pub const MAX_AUDIT_PAGE: u32 = 1000;
pub const DEFAULT_AUDIT_PAGE: u32 = 100;

/// One audit row as operators read it (API and export). Names and outcomes, never values.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub token_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub tenant: Option<String>,
    pub action: AuditAction,
    pub secret_key: Option<String>,
    pub outcome: AuditOutcome,
    pub request_id: Option<String>,
    /// 1: SHA-256 chain; 2: HMAC-SHA256 under the audit key.
    pub chain_version: i16,
    pub prev_hash: String,
    pub hash: String,
}

impl From<StoredAuditRow> for AuditRecord {
    fn from(r: StoredAuditRow) -> Self {
        Self {
            id: r.id,
            occurred_at: r.occurred_at,
            token_id: r.token_id,
            tenant_id: r.tenant_id,
            tenant: r.tenant_slug,
            action: r.action,
            secret_key: r.secret_key,
            outcome: r.outcome,
            request_id: r.request_id,
            chain_version: r.chain_version,
            prev_hash: hex::encode(r.prev_hash),
            hash: hex::encode(r.hash),
        }
    }
}

/// The filters of `GET /v1/admin/audit`.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub tenant: Option<TenantSlug>,
    pub action: Option<AuditAction>,
    pub outcome: Option<AuditOutcome>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// The previous page's `next_before`.
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditRecord>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<i64>,
}

impl Vault {
    /// Checks the whole chain under the audit key and against `checkpoints`.
    pub async fn verify_audit(
        &self,
        checkpoints: &[FoundCheckpoint],
    ) -> Result<VerifyReport, VerifyError> {
        audit::verify(&self.pool, self.audit.chain_key().as_ref(), checkpoints).await
    }

    /// Every row in id order, streamed.
    pub fn export_audit(&self) -> BoxStream<'_, Result<AuditRecord, ServiceError>> {
        store::audit::stream_all(&self.pool)
            .map(|r| r.map(AuditRecord::from).map_err(ServiceError::from))
            .boxed()
    }

    /// One page of rows, newest first (admin only; the caller checked). Audited.
    pub async fn list_audit(
        &self,
        ctx: &RequestContext,
        q: &AuditQuery,
    ) -> Result<AuditPage, ServiceError> {
        let limit = q.limit.unwrap_or(DEFAULT_AUDIT_PAGE);
        let result = async {
            if limit == 0 || limit > MAX_AUDIT_PAGE {
                return Err(InputError::AuditPageLimit {
                    max: MAX_AUDIT_PAGE,
                }
                .into());
            }
            let filter = AuditFilter {
                tenant_slug: q.tenant.as_ref().map(|t| t.to_string()),
                action: q.action,
                outcome: q.outcome,
                since: q.since,
                until: q.until,
                before_id: q.before,
            };
            // One more than asked tells whether an older page exists.
            let mut rows = store::audit::page(&self.pool, &filter, i64::from(limit) + 1).await?;
            let more = rows.len() > limit as usize;
            rows.truncate(limit as usize);
            let next_before = more.then(|| rows.last().map(|r| r.id)).flatten();
            Ok(AuditPage {
                events: rows.into_iter().map(AuditRecord::from).collect(),
                next_before,
            })
        }
        .await;
        let outcome = super::secrets::outcome(&result);
        self.audit
            .record(self.event(ctx, AuditAction::AuditRead, outcome));
        result
    }
}
