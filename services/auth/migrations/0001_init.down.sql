DROP TABLE signing_keys;
DROP TABLE sessions;
DROP TABLE users;
