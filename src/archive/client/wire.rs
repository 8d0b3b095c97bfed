//! What the archive stores: one tenant-vault version per KV v2 version, as JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::SecretValue;

/// One version as the archive stores it (the KV entry's data).
#[derive(Debug)]
pub struct ArchivedEntry {
    pub value: SecretValue,
    pub secret_id: Uuid,
    /// The tenant-vault version.
    pub version: i32,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub archived_at: DateTime<Utc>,
    pub retain_until: DateTime<Utc>,
}

#[derive(Serialize)]
pub(super) struct WireEntryOut<'a> {
    pub(super) value: &'a str,
    pub(super) secret_id: Uuid,
    pub(super) tenant_vault_version: i32,
    pub(super) reason: &'a str,
    pub(super) created_at: DateTime<Utc>,
    pub(super) archived_at: DateTime<Utc>,
    pub(super) retain_until: DateTime<Utc>,
}

#[derive(Deserialize)]
pub(super) struct WireEntryIn {
    pub(super) value: String,
    pub(super) secret_id: Uuid,
    pub(super) tenant_vault_version: i32,
    pub(super) reason: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) archived_at: DateTime<Utc>,
    pub(super) retain_until: DateTime<Utc>,
}
