-- Version 10: see migrations/sqlite/0010_subscription_console.sql.
ALTER TABLE subscription_history ADD COLUMN via_console BOOLEAN NOT NULL DEFAULT FALSE;
