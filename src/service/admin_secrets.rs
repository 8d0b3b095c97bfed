//! What an admin may see of a tenant's secrets: names, versions, dates and a masked form of
//! each value (`sk_l…5678`), never the plaintext. Admin tokens can write and roll back (see
//! `api/admin_secrets.rs`) but not read: the masked form is how an admin recognises a value.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{RequestContext, ServiceError, TenantRef, Vault};
use crate::audit::AuditAction;
use crate::domain::{DataKeyId, DataKeyState, SecretKey, SecretOrigin, TenantId, TenantSlug};
use crate::store;

/// Values shorter than this are never partly shown: too little would stay hidden.
pub const MASK_MIN_CHARS: usize = 12;
/// Characters shown at each end of a long enough value.
const MASK_SHOWN: usize = 4;
/// What a short value shows: fixed, so not even its length leaks.
pub const MASK_HIDDEN: &str = "••••••••";

/// The masked form of a value: its first and last 4 characters around an ellipsis when it has
/// at least 12 characters (so at least a third stays hidden), else a fixed mask. Counts
/// characters, not bytes, so a multi-byte character is never cut.
pub fn mask(value: &str) -> String {
    let count = value.chars().count();
    if count < MASK_MIN_CHARS {
        return MASK_HIDDEN.to_owned();
    }
    let head: String = value.chars().take(MASK_SHOWN).collect();
    let tail: String = value.chars().skip(count - MASK_SHOWN).collect();
    format!("{head}…{tail}")
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MaskedSecret {
    pub key: String,
    pub version: i32,
    pub updated_at: DateTime<Utc>,
    /// `api` (written through tenant-vault) or `infisical` (imported from Infisical).
    pub origin: SecretOrigin,
    pub masked: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MaskedVersion {
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub current: bool,
    pub masked: String,
}

/// The tenant's active data key, as the console shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantDataKey {
    pub version: i32,
    pub state: DataKeyState,
    pub master_key_version: i32,
    pub encryptions: i64,
}

impl Vault {
    /// A live tenant by slug, for admin routes that act on one (404 if there is none).
    pub async fn admin_tenant(&self, slug: &TenantSlug) -> Result<TenantRef, ServiceError> {
        let row = self
            .tenant_by_slug(slug)
            .await?
            .ok_or(ServiceError::TenantNotFound)?;
        Ok(TenantRef {
            id: row.id,
            slug: slug.clone(),
        })
    }

    /// Every current secret of the tenant with its masked value. Decrypts each value on the
    /// server to mask it; audited as a listing.
    pub async fn list_masked_secrets(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
    ) -> Result<Vec<MaskedSecret>, ServiceError> {
        self.ensure_auditable()?;
        let result = async {
            let mut rows = store::sync::origins(&self.pool, tenant.id).await?;
            rows.sort_by(|a, b| a.secret_key.cmp(&b.secret_key));
            let mut out = Vec::new();
            for row in rows {
                let key = SecretKey::parse(&row.secret_key).map_err(ServiceError::internal)?;
                // Deleted since the listing: leave it out.
                let Some(secret) = self.load_from_database(tenant.id, &key).await? else {
                    continue;
                };
                out.push(MaskedSecret {
                    key: row.secret_key,
                    version: secret.version,
                    updated_at: secret.updated_at,
                    origin: row.origin,
                    masked: mask(secret.value.expose()),
                });
            }
            Ok(out)
        }
        .await;
        self.audited(ctx, AuditAction::SecretList, tenant, None, result)
            .await
    }

    /// A secret's versions, newest first, each with its masked value (so an admin can tell
    /// which one to roll back to).
    pub async fn list_masked_versions(
        &self,
        ctx: &RequestContext,
        tenant: &TenantRef,
        key: &SecretKey,
    ) -> Result<Vec<MaskedVersion>, ServiceError> {
        let versions = self.list_versions(ctx, tenant, key).await?;
        let mut out = Vec::with_capacity(versions.len());
        for v in versions {
            let masked = match self.load_version(tenant.id, key, v.version).await {
                Ok(secret) => mask(secret.value.expose()),
                // Pruned between the listing and this read.
                Err(ServiceError::VersionNotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            out.push(MaskedVersion {
                version: v.version,
                created_at: v.created_at,
                current: v.current,
                masked,
            });
        }
        Ok(out)
    }

    /// The tenant's active data key and how many encryptions it has made.
    pub async fn tenant_data_key(
        &self,
        tenant: TenantId,
    ) -> Result<Option<TenantDataKey>, ServiceError> {
        let Some(row) = store::data_keys::active_for_tenant(&self.pool, tenant).await? else {
            return Ok(None);
        };
        let encryptions = store::data_keys::encryption_count(&self.pool, DataKeyId(row.id))
            .await?
            .unwrap_or(0);
        Ok(Some(TenantDataKey {
            version: row.version,
            state: row.state,
            master_key_version: row.master_key_version,
            encryptions,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_show_four_characters_at_each_end() {
        assert_eq!(mask("sk_live_12345678"), "sk_l…5678");
        assert_eq!(mask("abcdefghijkl"), "abcd…ijkl"); // exactly 12
    }

    #[test]
    fn short_values_show_nothing_not_even_their_length() {
        assert_eq!(mask(""), MASK_HIDDEN);
        assert_eq!(mask("abc"), MASK_HIDDEN);
        assert_eq!(mask("abcdefghijk"), MASK_HIDDEN); // 11
    }

    #[test]
    fn counts_characters_not_bytes() {
        // 12 characters, 24+ bytes: masked, and no character is cut in half.
        let value = "ééééxxxxüüüü";
        assert_eq!(mask(value), "éééé…üüüü");
        // 11 multi-byte characters (more than 12 bytes) stay hidden.
        assert_eq!(mask("ééééééééééé"), MASK_HIDDEN);
    }

    #[test]
    fn never_shows_more_than_eight_characters() {
        let value: String = ('a'..='z').cycle().take(500).collect();
        let masked = mask(&value);
        assert_eq!(masked.chars().filter(|c| *c != '…').count(), 8);
    }
}
