//! Embedded migrations. Each backend lists its files here under the same version
//! numbers, so a database can move between backends (`db copy`) at a known version.

use std::borrow::Cow;

use chargegate_core::store::StoreError;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

/// (version, description, SQL) of one migration.
pub(crate) type Source = (i64, &'static str, &'static str);

pub(crate) const SQLITE: &[Source] = &[
    (
        1,
        "init",
        include_str!("../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "engine",
        include_str!("../migrations/sqlite/0002_engine.sql"),
    ),
    (
        3,
        "subscriptions",
        include_str!("../migrations/sqlite/0003_subscriptions.sql"),
    ),
    (
        4,
        "audit",
        include_str!("../migrations/sqlite/0004_audit.sql"),
    ),
    (
        5,
        "decision_keys",
        include_str!("../migrations/sqlite/0005_decision_keys.sql"),
    ),
    (
        6,
        "token_secrets",
        include_str!("../migrations/sqlite/0006_token_secrets.sql"),
    ),
    // 7 is unused: the connector's migration, first written as 7, became 9 because its
    // SQLite part rebuilds charge_history and must come after 8's column (a database
    // migrated to 8 would otherwise meet 7 after it). The runner tolerates the gap.
    (
        8,
        "console",
        include_str!("../migrations/sqlite/0008_console.sql"),
    ),
    (
        9,
        "connector",
        include_str!("../migrations/sqlite/0009_connector.sql"),
    ),
    (
        10,
        "subscription_console",
        include_str!("../migrations/sqlite/0010_subscription_console.sql"),
    ),
];

pub(crate) const POSTGRES: &[Source] = &[
    (
        1,
        "init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "engine",
        include_str!("../migrations/postgres/0002_engine.sql"),
    ),
    (
        3,
        "subscriptions",
        include_str!("../migrations/postgres/0003_subscriptions.sql"),
    ),
    (
        4,
        "audit",
        include_str!("../migrations/postgres/0004_audit.sql"),
    ),
    (
        5,
        "decision_keys",
        include_str!("../migrations/postgres/0005_decision_keys.sql"),
    ),
    (
        6,
        "token_secrets",
        include_str!("../migrations/postgres/0006_token_secrets.sql"),
    ),
    // 7 is unused: the connector's migration, first written as 7, became 9 because its
    // SQLite part rebuilds charge_history and must come after 8's column (a database
    // migrated to 8 would otherwise meet 7 after it). The runner tolerates the gap.
    (
        8,
        "console",
        include_str!("../migrations/postgres/0008_console.sql"),
    ),
    (
        9,
        "connector",
        include_str!("../migrations/postgres/0009_connector.sql"),
    ),
    (
        10,
        "subscription_console",
        include_str!("../migrations/postgres/0010_subscription_console.sql"),
    ),
];

pub(crate) fn migrator(sources: &[Source]) -> Migrator {
    let migrations = sources
        .iter()
        .map(|&(version, description, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(description),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            )
        })
        .collect::<Vec<_>>();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

/// Explains a failed migration in the terms an operator can act on.
pub(crate) fn error(e: MigrateError) -> StoreError {
    match e {
        MigrateError::VersionMissing(v) => StoreError::Internal(format!(
            "the database was migrated to version {v} by a newer chargegate; \
             run that version or restore a backup"
        )),
        MigrateError::VersionMismatch(v) => StoreError::Internal(format!(
            "migration {v} in the database differs from this chargegate's; \
             the schema was changed by hand or by another build"
        )),
        MigrateError::Execute(e) => crate::error::from_sqlx(e),
        other => StoreError::Internal(format!("migration failed: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions_in(folder: &str) -> Vec<i64> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(folder);
        let mut v: Vec<i64> = std::fs::read_dir(&dir)
            .expect("migrations folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| {
                std::path::Path::new(name)
                    .extension()
                    .is_some_and(|e| e == "sql")
            })
            .map(|name| {
                name.split('_')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| {
                        panic!("{folder}/{name} does not start with a version number")
                    })
            })
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn both_backends_have_the_same_migration_versions() {
        let listed = |s: &[Source]| s.iter().map(|m| m.0).collect::<Vec<_>>();
        assert_eq!(versions_in("sqlite"), versions_in("postgres"));
        assert_eq!(
            listed(SQLITE),
            versions_in("sqlite"),
            "every file is embedded"
        );
        assert_eq!(
            listed(POSTGRES),
            versions_in("postgres"),
            "every file is embedded"
        );
        assert_eq!(
            SQLITE.iter().map(|m| m.1).collect::<Vec<_>>(),
            POSTGRES.iter().map(|m| m.1).collect::<Vec<_>>()
        );
    }
}
