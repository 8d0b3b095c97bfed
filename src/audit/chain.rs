//! The hash chain: what each row's chain value covers (both formulas), the chained insert,
//! and the checkpoints that record the chain's head outside the database.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::AuditEvent;
use crate::store::audit::{AuditRow, ChainHead, StoredAuditRow};
use crate::store::{self, StoreError};

/// The length-prefixed encoding of a row's fields that both chain formulas hash. Written
/// straight from the event (numbers and ids formatted on the stack): this runs once per
/// audited request.
fn chain_input(prev: &[u8], e: &AuditEvent, mut update: impl FnMut(&[u8])) {
    fn text(o: &Option<String>) -> &[u8] {
        o.as_deref().unwrap_or("").as_bytes()
    }
    update(prev);
    let mut field = |bytes: &[u8]| {
        update(&(bytes.len() as u32).to_be_bytes());
        update(bytes);
    };
    let mut number = itoa::Buffer::new();
    let uuid = |field: &mut dyn FnMut(&[u8]), id: &Option<Uuid>| match id {
        Some(id) => field(
            id.hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .as_bytes(),
        ),
        None => field(b""),
    };
    field(number.format(e.occurred_at.timestamp_micros()).as_bytes());
    uuid(&mut field, &e.token_id);
    uuid(&mut field, &e.tenant_id);
    field(text(&e.tenant_slug));
    field(e.action.as_str().as_bytes());
    field(text(&e.secret_key));
    field(e.outcome.as_str().as_bytes());
    field(text(&e.request_id));
    // Fields added later (migration 0003) join the hash only when set, so rows written
    // before them still verify.
    let later_set = e.source.is_some()
        || e.route.is_some()
        || e.count.is_some()
        || e.actor.is_some()
        || e.subject.is_some();
    if later_set {
        field(text(&e.source));
        field(text(&e.route));
        match e.count {
            Some(c) => field(number.format(c).as_bytes()),
            None => field(b""),
        }
        field(text(&e.actor));
        field(text(&e.subject));
    }
}

/// Chain version 1 (rows written before the audit key): SHA-256 over the previous hash and
/// the row. Anyone with write access can recompute it, hence version 2.
pub fn chain_hash(prev: &[u8], e: &AuditEvent) -> Vec<u8> {
    let mut h = Sha256::new();
    chain_input(prev, e, |b| h.update(b));
    h.finalize().to_vec()
}

/// The chain's key: HMAC-SHA256 under the audit internal key (the keys layer holds it, wrapped
/// by the master key; the composition root hands it over behind this trait).
pub trait ChainKey: Send + Sync {
    fn mac(&self, data: &[u8]) -> [u8; 32];
}

/// Chain version 2: HMAC-SHA256 under the audit key, so a database writer cannot recompute
/// it.
pub fn keyed_chain_hash(key: &dyn ChainKey, prev: &[u8], e: &AuditEvent) -> [u8; 32] {
    let mut input = Vec::with_capacity(256);
    chain_input(prev, e, |b| input.extend_from_slice(b));
    key.mac(&input)
}

/// The chain version written from now on.
pub const CHAIN_KEYED: i16 = 2;
pub const CHAIN_UNKEYED: i16 = 1;

pub(super) fn event_of(r: &StoredAuditRow) -> AuditEvent {
    AuditEvent {
        occurred_at: r.occurred_at,
        token_id: r.token_id,
        tenant_id: r.tenant_id,
        tenant_slug: r.tenant_slug.clone(),
        action: r.action,
        secret_key: r.secret_key.clone(),
        outcome: r.outcome,
        request_id: r.request_id.clone(),
        source: r.source.clone(),
        route: r.route.clone(),
        count: r.count,
        actor: r.actor.clone(),
        subject: r.subject.clone(),
    }
}

/// Appends a batch to the chain, keyed (chain version 2), under the chain lock.
pub(super) async fn insert_chained(
    conn: &mut PgConnection,
    key: &dyn ChainKey,
    batch: &[AuditEvent],
) -> Result<(), StoreError> {
    let mut tx = conn.begin().await?;
    let tail = store::audit::lock_chain_tail(&mut tx).await?;
    let mut prev = tail.map_or([0u8; 32], |t| t.hash);
    let first_id = tail.map_or(1, |t| t.next_id());
    let rows: Vec<AuditRow<'_>> = (first_id..)
        .zip(batch)
        .map(|(id, e)| {
            let hash = keyed_chain_hash(key, &prev, e);
            AuditRow {
                id,
                occurred_at: e.occurred_at,
                token_id: e.token_id,
                tenant_id: e.tenant_id,
                tenant_slug: e.tenant_slug.as_deref(),
                action: e.action,
                secret_key: e.secret_key.as_deref(),
                outcome: e.outcome,
                request_id: e.request_id.as_deref(),
                source: e.source.as_deref(),
                route: e.route.as_deref(),
                count: e.count,
                actor: e.actor.as_deref(),
                subject: e.subject.as_deref(),
                prev_hash: std::mem::replace(&mut prev, hash),
                hash,
                chain_version: CHAIN_KEYED,
            }
        })
        .collect();
    store::audit::insert_batch(&mut tx, &rows).await?;
    tx.commit().await?;
    Ok(())
}

