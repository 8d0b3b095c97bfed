-- Tokens you can take back: kinds (admin, tenant, service) and scopes, a keyed verifier a
-- database writer cannot forge, last use, rotation; internal keys wrapped by the master key;
-- aggregated access audit rows. See docs/schema.md.

-- Keys the service uses for itself (token verifiers, audit), wrapped by a master key version
-- like data keys and re-wrapped in the same master key rotation transaction.
create table internal_keys (
    purpose             text primary key check (purpose in ('token', 'audit')),
    master_key_version  integer not null references master_keys (version),
    wrapped             bytea not null,
    created_at          timestamptz not null default now()
);

alter table access_tokens drop constraint access_tokens_check;

alter table access_tokens
    add column kind text,
    -- HMAC-SHA256 of token_hash under the `token` internal key. Filled by the service (never
    -- in SQL); a row without one never authenticates once the token key exists.
    add column verifier bytea check (verifier is null or length(verifier) = 32),
    -- Service tokens: the tenants they reach (null: every tenant).
    add column tenant_slugs text[],
    -- Optional glob on secret keys (`STRIPE_*`, `*_KEY`).
    add column key_pattern text check (key_pattern is null or key_pattern ~ '^\*?[A-Za-z0-9_.-]*\*?$'),
    -- Coarse: written at most about once a minute per token and replica.
    add column last_used_at timestamptz,
    -- The token this one replaced (`POST /v1/admin/tokens/{id}/rotate`).
    add column rotated_from uuid;

update access_tokens
   set kind = case when tenant_id is null then 'admin' else 'tenant' end,
       scopes = case when tenant_id is null then array['admin']
                     else array['secrets:read', 'secrets:write'] end;

alter table access_tokens
    alter column kind set not null,
    add constraint access_tokens_kind check (kind in ('admin', 'tenant', 'service')),
    add constraint access_tokens_kind_tenant check ((kind = 'tenant') = (tenant_id is not null)),
    add constraint access_tokens_admin_scope check ((kind = 'admin') = ('admin' = any (scopes))),
    add constraint access_tokens_tenant_set check (kind = 'service' or tenant_slugs is null);

create index access_tokens_by_tenant on access_tokens (tenant_id, created_at);

-- Aggregated access rows (401, 403, 429 per source, route and minute carry `count`), and who
-- ran a command (`actor`, e.g. `cli:alice`) and what an action was done to (`subject`, e.g.
-- the token id a `token.create` made). All nullable: older rows hash as before.
alter table audit_events
    add column source   text,
    add column route    text,
    add column count    integer check (count is null or count > 0),
    add column actor    text,
    add column subject  text;
