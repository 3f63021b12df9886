-- Version 2: what the write engine needs (see migrations/sqlite/0002_engine.sql).
ALTER TABLE login_attempts ADD COLUMN last_attempt_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX login_attempts_by_last_attempt ON login_attempts (last_attempt_at);

CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at BIGINT NOT NULL
);
