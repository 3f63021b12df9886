-- Version 5: a decision no longer checks its operator, user and web API key against
-- foreign keys.
--
-- Each decision, acknowledgement and history row checked up to three foreign keys
-- (about 250 checks for a batch of 50), and every check of an operator's or a user's row
-- takes a share lock on that one row, which all of the operator's concurrent batches
-- then share (a multixact per row); a billing system that decides with one web API key
-- would do the same to that key's row. Operators, users and keys are never deleted
-- (users are disabled, keys revoked), and every such row is written by chargegate with
-- ids it has just read, so these keys protected nothing a decision needs. The charge keys stay: their rows are
-- already locked by the batch, so checking them costs almost nothing.
ALTER TABLE decisions
    DROP CONSTRAINT decisions_operator_id_fkey,
    DROP CONSTRAINT decisions_user_id_fkey;
ALTER TABLE acknowledgements
    DROP CONSTRAINT acknowledgements_operator_id_fkey,
    DROP CONSTRAINT acknowledgements_user_id_fkey;
ALTER TABLE charge_history
    DROP CONSTRAINT charge_history_user_id_fkey;
-- The key columns come with version 3 (web API keys).
ALTER TABLE decisions DROP CONSTRAINT IF EXISTS decisions_key_id_fkey;
ALTER TABLE charge_history DROP CONSTRAINT IF EXISTS charge_history_key_id_fkey;
