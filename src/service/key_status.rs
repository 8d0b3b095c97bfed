//! `GET /v1/admin/keys`: the state of every key, in one report. Counts and versions only.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::RequestContext;
use super::{ServiceError, Vault};
use crate::domain::{DataKeyState, MasterKeyState};
use crate::store;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyStatus {
    pub master_key: MasterKeyStatus,
    pub data_keys: DataKeyCounts,
    pub secrets_under_decrypt_only_keys: UnderOldKeys,
    pub reencryption: Vec<ReencryptionJob>,
    pub last_rotation: LastRotations,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MasterKeyStatus {
    /// The version new data keys are wrapped under, per the database.
    pub active_version: i32,
    /// The version this replica has active in memory (equal, unless a change is on its way).
    pub loaded_active_version: i32,
    pub versions: Vec<MasterVersion>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MasterVersion {
    pub version: i32,
    pub state: MasterKeyState,
    pub source: String,
    pub secret_name: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Data keys wrapped under this version. A retired version at 0 is needed only to read
    /// backups taken before it was retired.
    pub wrapped_data_keys: i64,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct DataKeyCounts {
    pub active: i64,
    pub decrypt_only: i64,
    pub destroyed: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnderOldKeys {
    /// Current values.
    pub current: i64,
    /// Kept earlier versions.
    pub kept_versions: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReencryptionJob {
    pub tenant: String,
    pub state: &'static str,
    pub total: i64,
    pub done: i64,
    pub remaining: i64,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct LastRotations {
    pub master_key: Option<Rotation>,
    pub data_key: Option<Rotation>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Rotation {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    pub previous_version: i32,
    pub version: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrapped_data_keys: Option<i32>,
    pub automatic: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub elapsed_ms: i64,
}

/// Jobs listed: every unfinished one, then the most recent finished ones, up to this many.
const JOBS_LISTED: i64 = 100;

impl Vault {
    /// The key report, audited as `keys.read` (it shows what protects everything).
    pub async fn read_key_status(&self, ctx: &RequestContext) -> Result<KeyStatus, ServiceError> {
        let status = self.key_status().await?;
        self.audit.record(self.event(
            ctx,
            crate::audit::AuditAction::KeysRead,
            crate::audit::AuditOutcome::Success,
        ));
        Ok(status)
    }

    pub async fn key_status(&self) -> Result<KeyStatus, ServiceError> {
        let versions = store::key_status::master_versions(&self.pool).await?;
        let active_version = versions
            .iter()
            .find(|v| v.state == MasterKeyState::Active)
            .map_or(0, |v| v.version);
        let mut data_keys = DataKeyCounts::default();
        for (state, n) in store::key_status::data_keys_by_state(&self.pool).await? {
            match state {
                DataKeyState::Active => data_keys.active = n,
                DataKeyState::DecryptOnly => data_keys.decrypt_only = n,
                DataKeyState::Destroyed => data_keys.destroyed += n,
            }
        }
        let (current, kept_versions) = store::key_status::under_decrypt_only(&self.pool).await?;
        let reencryption = store::key_status::jobs(&self.pool, JOBS_LISTED)
            .await?
            .into_iter()
            .map(|j| ReencryptionJob {
                tenant: j.slug,
                state: if j.finished_at.is_some() {
                    "finished"
                } else {
                    "running"
                },
                total: j.total,
                done: j.done,
                remaining: j.remaining,
                started_at: j.started_at,
                updated_at: j.updated_at,
                finished_at: j.finished_at,
            })
            .collect();
        let mut last_rotation = LastRotations::default();
        for r in store::key_status::last_rotations(&self.pool).await? {
            let is_master = r.kind == "master_key";
            let rotation = Rotation {
                tenant: r.tenant_slug,
                previous_version: r.previous_version,
                version: r.version,
                rewrapped_data_keys: is_master.then_some(r.rewrapped_data_keys),
                automatic: r.automatic,
                started_at: r.started_at,
                finished_at: r.finished_at,
                elapsed_ms: r.elapsed_ms,
            };
            if is_master {
                last_rotation.master_key = Some(rotation);
            } else {
                last_rotation.data_key = Some(rotation);
            }
        }
        Ok(KeyStatus {
            master_key: MasterKeyStatus {
                active_version,
                loaded_active_version: self.masters().active_version(),
                versions: versions
                    .into_iter()
                    .map(|v| MasterVersion {
                        version: v.version,
                        state: v.state,
                        source: v.source,
                        secret_name: v.infisical_secret_name,
                        created_at: v.created_at,
                        wrapped_data_keys: v.wrapped_data_keys,
                    })
                    .collect(),
            },
            data_keys,
            secrets_under_decrypt_only_keys: UnderOldKeys {
                current,
                kept_versions,
            },
            reencryption,
            last_rotation,
        })
    }
}
