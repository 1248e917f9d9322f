-- Roles: a user is a customer ('{}') or an operator of the shop ('{admin}'). Only the operator command on the
-- machine that runs auth changes them (auth admin grant/revoke); no HTTP call does.
ALTER TABLE users ADD COLUMN roles text[] NOT NULL DEFAULT '{}' CHECK (roles <@ ARRAY['admin']::text[]);

-- Login and registration limits, per client address and per account, shared by every auth replica. One row
-- per limited key ("addr:<ip>", "acct:<email>"): the attempts counted in the current fixed window.
CREATE TABLE rate_limits (
    key          text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL CHECK (hits >= 0)
);
CREATE INDEX rate_limits_window_start ON rate_limits (window_start);

-- Signing-key lifecycle. The private seed is never stored in the clear: sealed_seed is the seed encrypted
-- with AES-256-GCM under the key-encryption key auth gets from its environment (the kid is the additional
-- data). A key signs until a newer key exists, is published until the longest token it signed has expired
-- (retire_at), and is then retired: its seed is deleted and it leaves the JWKS.
ALTER TABLE signing_keys ADD COLUMN sealed_seed bytea;
ALTER TABLE signing_keys ADD COLUMN retire_at timestamptz;
ALTER TABLE signing_keys ADD COLUMN retired_at timestamptz;
