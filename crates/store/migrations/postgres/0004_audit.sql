-- Version 4: what administering users and reading the audit trail need
-- (see migrations/sqlite/0004_audit.sql).
ALTER TABLE users ADD COLUMN last_login_at BIGINT;

-- The reconciliation feed's position. Identity values are handed out when rows are
-- inserted, not when their transactions commit, so a row with a smaller id can become
-- visible after a larger one: paging by id alone would skip it. Each history row records
-- the id of the transaction that wrote it; the feed serves only rows of transactions
-- older than the oldest one still running (pg_snapshot_xmin), ordered by (xid, id), so
-- every row committed later sorts after everything already served.
--
-- A default, so the write paths need not name the column; rows older than this
-- migration (all long committed) are at 0. The column is not copied by `db copy`: a
-- target database fills it with its own transaction's id.
ALTER TABLE charge_history ADD COLUMN xid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE charge_history ALTER COLUMN xid SET DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX charge_history_by_position ON charge_history (xid, id);
