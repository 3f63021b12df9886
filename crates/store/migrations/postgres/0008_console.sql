-- Version 8: the operator console.
--
-- A history row remembers whether a person decided in the console (the API names the
-- actor `console:<username>` instead of `user:<username>`). A constant default makes
-- this a change of the catalogue only: no row is rewritten.
ALTER TABLE charge_history ADD COLUMN via_console BOOLEAN NOT NULL DEFAULT FALSE;

-- Console sign-ins. Only the SHA-256 of the cookie's secret is kept. A session ends at
-- `expires_at` (absolute) or after the configured idle time past `last_seen_at`; rows
-- are deleted on sign-out, when found expired, and when the user is disabled.
CREATE TABLE console_sessions (
    hash         BYTEA  PRIMARY KEY,
    user_id      BIGINT NOT NULL REFERENCES users (id),
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_user ON console_sessions (user_id);
