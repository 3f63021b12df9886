-- Version 10: a subscription's history row remembers, as a charge's does (version 8),
-- whether a person acted in the console: a decline there cancels the charge's
-- subscription, and its history then names the actor `console:<username>`.
ALTER TABLE subscription_history ADD COLUMN via_console INTEGER NOT NULL DEFAULT 0
    CHECK (via_console IN (0, 1));
