CREATE TABLE users (
    id            text PRIMARY KEY,
    email         text NOT NULL UNIQUE CHECK (email = lower(email)),
    name          text NOT NULL,
    password_hash bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sessions (
    id         text PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- Ed25519 keys. Every public key here is published at /v1/jwks and verifies tokens. The seed (private key) is
-- kept here unless the instance keeps it in AUTH_SIGNING_KEY_FILE, in which case only the public key is.
CREATE TABLE signing_keys (
    kid        text PRIMARY KEY,
    public_key bytea NOT NULL CHECK (length(public_key) = 32),
    seed       bytea CHECK (length(seed) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
