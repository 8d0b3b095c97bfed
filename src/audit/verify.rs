//! Verification: streams the table back and checks every link, every chain value and every
//! checkpoint, naming the first row that does not hold.

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use sqlx::PgPool;

use super::chain::{
    chain_hash, event_of, keyed_chain_hash, ChainKey, FoundCheckpoint, CHAIN_KEYED,
};
use crate::store::{self, StoreError};

/// What a clean verification saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub rows: u64,
    pub keyed_rows: u64,
    pub last_id: Option<i64>,
    pub checkpoints_checked: usize,
}

/// The first problem found, naming the row.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("row {id}: its chain value does not match its contents: the row was edited")]
    EditedRow { id: i64 },
    #[error(
        "row {id} does not link to row {after}, the row before it: rows between them were deleted"
    )]
    MissingRows { after: i64, id: i64 },
    #[error(
        "the first row, {id}, links to an earlier row: rows before it were deleted \
         (the table was truncated or its start cut)"
    )]
    StartCut { id: i64 },
    #[error(
        "row {id} carries a plain SHA-256 chain value where the audit key's HMAC belongs: \
         the chain was recomputed without the key"
    )]
    RecomputedWithoutKey { id: i64 },
    #[error(
        "row {id} is unkeyed (chain version 1) but keyed rows begin at row {keyed_from}: \
         the chain was recomputed without the key"
    )]
    Downgraded { id: i64, keyed_from: i64 },
    #[error(
        "row {id} differs from the checkpoint in {place} (taken {time}): the chain was \
         rewritten up to it"
    )]
    CheckpointMismatch {
        id: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error(
        "{found} rows up to row {id}, but the checkpoint in {place} (taken {time}) counted \
         {expected}: rows were deleted and the chain recomputed"
    )]
    CheckpointCount {
        id: i64,
        expected: i64,
        found: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error(
        "the table ends at row {last_id}, but the checkpoint in {place} (taken {time}) \
         records row {checkpoint_id}: the tail was cut"
    )]
    CutTail {
        last_id: i64,
        checkpoint_id: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error(
        "the table is empty, but the checkpoint in {place} (taken {time}) records {count} \
         rows up to row {checkpoint_id}: the table was truncated"
    )]
    Truncated {
        checkpoint_id: i64,
        count: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error(
        "row {checkpoint_id}, recorded by the checkpoint in {place} (taken {time}), is \
         missing: the table was truncated or rows deleted"
    )]
    CheckpointRowMissing {
        checkpoint_id: i64,
        place: String,
        time: DateTime<Utc>,
    },
    #[error("reading the audit table failed: {0}")]
    Store(StoreError),
}

/// Streams the whole table in id order (constant memory) and checks every link, every
/// chain value (version 1: SHA-256; version 2: HMAC under `key`), that no unkeyed row
/// follows a keyed one, and each checkpoint: its row, chain value and count, and that the
/// table reaches it. Returns the first problem.
pub async fn verify(
    pool: &PgPool,
    key: &dyn ChainKey,
    checkpoints: &[FoundCheckpoint],
) -> Result<VerifyReport, VerifyError> {
    let keyed_from = checkpoints
        .iter()
        .filter_map(|c| c.checkpoint.keyed_from_id)
        .min();
    let mut rows = store::audit::stream_all(pool);
    let mut prev = vec![0u8; 32];
    let mut last_id: Option<i64> = None;
    let (mut count, mut keyed_rows) = (0u64, 0u64);
    let mut first_keyed: Option<i64> = None;
    let mut matched = vec![false; checkpoints.len()];
    while let Some(row) = rows.next().await {
        let r = row.map_err(VerifyError::Store)?;
        count += 1;
        if r.prev_hash != prev {
            return Err(match last_id {
                None => VerifyError::StartCut { id: r.id },
                Some(after) => VerifyError::MissingRows { after, id: r.id },
            });
        }
        let event = event_of(&r);
        if r.chain_version == CHAIN_KEYED {
            keyed_rows += 1;
            first_keyed.get_or_insert(r.id);
            if r.hash != keyed_chain_hash(key, &prev, &event) {
                return Err(if r.hash == chain_hash(&prev, &event) {
                    VerifyError::RecomputedWithoutKey { id: r.id }
                } else {
                    VerifyError::EditedRow { id: r.id }
                });
            }
        } else {
            let keyed_from = first_keyed.or(keyed_from.filter(|k| *k <= r.id));
            if let Some(keyed_from) = keyed_from {
                return Err(VerifyError::Downgraded {
                    id: r.id,
                    keyed_from,
                });
            }
            if r.hash != chain_hash(&prev, &event) {
                return Err(VerifyError::EditedRow { id: r.id });
            }
        }
        for (i, found) in checkpoints.iter().enumerate() {
            let cp = &found.checkpoint;
            if cp.last_id != r.id {
                continue;
            }
            matched[i] = true;
            if cp.last_hash != hex::encode(&r.hash) {
                return Err(VerifyError::CheckpointMismatch {
                    id: r.id,
                    place: found.source.clone(),
                    time: cp.time,
                });
            }
            if cp.count != count as i64 {
                return Err(VerifyError::CheckpointCount {
                    id: r.id,
                    expected: cp.count,
                    found: count as i64,
                    place: found.source.clone(),
                    time: cp.time,
                });
            }
        }
        prev = r.hash;
        last_id = Some(r.id);
    }
    for (found, matched) in checkpoints.iter().zip(matched) {
        if matched {
            continue;
        }
        let cp = &found.checkpoint;
        let (place, time) = (found.source.clone(), cp.time);
        return Err(match last_id {
            None => VerifyError::Truncated {
                checkpoint_id: cp.last_id,
                count: cp.count,
                place,
                time,
            },
            Some(last_id) if last_id < cp.last_id => VerifyError::CutTail {
                last_id,
                checkpoint_id: cp.last_id,
                place,
                time,
            },
            Some(_) => VerifyError::CheckpointRowMissing {
                checkpoint_id: cp.last_id,
                place,
                time,
            },
        });
    }
    Ok(VerifyReport {
        rows: count,
        keyed_rows,
        last_id,
        checkpoints_checked: checkpoints.len(),
    })
}
