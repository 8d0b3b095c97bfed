//! Tenants: creation (with the first data key, in one transaction) and deletion
//! (crypto-shredding: the data keys are destroyed in the same transaction).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{InputError, RequestContext, ServiceError, Vault};
use crate::audit::{AuditAction, AuditOutcome};
use crate::domain::{TenantId, TenantSlug};
use crate::store::{self, StoreError};

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub slug: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Whether it reads its Infisical folder (set on creation answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infisical_import: Option<bool>,
}

impl Vault {
    pub async fn create_tenant(
        &self,
        ctx: &RequestContext,
        slug: &TenantSlug,
        name: &str,
    ) -> Result<Tenant, ServiceError> {
        self.create_tenant_with(ctx, slug, name, None).await
    }

    /// `create_tenant`, saying whether the tenant reads its Infisical folder
    /// (`infisical_import`). None: yes, unless a deleted tenant had this slug (its secrets
    /// in Infisical belong to the old tenant; a new one starts empty unless asked).
    pub async fn create_tenant_with(
        &self,
        ctx: &RequestContext,
        slug: &TenantSlug,
        name: &str,
        infisical_import: Option<bool>,
    ) -> Result<Tenant, ServiceError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(InputError::TenantNameLength.into());
        }
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let row = match store::tenants::insert(&mut *tx, TenantId(Uuid::new_v4()), slug, name).await
        {
            Ok(row) => row,
            Err(StoreError::Conflict(_)) => return Err(ServiceError::TenantExists),
            Err(e) => return Err(e.into()),
        };
        let tenant = TenantId(row.id);
        let import = match infisical_import {
            Some(import) => import,
            None => !store::sync::slug_was_used(&mut *tx, slug).await?,
        };
        store::sync::set_import(&mut *tx, tenant, import).await?;
        self.data_keys.create(&mut tx, tenant, 1).await?;
        self.notify_tenant(&mut tx, tenant, &row.slug, &[], false)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;

        let mut e = self.event(ctx, AuditAction::TenantCreate, AuditOutcome::Success);
        e.tenant_id = Some(row.id);
        e.tenant_slug = Some(row.slug.clone());
        self.audit.record(e);
        Ok(Tenant {
            id: tenant,
            slug: row.slug,
            name: row.name,
            created_at: row.created_at,
            infisical_import: Some(import),
        })
    }

    /// Deletes a tenant: destroys its data keys (its ciphertext becomes unreadable for good),
    /// revokes its tokens and marks it deleted, all in one transaction.
    pub async fn delete_tenant(
        &self,
        ctx: &RequestContext,
        slug: &TenantSlug,
    ) -> Result<usize, ServiceError> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from)?;
        let row = store::tenants::by_slug(&mut *tx, slug)
            .await?
            .ok_or(ServiceError::TenantNotFound)?;
        let tenant = TenantId(row.id);
        let ids = store::data_keys::destroy_for_tenant(&mut *tx, tenant).await?;
        store::tokens::revoke_for_tenant(&mut *tx, tenant).await?;
        store::tokens::drop_slug_from_service_tokens(&mut *tx, &row.slug).await?;
        self.archive_forget_tenant(&mut tx, tenant, &row.slug)
            .await?;
        if !store::tenants::mark_deleted(&mut *tx, tenant).await? {
            return Err(ServiceError::TenantNotFound);
        }
        self.notify_tenant(&mut tx, tenant, &row.slug, &ids, true)
            .await?;
        tx.commit().await.map_err(StoreError::from)?;

        self.wake_archiver();
        self.data_keys.forget(tenant, &ids).await;
        self.cache.invalidate_tenant(tenant);
        self.tokens.forget_tenant(tenant);

        let mut e = self.event(ctx, AuditAction::TenantDelete, AuditOutcome::Success);
        e.tenant_id = Some(row.id);
        e.tenant_slug = Some(row.slug);
        self.audit.record(e);
        Ok(ids.len())
    }
}

impl Vault {
    /// A live tenant by its slug, if there is one (no audit event: a lookup for tools).
    pub async fn tenant_by_slug(&self, slug: &TenantSlug) -> Result<Option<Tenant>, ServiceError> {
        let row = store::tenants::by_slug(&self.pool, slug).await?;
        Ok(row.map(|row| Tenant {
            id: TenantId(row.id),
            slug: row.slug,
            name: row.name,
            created_at: row.created_at,
            infisical_import: None,
        }))
    }

    /// The slugs of every live tenant.
    pub async fn live_tenants(&self) -> Result<Vec<TenantSlug>, ServiceError> {
        let rows = store::tenants::live(&self.pool).await?;
        // Slugs are checked by the database too, so none is skipped in practice.
        Ok(rows
            .into_iter()
            .filter_map(|(_, slug)| TenantSlug::parse(&slug).ok())
            .collect())
    }
}

/// Most tenants in one page of `GET /v1/admin/tenants`.
pub const MAX_PAGE: i64 = 1000;
/// Largest `offset`: far past any real listing, and small enough that the arithmetic on it
/// (here and in PostgreSQL) cannot overflow.
pub const MAX_OFFSET: i64 = 1_000_000_000;
const DEFAULT_PAGE: i64 = 100;

/// One page of a tenant search.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantPage {
    pub tenants: Vec<Tenant>,
    /// The `offset` of the next page; none on the last.
    pub next_offset: Option<i64>,
}

/// A tenant with what an admin console shows beside it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantDetail {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub secrets: i64,
    pub live_tokens: i64,
}

impl Vault {
    /// Live tenants whose slug starts with `prefix`, by slug.
    pub async fn search_tenants(
        &self,
        prefix: &str,
        limit: Option<i64>,
        offset: Option<i64>,
    ) -> Result<TenantPage, ServiceError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        let offset = offset.unwrap_or(0);
        let prefix_ok = prefix.len() <= TenantSlug::MAX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !(1..=MAX_PAGE).contains(&limit) || !(0..=MAX_OFFSET).contains(&offset) || !prefix_ok {
            return Err(InputError::Paging {
                max: MAX_PAGE,
                max_offset: MAX_OFFSET,
            }
            .into());
        }
        // One more than asked says whether there is a next page.
        let mut rows = store::tenants::search(&self.pool, prefix, limit + 1, offset).await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(TenantPage {
            next_offset: more.then_some(offset + limit),
            tenants: rows
                .into_iter()
                .map(|row| Tenant {
                    id: TenantId(row.id),
                    slug: row.slug,
                    name: row.name,
                    created_at: row.created_at,
                    infisical_import: None,
                })
                .collect(),
        })
    }

    pub async fn tenant_detail(&self, slug: &TenantSlug) -> Result<TenantDetail, ServiceError> {
        let tenant = self
            .tenant_by_slug(slug)
            .await?
            .ok_or(ServiceError::TenantNotFound)?;
        let (secrets, live_tokens) = store::tenants::counts(&self.pool, tenant.id).await?;
        Ok(TenantDetail {
            tenant,
            secrets,
            live_tokens,
        })
    }
}
