-- The revocation feed: every revoked session, by when it was revoked, until its tokens would have expired
-- anyway.
-- Other services follow it (GET /internal/v1/revocations) and check tokens against the set locally instead of
-- asking auth on every request. A trigger fills it from sessions, whatever revoked them (logout, role taken
-- away), and wakes the waiting followers of every auth replica through NOTIFY.
CREATE TABLE revocations (
    seq        bigserial PRIMARY KEY,
    session_id text NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX revocations_expires_at ON revocations (expires_at);
CREATE INDEX revocations_revoked_at ON revocations (revoked_at);

CREATE FUNCTION shoplab_session_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO revocations (session_id, expires_at) VALUES (NEW.id, NEW.expires_at);
    PERFORM pg_notify('shoplab_revocations', '');
    RETURN NEW;
END;
$$;

CREATE TRIGGER sessions_revoked AFTER UPDATE OF revoked_at ON sessions
    FOR EACH ROW WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
    EXECUTE FUNCTION shoplab_session_revoked();
