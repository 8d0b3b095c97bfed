-- Issue 15: a cheaper audit row. Measured as PostgreSQL's instructions per row of the audit
-- writer's binary COPY (callgrind, 250-row batches into a table of 500,000 rows; docs/bench.md,
-- eleventh round): 29,200 before, 23,600 after both changes below.

-- Time filters of GET /v1/admin/audit use a BRIN index: rows arrive in time order, so a
-- block range summary finds a time window as well as a btree did, and an insert costs about
-- 3,300 instructions less (the btree's leaf search and WAL record per row).
drop index if exists audit_events_by_time;
create index audit_events_by_time on audit_events using brin (occurred_at);

-- Ids are numbered by the writer under the chain lock (the tail's id + 1, + 2, ...), not by
-- the sequence: one `nextval` per row cost about 2,300 instructions. Without a default, an
-- insert that does not number its row fails rather than taking an id out of chain order.
alter table audit_events alter column id drop default;
drop sequence if exists audit_events_id_seq;
