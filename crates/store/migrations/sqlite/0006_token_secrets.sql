-- Version 6: the secrets tokens are signed with. Tokens are JWT-shaped (HS256); every
-- server on this database signs with the secret of the highest generation, and an older
-- secret still vouches for the tokens it signed before a rotation replaced it. The first
-- secret is made by the first login; `chargegate token-secret rotate` adds the next.
CREATE TABLE token_secrets (
    generation INTEGER PRIMARY KEY CHECK (generation > 0),
    secret     BLOB    NOT NULL CHECK (length(secret) = 32),
    created_at INTEGER NOT NULL
) STRICT;
