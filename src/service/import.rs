//! Importing a tenant's secrets (from its Infisical folder) into the database. Idempotent:
//! an equal value is left alone, a different one becomes a new version, a missing one is
//! created; nothing is ever deleted. Afterwards every imported key is read back through the
//! normal decrypt path and compared with what was given.

use super::fallback::RemoteSecret;
use super::{RequestContext, ServiceError, TenantRef, Vault};
use crate::domain::{SecretKey, TenantId, TenantSlug};
use crate::store;

/// What happened to one tenant.
#[derive(Debug, Default, Clone)]
pub struct TenantImport {
    pub slug: String,
    pub created_tenant: bool,
    /// Secrets found at the source.
    pub source_count: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Keys that could not be imported, with why (never the value).
    pub skipped: Vec<(String, String)>,
    /// Keys read back from the database equal to the source.
    pub verified: usize,
    /// Keys whose database value is missing or differs after the import.
    pub mismatched: Vec<String>,
}

impl TenantImport {
    pub fn is_clean(&self) -> bool {
        self.skipped.is_empty() && self.mismatched.is_empty() && self.verified == self.source_count
    }
}

impl Vault {
    /// Imports `secrets` (from the tenant's Infisical folder) into tenant `slug`, creating
    /// the tenant if needed; each records its Infisical origin (see `sync.rs`). With
    /// `dry_run`, only counts what would change.
    pub async fn import_tenant(
        &self,
        ctx: &RequestContext,
        slug: &TenantSlug,
        secrets: Vec<RemoteSecret>,
        dry_run: bool,
    ) -> Result<TenantImport, ServiceError> {
        let mut report = TenantImport {
            slug: slug.to_string(),
            source_count: secrets.len(),
            ..Default::default()
        };
        let tenant = match store::tenants::by_slug(&self.pool, slug).await? {
            Some(row) => Some(TenantRef {
                id: TenantId(row.id),
                slug: slug.clone(),
            }),
            None if dry_run => None,
            None => {
                let created = self.create_tenant(ctx, slug, slug.as_str()).await?;
                report.created_tenant = true;
                Some(TenantRef {
                    id: created.id,
                    slug: slug.clone(),
                })
            }
        };
        report.created_tenant |= tenant.is_none();
        let mut to_verify = Vec::new();
        for remote in secrets {
            let name = remote.key.clone();
            let value = remote.value.clone();
            let key = match SecretKey::parse(&name) {
                Ok(k) => k,
                Err(e) => {
                    report.skipped.push((name, e.0.to_string()));
                    continue;
                }
            };
            if value.len() > self.limits.max_value_bytes {
                report.skipped.push((
                    name,
                    format!("value larger than {} bytes", self.limits.max_value_bytes),
                ));
                continue;
            }
            let Some(tenant) = &tenant else {
                report.created += 1;
                continue;
            };
            let current = self.load_from_database(tenant.id, &key).await?;
            match current {
                Some(c) if c.value == value => {
                    if !dry_run {
                        // Same value: only record where it comes from.
                        self.mark_imported(tenant, &key, &remote).await?;
                    }
                    report.unchanged += 1
                }
                Some(_) if dry_run => report.updated += 1,
                None if dry_run => report.created += 1,
                Some(_) => {
                    self.import_one(ctx, tenant, &key, &remote).await?;
                    report.updated += 1;
                }
                None => {
                    self.import_one(ctx, tenant, &key, &remote).await?;
                    report.created += 1;
                }
            }
            to_verify.push((key, value));
        }
        if dry_run {
            return Ok(report);
        }
        let tenant = tenant.expect("created above unless dry run");
        for (key, value) in to_verify {
            match self.load_from_database(tenant.id, &key).await {
                Ok(Some(stored)) if stored.value == value => report.verified += 1,
                Ok(_) | Err(ServiceError::Integrity) => report.mismatched.push(key.to_string()),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}
