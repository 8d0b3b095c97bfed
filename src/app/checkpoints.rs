//! The audit writer's wiring: the chain is keyed with the audit internal key, and
//! checkpoints go to the data dir and, with Infisical, beside the master key.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::audit::FoundCheckpoint;
use crate::audit::{self, Checkpoint, CheckpointError, CheckpointStore, FileCheckpoints};
use crate::keys::{InternalKey, MasterKeySource};

/// What the audit writer gets besides settings: the chain key and where checkpoints go.
pub(super) struct AuditWiring {
    pub(super) key: Arc<dyn audit::ChainKey>,
    pub(super) checkpoints: Vec<Arc<dyn CheckpointStore>>,
}

/// The audit chain is keyed with the audit internal key.
impl audit::ChainKey for InternalKey {
    fn mac(&self, data: &[u8]) -> [u8; 32] {
        InternalKey::mac(self, data)
    }
}

/// The secret in the Infisical master key folder that holds the latest audit checkpoint.
pub const AUDIT_CHECKPOINT_SECRET: &str = "AUDIT_CHECKPOINT";

/// Where audit checkpoints are kept: the data dir's file, and the master key folder when
/// the key source keeps notes (Infisical).
pub fn checkpoint_stores(
    data_dir: &Path,
    source: &Arc<dyn MasterKeySource>,
) -> Vec<Arc<dyn CheckpointStore>> {
    let mut stores: Vec<Arc<dyn CheckpointStore>> =
        vec![Arc::new(FileCheckpoints::in_dir(data_dir))];
    if source.kind() == "infisical" {
        stores.push(Arc::new(SourceCheckpoints(source.clone())));
    }
    stores
}

/// A checkpoint kept as a note of the master key source (a secret beside the master key).
struct SourceCheckpoints(Arc<dyn MasterKeySource>);

#[async_trait::async_trait]
impl CheckpointStore for SourceCheckpoints {
    fn describe(&self) -> String {
        format!("{} secret {AUDIT_CHECKPOINT_SECRET}", self.0.describe())
    }

    async fn save(&self, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
        let text = serde_json::to_string(checkpoint)?;
        self.0
            .put_note(AUDIT_CHECKPOINT_SECRET, &text)
            .await
            .map(|_| ())
            .map_err(|e| CheckpointError::Remote(e.to_string()))
    }

    async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = self
            .0
            .get_note(AUDIT_CHECKPOINT_SECRET)
            .await
            .map_err(|e| CheckpointError::Remote(e.to_string()))?;
        Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
    }
}

/// Every checkpoint the stores hold, for `audit verify`. A store that cannot be read is an
/// error: verifying without it would silently check less.
pub async fn load_checkpoints(
    stores: &[Arc<dyn CheckpointStore>],
) -> anyhow::Result<Vec<FoundCheckpoint>> {
    let mut found = Vec::new();
    for store in stores {
        let loaded = store
            .load()
            .await
            .with_context(|| format!("cannot read the audit checkpoint in {}", store.describe()))?;
        if let Some(checkpoint) = loaded {
            found.push(FoundCheckpoint {
                source: store.describe(),
                checkpoint,
            });
        }
    }
    Ok(found)
}
