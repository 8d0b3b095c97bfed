-- Rotation: a log of master and data key rotations (for `GET /v1/admin/keys`), and the
-- progress of the background re-encryption that moves a tenant's secrets to its newest data
-- key. The work itself is derived from `data_keys.state` (rows under a `decrypt_only` key),
-- so a crash loses nothing: these rows only report.

create table key_rotations (
    id                   bigserial primary key,
    kind                 text not null check (kind in ('master_key', 'data_key')),
    -- Null for a master key rotation.
    tenant_id            uuid references tenants (id) on delete cascade,
    previous_version     integer not null,
    version              integer not null,
    rewrapped_data_keys  integer not null default 0 check (rewrapped_data_keys >= 0),
    automatic            boolean not null default false,
    started_at           timestamptz not null,
    finished_at          timestamptz not null default now(),
    elapsed_ms           bigint not null check (elapsed_ms >= 0),
    check ((kind = 'master_key') = (tenant_id is null))
);
create index key_rotations_by_kind on key_rotations (kind, id);

create table reencryption_jobs (
    tenant_id    uuid primary key references tenants (id) on delete cascade,
    -- Ciphertexts (current values and kept versions) under older keys when the job started,
    -- and how many have been moved since.
    total        bigint not null default 0 check (total >= 0),
    done         bigint not null default 0 check (done >= 0),
    started_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    finished_at  timestamptz
);
