//! Settings that apply to whichever backend is opened.

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
