//! chargegate's storage backends.
//!
//! The backend is chosen once, at start, by the database URL's scheme
//! ([`DatabaseUrl::parse`]): `sqlite://PATH` (the embedded default) or `postgres://…`.
//! Each backend owns its SQL and its migrations; the migration version numbers match
//! across backends, and a test holds them to it.

use std::sync::Arc;

use chargegate_core::Database;
use chargegate_core::store::StoreError;

mod audit_rows;
mod connector_rows;
mod console_rows;
pub mod copy;
mod error;
mod migrations;
pub mod options;
pub mod postgres;
mod rows;
pub mod sqlite;
mod subscription_rows;
pub mod tables;
pub mod url;

pub use options::StoreOptions;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use url::{DatabaseUrl, UrlError, redact};

/// Opens the store the URL names. Does not migrate: call
/// [`chargegate_core::AdminStore::migrate`].
pub async fn open(
    url: &DatabaseUrl,
    options: &StoreOptions,
) -> Result<Arc<dyn Database>, StoreError> {
    match url {
        DatabaseUrl::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path, options).await?)),
        DatabaseUrl::Postgres(url) => Ok(Arc::new(PostgresStore::open(url, options).await?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_their_backend_by_scheme() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://chargegate.db"),
            Ok(DatabaseUrl::Sqlite("chargegate.db".into()))
        );
        assert_eq!(
            DatabaseUrl::parse("sqlite:///var/lib/cg.db"),
            Ok(DatabaseUrl::Sqlite("/var/lib/cg.db".into()))
        );
        assert!(matches!(
            DatabaseUrl::parse("postgres://u@localhost/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
        assert!(matches!(
            DatabaseUrl::parse("postgresql://u@localhost/db"),
            Ok(DatabaseUrl::Postgres(_))
        ));
    }

    #[test]
    fn unknown_schemes_and_empty_paths_are_refused() {
        for bad in [
            "mysql://x",
            "chargegate.db",
            "sqlite:chargegate.db",
            "",
            "file:///x.db",
        ] {
            assert!(
                matches!(DatabaseUrl::parse(bad), Err(UrlError::UnknownScheme(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            DatabaseUrl::parse("sqlite://"),
            Err(UrlError::EmptySqlitePath(_))
        ));
    }

    #[test]
    fn passwords_never_appear_in_messages() {
        let url = "postgres://app:s3cret@db.example:5432/charges";
        assert_eq!(redact(url), "postgres://app:***@db.example:5432/charges");
        let err = DatabaseUrl::parse("mysql://app:s3cret@db/x").expect_err("unknown scheme");
        assert!(!err.to_string().contains("s3cret"));
        let parsed = DatabaseUrl::parse(url).expect("postgres");
        assert!(!format!("{parsed:?}").contains("s3cret"));
        assert_eq!(
            redact("postgres://app@db/charges?sslmode=require&password=s3cret"),
            "postgres://app@db/charges?sslmode=require&password=***"
        );
    }
}
