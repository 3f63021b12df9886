-- Version 4: what administering users and reading the audit trail need.
-- When each user last logged in (was issued a token), for `user list`; tokens themselves
-- are pruned a week after they expire, so they cannot tell.
ALTER TABLE users ADD COLUMN last_login_at INTEGER;

-- The reconciliation feed pages through charge_history by its id: SQLite's one writer
-- commits in id order, so the id alone is a position no later commit can fall behind.
