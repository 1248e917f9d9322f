-- The revocation feed's followers keep a cursor ordered by commit, not by clock: each revocation records the
-- transaction that made it, and a reader's cursor is the oldest transaction still running when it read
-- (pg_snapshot_xmin). A revocation whose transaction commits late (a synchronous standby that stalls, say) stays
-- at or after every cursor handed out before its commit, so it is read afterwards instead of skipped; a clock
-- stamped before the commit (revoked_at) could fall behind a cursor taken meanwhile.
ALTER TABLE revocations ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX revocations_cursor ON revocations (xid, seq);
DROP INDEX revocations_revoked_at;
