//! Embedded migrations. Each backend lists its files here under the same version
//! numbers, so a database can move between backends (`db copy`) at a known version.

use std::borrow::Cow;

use chargegate_core::store::StoreError;
use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};

/// (version, description, SQL) of one migration.
pub(crate) type Source = (i64, &'static str, &'static str);

pub(crate) const SQLITE: &[Source] = &[(
    1,
    "init",
    include_str!("../migrations/sqlite/0001_init.sql"),
)];

pub(crate) const POSTGRES: &[Source] = &[(
    1,
    "init",
    include_str!("../migrations/postgres/0001_init.sql"),
)];

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
