-- chargegate schema, SQLite flavour. Version numbers match migrations/postgres one for one.
-- Times are INTEGER seconds since the Unix epoch (UTC); dates are TEXT 'YYYY-MM-DD';
-- money is INTEGER minor units next to its currency code: no floats anywhere.

CREATE TABLE operators (
    id             INTEGER PRIMARY KEY,
    code           TEXT    NOT NULL UNIQUE,
    name           TEXT    NOT NULL,
    local_currency TEXT    NOT NULL CHECK (length(local_currency) = 3),
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    operator_id   INTEGER NOT NULL REFERENCES operators (id),
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at    INTEGER NOT NULL,
    UNIQUE (operator_id, username)
) STRICT;

-- Consecutive login attempts per organisation+username (known or not, so that a lockout
-- reveals nothing about which accounts exist).
CREATE TABLE login_attempts (
    organisation TEXT    NOT NULL,
    username     TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    locked_until INTEGER,
    PRIMARY KEY (organisation, username)
) STRICT, WITHOUT ROWID;

-- Only a SHA-256 of each token is stored.
CREATE TABLE tokens (
    hash       BLOB    PRIMARY KEY CHECK (length(hash) = 32),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX tokens_by_expiry ON tokens (expires_at);

CREATE TABLE charges (
    id                    INTEGER PRIMARY KEY,
    number                TEXT    NOT NULL UNIQUE,
    operator_id           INTEGER NOT NULL REFERENCES operators (id),
    customer_id           TEXT    NOT NULL,
    netflix_customer_id   TEXT,
    amount_minor          INTEGER NOT NULL,
    currency              TEXT    NOT NULL CHECK (length(currency) = 3),
    local_amount_minor    INTEGER NOT NULL,
    local_currency        TEXT    NOT NULL CHECK (length(local_currency) = 3),
    paid_through_date     TEXT    NOT NULL,
    status                TEXT    NOT NULL
        CHECK (status IN ('PENDING', 'APPROVED', 'DECLINED', 'BAD_REQUEST', 'REJECTED')),
    initial_status        TEXT    NOT NULL
        CHECK (initial_status IN ('PENDING', 'APPROVED', 'DECLINED', 'BAD_REQUEST', 'REJECTED')),
    received_on           INTEGER NOT NULL,
    set_as_approved_on    INTEGER,
    set_as_declined_on    INTEGER,
    set_as_bad_request_on INTEGER,
    set_as_rejected_on    INTEGER,
    -- The latest acknowledgement (a copy of the newest row of `acknowledgements`).
    acknowledged_status   TEXT,
    acknowledged_on       INTEGER,
    acknowledged_reference_number TEXT
) STRICT;

-- charges/list: one operator's charges not acknowledged in their current status, by group,
-- oldest first. Partial, so acknowledged history does not weigh on it.
CREATE INDEX charges_to_list ON charges (operator_id, (status = 'PENDING'), received_on, number)
    WHERE acknowledged_status IS NOT status;

-- The accept or decline that decided a charge. The primary key makes "decided at most
-- once" a property of the database, not only of the code.
CREATE TABLE decisions (
    charge_id        INTEGER PRIMARY KEY REFERENCES charges (id),
    operator_id      INTEGER NOT NULL REFERENCES operators (id),
    method           TEXT    NOT NULL CHECK (method IN ('accept', 'decline')),
    reference_number TEXT,
    user_id          INTEGER NOT NULL REFERENCES users (id),
    decided_on       INTEGER NOT NULL,
    request_id       TEXT    NOT NULL
) STRICT;
CREATE UNIQUE INDEX decisions_reference_unique
    ON decisions (operator_id, method, reference_number) WHERE reference_number IS NOT NULL;

CREATE TABLE acknowledgements (
    id               INTEGER PRIMARY KEY,
    charge_id        INTEGER NOT NULL REFERENCES charges (id),
    operator_id      INTEGER NOT NULL REFERENCES operators (id),
    status           TEXT    NOT NULL,
    reference_number TEXT,
    user_id          INTEGER NOT NULL REFERENCES users (id),
    acknowledged_on  INTEGER NOT NULL,
    request_id       TEXT    NOT NULL
) STRICT;
CREATE INDEX acknowledgements_by_charge ON acknowledgements (charge_id);
CREATE UNIQUE INDEX acknowledgements_reference_unique
    ON acknowledgements (operator_id, reference_number) WHERE reference_number IS NOT NULL;

-- Every change of a charge: its import, its decision, its acknowledgements. Append-only.
CREATE TABLE charge_history (
    id               INTEGER PRIMARY KEY,
    charge_id        INTEGER NOT NULL REFERENCES charges (id),
    event            TEXT    NOT NULL CHECK (event IN ('import', 'accept', 'decline', 'acknowledge')),
    from_status      TEXT,
    to_status        TEXT    NOT NULL,
    at               INTEGER NOT NULL,
    user_id          INTEGER REFERENCES users (id),
    request_id       TEXT,
    reference_number TEXT
) STRICT;
CREATE INDEX charge_history_by_charge ON charge_history (charge_id);

CREATE TRIGGER charge_history_is_append_only_update BEFORE UPDATE ON charge_history
BEGIN
    SELECT RAISE(ABORT, 'charge_history is append-only');
END;
CREATE TRIGGER charge_history_is_append_only_delete BEFORE DELETE ON charge_history
BEGIN
    SELECT RAISE(ABORT, 'charge_history is append-only');
END;
