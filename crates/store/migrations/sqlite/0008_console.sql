-- Version 8: the operator console.
--
-- A history row remembers whether a person decided in the console (the API names the
-- actor `console:<username>` instead of `user:<username>`).
ALTER TABLE charge_history ADD COLUMN via_console INTEGER NOT NULL DEFAULT 0
    CHECK (via_console IN (0, 1));

-- Console sign-ins. Only the SHA-256 of the cookie's secret is kept. A session ends at
-- `expires_at` (absolute) or after the configured idle time past `last_seen_at`; rows
-- are deleted on sign-out, when found expired, and when the user is disabled.
CREATE TABLE console_sessions (
    hash         BLOB    PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users (id),
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_by_user ON console_sessions (user_id);
