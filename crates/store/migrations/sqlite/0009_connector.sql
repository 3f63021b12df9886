-- Version 9: the Netflix side's connector API (docs/api.md, "The Netflix side").
-- (There is no version 7: see migrations.rs. This one rebuilds charge_history, so it
-- must come after version 8, which adds a column to it.)

-- A connector key speaks for one operator on /chargegate/v1/connector/. Only a SHA-256 of
-- the key is stored; `prefix` (its first 8 characters) names it in lists and revocations.
CREATE TABLE connector_keys (
    id          INTEGER PRIMARY KEY,
    operator_id INTEGER NOT NULL REFERENCES operators (id),
    prefix      TEXT    NOT NULL,
    hash        BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    name        TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX connector_keys_by_prefix ON connector_keys (prefix);

-- Netflix's own id of a charge that came through intake; unique per operator, which is
-- what makes a repeated intake harmless.
ALTER TABLE charges ADD COLUMN netflix_charge_id TEXT;
CREATE UNIQUE INDEX charges_by_netflix_charge_id ON charges (operator_id, netflix_charge_id)
    WHERE netflix_charge_id IS NOT NULL;

-- The history tables gain events and columns. SQLite cannot change a CHECK constraint in
-- place, so each is rebuilt (its rows copied with their ids) and its triggers and indexes
-- made again. Nothing refers to either table.
CREATE TABLE charge_history_v9 (
    id               INTEGER PRIMARY KEY,
    charge_id        INTEGER NOT NULL REFERENCES charges (id),
    -- `intake`: received from the connector; `verdict`: Netflix's BAD_REQUEST/REJECTED.
    event            TEXT    NOT NULL
        CHECK (event IN ('import', 'accept', 'decline', 'acknowledge', 'intake', 'verdict')),
    from_status      TEXT,
    to_status        TEXT    NOT NULL,
    at               INTEGER NOT NULL,
    user_id          INTEGER REFERENCES users (id),
    request_id       TEXT,
    reference_number TEXT,
    key_id           INTEGER REFERENCES api_keys (id),
    -- The connector key that wrote the row (actor `connector`), and why (verdicts).
    via_console      INTEGER NOT NULL DEFAULT 0 CHECK (via_console IN (0, 1)),
    connector_key_id INTEGER REFERENCES connector_keys (id),
    reason           TEXT
) STRICT;
INSERT INTO charge_history_v9 (id, charge_id, event, from_status, to_status, at, user_id,
                               request_id, reference_number, key_id, via_console)
    SELECT id, charge_id, event, from_status, to_status, at, user_id, request_id,
           reference_number, key_id, via_console
    FROM charge_history;
DROP TABLE charge_history;
ALTER TABLE charge_history_v9 RENAME TO charge_history;
CREATE INDEX charge_history_by_charge ON charge_history (charge_id);
CREATE TRIGGER charge_history_is_append_only_update BEFORE UPDATE ON charge_history
BEGIN
    SELECT RAISE(ABORT, 'charge_history is append-only');
END;
CREATE TRIGGER charge_history_is_append_only_delete BEFORE DELETE ON charge_history
BEGIN
    SELECT RAISE(ABORT, 'charge_history is append-only');
END;

CREATE TABLE subscription_history_v9 (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    -- `activated`: Netflix linked the account; `netflix_state`: Netflix reported a state.
    event           TEXT    NOT NULL
        CHECK (event IN ('created', 'token_renewed', 'suspended', 'unsuspended', 'cancelled',
                         'promotion_redeemed', 'activated', 'netflix_state')),
    from_state      TEXT,
    to_state        TEXT    NOT NULL,
    at              INTEGER NOT NULL,
    user_id         INTEGER REFERENCES users (id),
    key_id          INTEGER REFERENCES api_keys (id),
    request_id      TEXT,
    charge_id       INTEGER REFERENCES charges (id),
    promotion_id    INTEGER,
    connector_key_id INTEGER REFERENCES connector_keys (id)
) STRICT;
INSERT INTO subscription_history_v9 (id, subscription_id, event, from_state, to_state, at,
                                     user_id, key_id, request_id, charge_id, promotion_id)
    SELECT id, subscription_id, event, from_state, to_state, at, user_id, key_id, request_id,
           charge_id, promotion_id
    FROM subscription_history;
DROP TABLE subscription_history;
ALTER TABLE subscription_history_v9 RENAME TO subscription_history;
CREATE INDEX subscription_history_by_subscription ON subscription_history (subscription_id);
CREATE TRIGGER subscription_history_is_append_only_update BEFORE UPDATE ON subscription_history
BEGIN
    SELECT RAISE(ABORT, 'subscription_history is append-only');
END;
CREATE TRIGGER subscription_history_is_append_only_delete BEFORE DELETE ON subscription_history
BEGIN
    SELECT RAISE(ABORT, 'subscription_history is append-only');
END;

-- What Netflix must be told, written in the same transaction as the change. A charge's
-- event shows the charge as it is (a decided charge never changes again); a subscription's
-- event keeps the states it had right after the change, since later changes move them.
-- Delivered events stay, marked, for audit.
CREATE TABLE outbox (
    id                  INTEGER PRIMARY KEY,
    operator_id         INTEGER NOT NULL REFERENCES operators (id),
    type                TEXT    NOT NULL
        CHECK (type IN ('charge.approved', 'charge.declined', 'subscription.created',
                        'subscription.suspended', 'subscription.unsuspended',
                        'subscription.cancelled')),
    occurred_at         INTEGER NOT NULL,
    charge_id           INTEGER REFERENCES charges (id),
    reference_number    TEXT,
    subscription_id     INTEGER REFERENCES subscriptions (id),
    life_cycle_state    TEXT,
    netflix_state       TEXT,
    netflix_customer_id TEXT,
    delivered_at        INTEGER,
    CHECK ((charge_id IS NULL) <> (subscription_id IS NULL))
) STRICT;
-- GET outbox: an operator's undelivered events, oldest first; the webhook: everyone's.
CREATE INDEX outbox_waiting ON outbox (operator_id, id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_waiting_all ON outbox (id) WHERE delivered_at IS NULL;

-- Who may push the outbox to the webhook now: one server at a time, for `until`.
CREATE TABLE outbox_lease (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT    NOT NULL,
    until  INTEGER NOT NULL
) STRICT;