/// What the table looked like at one moment, kept outside the database (a file in the data
/// dir; the master key folder in Infisical), so cutting the tail or truncating the table
/// shows even though the remaining rows still chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub last_id: i64,
    /// Hex of the chain value of row `last_id`.
    pub last_hash: String,
    /// Rows with an id up to `last_id`.
    pub count: i64,
    pub time: DateTime<Utc>,
    /// Row `last_id` is keyed (chain version 2).
    pub keyed: bool,
    /// The first keyed row: every row from it on must be keyed.
    pub keyed_from_id: Option<i64>,
}

impl Checkpoint {
    pub(super) fn of(head: &ChainHead) -> Self {
        Self {
            last_id: head.last_id,
            last_hash: hex::encode(&head.last_hash),
            count: head.count,
            time: Utc::now(),
            keyed: head.chain_version == CHAIN_KEYED,
            keyed_from_id: head.keyed_from_id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("unreadable checkpoint: {0}")]
    Format(#[from] serde_json::Error),
    #[error("{0}")]
    Remote(String),
}

/// Somewhere outside the database a checkpoint is kept.
#[async_trait::async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Where, for messages ("file /var/lib/tenant-vault/audit-checkpoint.json").
    fn describe(&self) -> String;
    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError>;
    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError>;
}

/// `audit-checkpoint.json` in the data dir, replaced atomically.
pub struct FileCheckpoints {
    path: PathBuf,
}

impl FileCheckpoints {
    pub const FILE_NAME: &'static str = "audit-checkpoint.json";

    pub fn in_dir(dir: &std::path::Path) -> Self {
        Self {
            path: dir.join(Self::FILE_NAME),
        }
    }
}

#[async_trait::async_trait]
impl CheckpointStore for FileCheckpoints {
    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // Replicas may share a data dir: each writes its own temporary file.
        let tmp = self.path.with_extension(format!(
            "json.{}.{:x}.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut f = tokio::fs::File::create(&tmp).await?;
        f.write_all(&serde_json::to_vec_pretty(checkpoint)?).await?;
        f.sync_all().await?;
        tokio::fs::rename(&tmp, &self.path).await?;
        Ok(())
    }

    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A checkpoint and where it came from, for verification.
#[derive(Debug, Clone)]
pub struct FoundCheckpoint {
    pub source: String,
    pub checkpoint: Checkpoint,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditAction, AuditOutcome};

    /// The formula as first written (a string per field): rows already in tables were
    /// hashed this way, so the allocation-free `chain_input` must give the same bytes.
    fn reference_input(prev: &[u8], e: &AuditEvent) -> Vec<u8> {
        let opt = |o: &Option<Uuid>| o.map(|u| u.to_string()).unwrap_or_default();
        let mut fields = vec![
            e.occurred_at.timestamp_micros().to_string(),
            opt(&e.token_id),
            opt(&e.tenant_id),
            e.tenant_slug.clone().unwrap_or_default(),
            e.action.as_str().to_owned(),
            e.secret_key.clone().unwrap_or_default(),
            e.outcome.as_str().to_owned(),
            e.request_id.clone().unwrap_or_default(),
        ];
        let later = [
            e.source.clone(),
            e.route.clone(),
            e.count.map(|c| c.to_string()),
            e.actor.clone(),
            e.subject.clone(),
        ];
        if later.iter().any(Option::is_some) {
            fields.extend(later.map(Option::unwrap_or_default));
        }
        let mut out = prev.to_vec();
        for f in fields {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(f.as_bytes());
        }
        out
    }

    fn input(prev: &[u8], e: &AuditEvent) -> Vec<u8> {
        let mut out = Vec::new();
        chain_input(prev, e, |b| out.extend_from_slice(b));
        out
    }

    #[test]
    fn chain_input_matches_the_original_formula() {
        let prev = [7u8; 32];
        let bare = AuditEvent::new(AuditAction::SecretRead, AuditOutcome::Success);
        let mut read = bare.clone();
        read.token_id = Some(Uuid::new_v4());
        read.tenant_id = Some(Uuid::new_v4());
        read.tenant_slug = Some("acme".into());
        read.secret_key = Some("STRIPE_KEY".into());
        read.request_id = Some("req-1".into());
        let mut access = AuditEvent::new(AuditAction::AccessRateLimit, AuditOutcome::Rejected);
        access.source = Some("127.0.0.1".into());
        access.route = Some("/v1/tenants/{tenant}/secrets/{key}".into());
        access.count = Some(-12_345);
        let mut cli = bare.clone();
        cli.actor = Some("cli:alice".into());
        cli.subject = Some("token 1".into());
        for e in [&bare, &read, &access, &cli] {
            assert_eq!(input(&prev, e), reference_input(&prev, e), "{e:?}");
        }
        // Later fields are absent from rows that set none of them.
        assert!(input(&prev, &bare).len() < input(&prev, &cli).len());
    }
}
