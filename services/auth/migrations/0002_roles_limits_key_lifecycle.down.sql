ALTER TABLE signing_keys DROP COLUMN retired_at;
ALTER TABLE signing_keys DROP COLUMN retire_at;
ALTER TABLE signing_keys DROP COLUMN sealed_seed;
DROP TABLE rate_limits;
ALTER TABLE users DROP COLUMN roles;
