DROP TRIGGER sessions_revoked ON sessions;
DROP FUNCTION shoplab_session_revoked();
DROP TABLE revocations;
