-- Version 5: on PostgreSQL, decisions, acknowledgements and history rows stop checking
-- their operator and user against foreign keys (see migrations/postgres/0005). SQLite
-- keeps those keys: there a check is one B-tree probe and takes no lock, and dropping a
-- key would mean rebuilding the tables. The version exists on both backends so that
-- `db copy` moves databases at one known version.
SELECT 1;
