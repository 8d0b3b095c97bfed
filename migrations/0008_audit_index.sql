-- Issue 15: a cheaper audit row. `audit_events_by_tenant (tenant_id, occurred_at)` served no
-- query: `GET /v1/admin/audit?tenant=` filters on `tenant_slug` and pages by id, so PostgreSQL
-- walks the primary key newest first whether this index exists or not (EXPLAIN, custom and
-- generic plans). Every insert still paid for it, on one of a thousand leaves, one per
-- tenant: a third of PostgreSQL's CPU per audit row in a COPY test (docs/bench.md).
drop index if exists audit_events_by_tenant;
