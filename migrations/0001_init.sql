-- tenant-vault schema, version 1. See docs/schema.md for the reasoning behind each table.

create table tenants (
    id          uuid primary key,
    -- The company subdomain. Validated again here so no path can ever be built from a bad one.
    slug        text not null check (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    name        text not null check (length(name) between 1 and 200),
    created_at  timestamptz not null default now(),
    deleted_at  timestamptz
);
-- A deleted tenant's slug may be reused; a live one is unique.
create unique index tenants_live_slug on tenants (slug) where deleted_at is null;

create table master_keys (
    version                   integer primary key check (version > 0),
    -- Where the key material lives: an Infisical secret, the TENANT_VAULT_MASTER_KEY
    -- variable, or the dev-mode key file. The key itself is never stored here.
    source                    text not null check (source in ('infisical', 'env', 'dev_file')),
    infisical_secret_name     text,
    infisical_secret_version  integer,
    -- HMAC-SHA256 of a fixed label under the key: refuses a wrong key at start-up.
    check_value               bytea not null check (length(check_value) = 32),
    -- Set when the key material is a passphrase stretched with Argon2id.
    argon2_salt               bytea check (argon2_salt is null or length(argon2_salt) >= 16),
    state                     text not null default 'active' check (state in ('active', 'retired')),
    created_at                timestamptz not null default now(),
    check (source <> 'infisical' or infisical_secret_name is not null)
);
create unique index master_keys_one_active on master_keys (state) where state = 'active';

create table data_keys (
    id                  uuid primary key,
    tenant_id           uuid not null references tenants (id) on delete cascade,
    version             integer not null check (version > 0),
    -- Null once destroyed: that is the crypto-shredding.
    wrapped_key         bytea,
    master_key_version  integer not null references master_keys (version),
    state               text not null default 'active'
                        check (state in ('active', 'decrypt_only', 'destroyed')),
    encryption_count    bigint not null default 0 check (encryption_count >= 0),
    created_at          timestamptz not null default now(),
    destroyed_at        timestamptz,
    unique (tenant_id, version),
    check ((state = 'destroyed') = (wrapped_key is null))
);
create unique index data_keys_one_active on data_keys (tenant_id) where state = 'active';
create index data_keys_by_master on data_keys (master_key_version);

create table company_secrets (
    id                      uuid primary key,
    company_id              uuid not null references tenants (id) on delete cascade,
    secret_key              text not null check (secret_key ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$'),
    secret_value_encrypted  bytea not null,
    data_key_id             uuid not null references data_keys (id),
    version                 integer not null check (version > 0),
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now(),
    unique (company_id, secret_key)
);
create index company_secrets_by_data_key on company_secrets (data_key_id);

create table company_secret_versions (
    secret_id               uuid not null references company_secrets (id) on delete cascade,
    company_id              uuid not null references tenants (id) on delete cascade,
    secret_key              text not null,
    version                 integer not null check (version > 0),
    secret_value_encrypted  bytea not null,
    data_key_id             uuid not null references data_keys (id),
    created_at              timestamptz not null,
    primary key (secret_id, version)
);
create index company_secret_versions_by_data_key on company_secret_versions (data_key_id);

create table access_tokens (
    id           uuid primary key,
    -- Null for an admin token.
    tenant_id    uuid references tenants (id) on delete cascade,
    -- SHA-256 of the token's secret part: tokens carry 256 random bits, so a fast hash is right.
    token_hash   bytea not null unique check (length(token_hash) = 32),
    scopes       text[] not null,
    description  text,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    check ((tenant_id is null) = ('admin' = any (scopes)))
);

create table audit_events (
    id           bigserial primary key,
    occurred_at  timestamptz not null,
    token_id     uuid,
    tenant_id    uuid,
    tenant_slug  text,
    action       text not null,
    secret_key   text,
    outcome      text not null,
    request_id   text,
    -- Hash chain: hash = SHA-256(prev_hash || canonical row). Editing a row breaks the chain.
    prev_hash    bytea not null check (length(prev_hash) = 32),
    hash         bytea not null check (length(hash) = 32)
);
create index audit_events_by_tenant on audit_events (tenant_id, occurred_at);

-- Append-only: the database refuses to change or remove an audit row.
create function audit_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_events is append-only';
end;
$$;
create trigger audit_events_no_update before update or delete on audit_events
    for each row execute function audit_events_append_only();
