-- Version 3: web API keys, Netflix subscriptions and promotions (docs/api.md).

-- A web API key logs in as its user. Only a SHA-256 of the key is stored; `prefix` (its
-- first 8 characters) lets people tell keys apart and name one to revoke.
CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY,
    operator_id INTEGER NOT NULL REFERENCES operators (id),
    user_id     INTEGER NOT NULL REFERENCES users (id),
    prefix      TEXT    NOT NULL,
    hash        BLOB    NOT NULL UNIQUE CHECK (length(hash) = 32),
    name        TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;
CREATE INDEX api_keys_by_prefix ON api_keys (prefix);

-- The key a token was issued from (NULL for a password login), and the key a decision or
-- a charge's history row was made with, for audits (`key:<prefix>`).
ALTER TABLE tokens ADD COLUMN key_id INTEGER REFERENCES api_keys (id);
CREATE INDEX tokens_by_key ON tokens (key_id) WHERE key_id IS NOT NULL;
ALTER TABLE decisions ADD COLUMN key_id INTEGER REFERENCES api_keys (id);
ALTER TABLE charge_history ADD COLUMN key_id INTEGER REFERENCES api_keys (id);

CREATE TABLE subscriptions (
    id                       INTEGER PRIMARY KEY,
    number                   TEXT    NOT NULL UNIQUE,
    operator_id              INTEGER NOT NULL REFERENCES operators (id),
    customer_id              TEXT    NOT NULL,
    netflix_customer_id      TEXT,
    life_cycle_state         TEXT    NOT NULL
        CHECK (life_cycle_state IN ('EFFECTIVE', 'NOT_EFFECTIVE', 'CANCELLED')),
    netflix_state            TEXT    NOT NULL
        CHECK (netflix_state IN ('EFFECTIVE', 'NOT_EFFECTIVE')),
    channel                  TEXT,
    customer_first_name      TEXT,
    customer_last_name       TEXT,
    -- Compact JSON text, as the client gave it.
    customer_address         TEXT,
    customer_email           TEXT,
    customer_phone           TEXT,
    -- The current netflix token's SHA-256 and expiry; NULL once spent or cancelled.
    netflix_token_hash       BLOB CHECK (length(netflix_token_hash) = 32),
    netflix_token_expires_at INTEGER,
    created_at               INTEGER NOT NULL,
    cancelled_at             INTEGER
) STRICT;
-- At most one live (not cancelled) subscription per customer.
CREATE UNIQUE INDEX subscriptions_one_live ON subscriptions (operator_id, customer_id)
    WHERE life_cycle_state <> 'CANCELLED';
CREATE INDEX subscriptions_by_customer ON subscriptions (operator_id, customer_id, created_at);
CREATE INDEX subscriptions_by_netflix_customer ON subscriptions (operator_id, netflix_customer_id)
    WHERE netflix_customer_id IS NOT NULL;
CREATE UNIQUE INDEX subscriptions_by_token ON subscriptions (netflix_token_hash)
    WHERE netflix_token_hash IS NOT NULL;

-- The live subscription a charge belonged to when it was stored.
ALTER TABLE charges ADD COLUMN subscription_id INTEGER REFERENCES subscriptions (id);
CREATE INDEX charges_by_subscription ON charges (subscription_id, received_on)
    WHERE subscription_id IS NOT NULL;

-- Every change of a subscription. Append-only.
CREATE TABLE subscription_history (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    event           TEXT    NOT NULL
        CHECK (event IN ('created', 'token_renewed', 'suspended', 'unsuspended', 'cancelled',
                         'promotion_redeemed')),
    from_state      TEXT,
    to_state        TEXT    NOT NULL,
    at              INTEGER NOT NULL,
    user_id         INTEGER REFERENCES users (id),
    key_id          INTEGER REFERENCES api_keys (id),
    request_id      TEXT,
    -- The charge whose decline cancelled the subscription.
    charge_id       INTEGER REFERENCES charges (id),
    promotion_id    INTEGER
) STRICT;
CREATE INDEX subscription_history_by_subscription ON subscription_history (subscription_id);

CREATE TRIGGER subscription_history_is_append_only_update BEFORE UPDATE ON subscription_history
BEGIN
    SELECT RAISE(ABORT, 'subscription_history is append-only');
END;
CREATE TRIGGER subscription_history_is_append_only_delete BEFORE DELETE ON subscription_history
BEGIN
    SELECT RAISE(ABORT, 'subscription_history is append-only');
END;

CREATE TABLE promotions (
    id             INTEGER PRIMARY KEY,
    operator_id    INTEGER NOT NULL REFERENCES operators (id),
    code           TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    description    TEXT,
    effective_from INTEGER NOT NULL,
    expires_on     INTEGER,
    created_at     INTEGER NOT NULL,
    UNIQUE (operator_id, code)
) STRICT;

-- A promotion redeemed on a subscription.
CREATE TABLE subscription_promotions (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES subscriptions (id),
    promotion_id    INTEGER NOT NULL REFERENCES promotions (id),
    redeemed_at     INTEGER NOT NULL,
    UNIQUE (subscription_id, promotion_id)
) STRICT;
