//! One mapping from driver errors to [`StoreError`], shared by both backends.

use chargegate_core::store::StoreError;

/// Sorts a driver error by what the caller can do about it: retry later (`Unavailable`),
/// fix the input (`Conflict`), or nothing (`Internal`, logged as a fault).
pub(crate) fn from_sqlx(e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match e {
        E::PoolTimedOut => {
            StoreError::Unavailable("timed out waiting for a database connection".into())
        }
        E::PoolClosed => StoreError::Unavailable("the connection pool is closed".into()),
        E::Io(io) => StoreError::Unavailable(format!("database connection failed: {io}")),
        E::Tls(tls) => StoreError::Unavailable(format!("database TLS failed: {tls}")),
        E::WorkerCrashed => StoreError::Unavailable("the database worker stopped".into()),
        E::Database(db) => {
            let code = db
                .code()
                .map(std::borrow::Cow::into_owned)
                .unwrap_or_default();
            if db.is_unique_violation() {
                StoreError::Conflict(db.message().to_owned())
            } else if is_transient(&code) {
                StoreError::Unavailable(format!("{} (code {code})", db.message()))
            } else {
                StoreError::Internal(format!("{} (code {code})", db.message()))
            }
        }
        other => StoreError::Internal(other.to_string()),
    }
}

/// Error codes that mean "busy or unreachable", after which a retry may succeed.
fn is_transient(code: &str) -> bool {
    // SQLite reports extended result codes as decimal numbers; the primary code is the
    // low byte: BUSY 5, LOCKED 6, IOERR 10, FULL 13, CANTOPEN 14.
    if let Ok(n) = code.parse::<i32>() {
        return matches!(n & 0xff, 5 | 6 | 10 | 13 | 14);
    }
    // PostgreSQL SQLSTATEs: connection exceptions (08), insufficient resources (53),
    // operator intervention incl. statement timeout and shutdown (57), serialization
    // failure and deadlock (40001, 40P01) when retries ran out.
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || code == "40001"
        || code == "40P01"
}

/// The same sorting for SQLite's own errors (the SQLite backend talks to SQLite through
/// rusqlite).
pub(crate) fn from_sqlite(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let code = failure.extended_code;
            let text = message.clone().unwrap_or_else(|| failure.to_string());
            // SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY.
            if matches!(code, 2067 | 1555) {
                StoreError::Conflict(text)
            } else if is_transient(&code.to_string()) {
                StoreError::Unavailable(format!("{text} (code {code})"))
            } else {
                StoreError::Internal(format!("{text} (code {code})"))
            }
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("unreadable stored value: {what}"))
}
