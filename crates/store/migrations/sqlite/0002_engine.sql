-- Version 2: what the write engine needs.
-- login_attempts remembers when a pair was last tried, so pairs that are neither locked
-- nor recent (made-up names, old typos) are pruned instead of kept forever.
ALTER TABLE login_attempts ADD COLUMN last_attempt_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX login_attempts_by_last_attempt ON login_attempts (last_attempt_at);

-- One row that a readiness check rewrites after a failed commit, to learn whether the
-- database accepts writes again (a full disk freed, a read-only mount remounted).
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;
