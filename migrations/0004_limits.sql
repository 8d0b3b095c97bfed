-- Limits: per-tenant overrides of the rate limits and storage quotas whose defaults are
-- settings (`TENANT_VAULT_RATE_LIMIT_*`, `TENANT_VAULT_QUOTA_*`). A null column means "the
-- setting applies"; 0 means "no limit" for this tenant. Set through
-- `PUT /v1/admin/tenants/{tenant}/limits`; read by every replica (cached briefly).

create table tenant_limits (
    tenant_id        uuid primary key references tenants (id) on delete cascade,
    -- Requests per second on the whole tenant, and the burst above it.
    tenant_rps       integer check (tenant_rps >= 0),
    tenant_burst     integer check (tenant_burst >= 1),
    -- Requests per second for each of the tenant's tokens, and the burst above it.
    token_rps        integer check (token_rps >= 0),
    token_burst      integer check (token_burst >= 1),
    -- Storage quotas on the tenant's current secrets.
    max_secrets      bigint check (max_secrets >= 0),
    max_bytes        bigint check (max_bytes >= 0),
    updated_at       timestamptz not null default now()
);
