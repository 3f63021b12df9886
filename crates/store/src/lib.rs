//! chargegate's storage backends.
//!
//! The backend is chosen once, at start, by the database URL's scheme
//! ([`DatabaseUrl::parse`]): `sqlite://PATH` (the embedded default) or `postgres://…`.
//! Each backend owns its SQL and its migrations; the migration version numbers match
//! across backends, and a test holds them to it.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use chargegate_core::Database;
use chargegate_core::store::StoreError;

mod audit_rows;
mod connector_rows;
mod console_rows;
pub mod copy;
mod error;
mod migrations;
pub mod postgres;
mod rows;
pub mod sqlite;
mod subscription_rows;
pub mod tables;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// A database URL whose scheme chargegate recognises.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH`: a file, created if missing. `sqlite:///abs/path.db` is absolute,
    /// `sqlite://chargegate.db` relative to the working directory.
    Sqlite(PathBuf),
    /// `postgres://…` or `postgresql://…`, handed to the driver as is.
    Postgres(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "database URL '{0}' has no file path (expected sqlite://PATH, e.g. sqlite://chargegate.db)"
    )]
    EmptySqlitePath(String),
    #[error(
        "database URL '{0}' is not recognised: use sqlite://PATH (e.g. sqlite://chargegate.db) or postgres://USER@HOST/DB"
    )]
    UnknownScheme(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            // Options after '?' are not ours to interpret; refuse rather than create a
            // file literally named "x.db?mode=ro".
            if path.is_empty() || path.contains('?') {
                return Err(UrlError::EmptySqlitePath(redact(url)));
            }
            Ok(DatabaseUrl::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_owned()))
        } else {
            Err(UrlError::UnknownScheme(redact(url)))
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }
}

/// The URL with any password replaced, fit for messages and logs.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // A password may also travel as a query parameter (`?password=…`).
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{tail}")
        }
        None => format!("{scheme}://{authority}{tail}"),
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseUrl::Sqlite(p) => write!(f, "sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Settings that apply to whichever backend is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections per pool (PostgreSQL) or readers (SQLite; there is one writer).
    pub max_connections: u32,
    /// How long to wait for a connection, or for SQLite's write lock, before answering
    /// `503 SERVICE_UNAVAILABLE`.
    pub acquire_timeout: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 8,
            acquire_timeout: std::time::Duration::from_secs(5),
        }
    }
}

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
