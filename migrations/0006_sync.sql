-- Infisical sync (issue 11): where each secret came from, tombstones so a delete sticks,
-- per-tenant Infisical mode and whether the tenant reads its Infisical folder at all, and
-- the re-check schedule of followed folders. See docs/schema.md.

-- Null mode: the global setting (TENANT_VAULT_INFISICAL_MODE). `infisical_import` is false
-- for a tenant created over a deleted one with the same slug (unless asked for): the old
-- tenant's Infisical folder is not read for it.
alter table tenants
    add column infisical_mode text check (infisical_mode in ('follow', 'import_once')),
    add column infisical_import boolean not null default true;

-- Rows from before this migration count as written through tenant-vault ('api').
alter table company_secrets
    add column origin text not null default 'api' check (origin in ('api', 'infisical')),
    add column infisical_folder text,
    add column infisical_secret_id text,
    add column infisical_version integer check (infisical_version > 0),
    add constraint company_secrets_origin_fields
        check ((origin = 'infisical') = (infisical_folder is not null and infisical_version is not null));

-- A secret deleted through tenant-vault: the lookup's Infisical step must not bring it
-- back. `infisical_version` is the Infisical version known at deletion (null: not known
-- yet; the first sync that sees the secret records it); in follow mode only a newer
-- Infisical version restores the secret. Writing the key again removes the tombstone.
create table secret_tombstones (
    company_id         uuid not null references tenants (id) on delete cascade,
    secret_key         text not null,
    infisical_version  integer check (infisical_version > 0),
    deleted_at         timestamptz not null default now(),
    primary key (company_id, secret_key)
);

-- When each followed tenant folder was last re-read from Infisical (webhook, re-check or
-- `tenant-vault sync infisical`), so replicas share the re-check work.
create table infisical_sync_state (
    tenant_id        uuid primary key references tenants (id) on delete cascade,
    last_synced_at   timestamptz not null default now(),
    next_check_at    timestamptz not null default now(),
    last_error       text
);
create index infisical_sync_state_due on infisical_sync_state (next_check_at);

-- One row: the last time any replica started a re-check, so the re-check rate across all
-- replicas stays within Infisical's rate limits.
create table infisical_recheck_clock (
    id       boolean primary key default true check (id),
    last_at  timestamptz not null default '-infinity'
);
insert into infisical_recheck_clock default values;
