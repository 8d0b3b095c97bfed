-- Issue 10: least privilege and a verifiable audit trail. See docs/schema.md.

-- TRUNCATE fires no row trigger: refuse it with a statement trigger, so append-only holds
-- for it too (the runtime role has no TRUNCATE right either; see `tenant-vault db grant`).
create trigger audit_events_no_truncate before truncate on audit_events
    for each statement execute function audit_events_append_only();

-- Which chain formula a row's hash uses: 1 = SHA-256(prev_hash || row) (rows written before
-- this migration), 2 = HMAC-SHA256 under the audit key (wrapped by the master key, in
-- internal_keys). Once a row is 2, every later row is 2: `audit verify` checks the switch.
alter table audit_events
    add column chain_version smallint not null default 1 check (chain_version in (1, 2));

-- Filters of GET /v1/admin/audit by time (tenant and time use audit_events_by_tenant).
create index audit_events_by_time on audit_events (occurred_at);

-- Internal keys wrapped by the master key (the contract in CONTRACTS.md; migration 0003 of
-- the tokens branch creates the same table, hence `if not exists`).
create table if not exists internal_keys (
    purpose             text primary key check (purpose in ('token', 'audit')),
    master_key_version  int not null,
    wrapped             bytea not null,
    created_at          timestamptz not null default now()
);
