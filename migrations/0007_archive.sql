-- The cold vault: versions that fall out of retention, and deleted secrets, are archived to
-- OpenBao KV v2 before PostgreSQL forgets them (see docs/schema.md). Archive, then prune:
-- the ciphertext waits in `archive_outbox` until OpenBao has it, so a crash or an OpenBao
-- outage between the two never loses a version.

-- Versions on their way to the archive: moved here (still encrypted under the tenant's data
-- key) in the same transaction that takes them out of `company_secret_versions` or deletes
-- the secret; removed in the transaction that records them in `archived_versions`.
create table archive_outbox (
    -- The `company_secrets` row the version belonged to (gone once the secret is deleted,
    -- hence no foreign key): a secret deleted and created again is another secret.
    secret_id               uuid not null,
    company_id              uuid not null references tenants (id) on delete cascade,
    secret_key              text not null,
    version                 integer not null check (version > 0),
    reason                  text not null check (reason in ('retention', 'deleted')),
    secret_value_encrypted  bytea not null,
    data_key_id             uuid not null references data_keys (id),
    -- When the version was written.
    created_at              timestamptz not null,
    queued_at               timestamptz not null default now(),
    attempts                integer not null default 0 check (attempts >= 0),
    primary key (secret_id, version)
);
create index archive_outbox_by_data_key on archive_outbox (data_key_id);
create index archive_outbox_by_tenant on archive_outbox (company_id);

-- Where each archived version lives in OpenBao (no value): `<mount>/tenants/{slug}/{key}`,
-- KV version `kv_version`. Lets `?version=N` and the versions list find it without asking
-- OpenBao.
create table archived_versions (
    secret_id     uuid not null,
    company_id    uuid not null references tenants (id) on delete cascade,
    secret_key    text not null,
    version       integer not null check (version > 0),
    kv_version    integer not null check (kv_version > 0),
    reason        text not null check (reason in ('retention', 'deleted')),
    created_at    timestamptz not null,
    archived_at   timestamptz not null default now(),
    retain_until  timestamptz not null,
    primary key (secret_id, version)
);
create index archived_versions_by_key on archived_versions (company_id, secret_key);

-- Deleted tenants whose archive path (`tenants/{slug}/`) still has to be deleted in OpenBao.
create table archive_purges (
    tenant_id     uuid primary key references tenants (id) on delete cascade,
    slug          text not null,
    requested_at  timestamptz not null default now(),
    attempts      integer not null default 0 check (attempts >= 0)
);
