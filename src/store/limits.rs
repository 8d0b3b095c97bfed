//! `tenant_limits`: per-tenant overrides of the rate limits and quotas; and what a tenant
//! stores now, for its quotas.

use sqlx::PgExecutor;

use super::StoreResult;
use crate::domain::{TenantId, TenantLimits, TenantSlug};

struct Row {
    tenant_rps: Option<i32>,
    tenant_burst: Option<i32>,
    token_rps: Option<i32>,
    token_burst: Option<i32>,
    max_secrets: Option<i64>,
    max_bytes: Option<i64>,
}

impl From<Row> for TenantLimits {
    fn from(r: Row) -> Self {
        // The columns' checks keep them non-negative.
        let small = |v: Option<i32>| v.map(|v| v.max(0) as u32);
        let big = |v: Option<i64>| v.map(|v| v.max(0) as u64);
        TenantLimits {
            tenant_rps: small(r.tenant_rps),
            tenant_burst: small(r.tenant_burst),
            token_rps: small(r.token_rps),
            token_burst: small(r.token_burst),
            max_secrets: big(r.max_secrets),
            max_bytes: big(r.max_bytes),
        }
    }
}

/// The overrides of the live tenant with this slug (None: it has none, or does not exist).
pub async fn by_slug(
    db: impl PgExecutor<'_>,
    slug: &TenantSlug,
) -> StoreResult<Option<TenantLimits>> {
    let row = sqlx::query_as!(
        Row,
        "select l.tenant_rps, l.tenant_burst, l.token_rps, l.token_burst, l.max_secrets, l.max_bytes
         from tenant_limits l join tenants t on t.id = l.tenant_id
         where t.slug = $1 and t.deleted_at is null",
        slug.as_str()
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(Into::into))
}

/// Replaces a tenant's overrides (all `None`: back to the settings).
pub async fn put(db: impl PgExecutor<'_>, tenant: TenantId, l: &TenantLimits) -> StoreResult<()> {
    // Values above the column types were refused as input before this point.
    let small = |v: Option<u32>| v.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
    let big = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    sqlx::query!(
        "insert into tenant_limits
            (tenant_id, tenant_rps, tenant_burst, token_rps, token_burst, max_secrets, max_bytes)
         values ($1, $2, $3, $4, $5, $6, $7)
         on conflict (tenant_id) do update set
            tenant_rps = excluded.tenant_rps, tenant_burst = excluded.tenant_burst,
            token_rps = excluded.token_rps, token_burst = excluded.token_burst,
            max_secrets = excluded.max_secrets, max_bytes = excluded.max_bytes,
            updated_at = now()",
        tenant.0,
        small(l.tenant_rps),
        small(l.tenant_burst),
        small(l.token_rps),
        small(l.token_burst),
        big(l.max_secrets),
        big(l.max_bytes),
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A tenant's current secrets: how many, and their stored (encrypted) bytes.
pub async fn usage(db: impl PgExecutor<'_>, tenant: TenantId) -> StoreResult<(u64, u64)> {
    let row = sqlx::query!(
        r#"select count(*) as "secrets!",
                  coalesce(sum(octet_length(secret_value_encrypted)), 0)::bigint as "bytes!"
           from company_secrets where company_id = $1"#,
        tenant.0
    )
    .fetch_one(db)
    .await?;
    Ok((row.secrets.max(0) as u64, row.bytes.max(0) as u64))
}
