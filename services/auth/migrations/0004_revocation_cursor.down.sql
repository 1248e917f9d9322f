CREATE INDEX revocations_revoked_at ON revocations (revoked_at);
DROP INDEX revocations_cursor;
ALTER TABLE revocations DROP COLUMN xid;
