//! The audit trail. Requests hand events to a channel and move on; one background writer per
//! process batches them into `audit_events` (one binary `COPY` at least every 100 ms),
//! chaining each row to the previous one with HMAC-SHA256 under the audit key (chain version
//! 2; rows from before the key used plain SHA-256, version 1). While the database is
//! unreachable, batches go to an append-only journal file and are replayed, in order, when it
//! returns. Only if the journal cannot be written either does `is_failing` turn true, and
//! requests answer 503. In strict mode an answer waits until its event is committed.
//!
//! Every `checkpoint_every`, the writer records the table's head (last id, chain value,
//! count) outside the database; `verify` streams the table and checks chain and checkpoints.
//!
//! An event has no field that could hold a secret value: that is the whole redaction policy.
//!
//! One file per concern: `writer` (the channel, batching, journal and access counts), `chain`
//! (the hash formulas, the chained insert and the checkpoints kept outside the database),
//! `verify` (reading the table back against both). Everything is re-exported here, so callers
//! keep writing `audit::AuditSink`, `audit::verify`.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::config::AuditMode;
pub use crate::domain::{AuditAction, AuditOutcome};

mod chain;
mod verify;
mod writer;

pub use chain::{
    chain_hash, keyed_chain_hash, ChainKey, Checkpoint, CheckpointError, CheckpointStore,
    FileCheckpoints, FoundCheckpoint, CHAIN_KEYED, CHAIN_UNKEYED,
};
pub use verify::{verify, VerifyError, VerifyReport};
pub use writer::{
    spawn_writer, AccessKey, AuditSink, NotDurable, WriterSettings, AUDIT_WRITER_APPLICATION_NAME,
};

/// One audited action. Built by the service; carries names and outcomes, never values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub occurred_at: DateTime<Utc>,
    pub token_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub tenant_slug: Option<String>,
    pub action: AuditAction,
    pub secret_key: Option<String>,
    pub outcome: AuditOutcome,
    pub request_id: Option<String>,
    /// Aggregated access rows: the client address (or `-`), the route template, how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// Who ran a command when no token did (`cli:<os user>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What the action was done to, when it is not a tenant or a secret (a token id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl AuditEvent {
    pub fn new(action: AuditAction, outcome: AuditOutcome) -> Self {
        Self {
            // Microseconds: what PostgreSQL keeps, so the hash recomputes from the row.
            occurred_at: Utc::now().trunc_subsecs(6),
            token_id: None,
            tenant_id: None,
            tenant_slug: None,
            action,
            secret_key: None,
            outcome,
            request_id: None,
            source: None,
            route: None,
            count: None,
            actor: None,
            subject: None,
        }
    }
}
