//! The error every store method returns, sorted by what the caller should do about it.
//!
//! Its own module, below the capability traits that return it, so that `store` (which
//! gathers those traits) and the feature modules never import each other.

/// What can go wrong in a store, sorted by what the caller should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable, busy or timed out. Nothing was applied; retrying
    /// later may succeed. Answered as `503 SERVICE_UNAVAILABLE`.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The write would break a uniqueness rule (an operator code or user name taken).
    #[error("{0}")]
    Conflict(String),
    /// Anything else: a bug or a damaged database. Answered as `500 INTERNAL_ERROR`.
    #[error("database error: {0}")]
    Internal(String),
    /// The connection was lost while a transaction committed, and whether it committed
    /// could not be found out in time. Answered as `503 SERVICE_UNAVAILABLE` saying so; a
    /// retry of the same call is safe (it is an idempotent replay if it was applied).
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

impl StoreError {
    /// The explanation without the kind, for wrapping in a message of one's own.
    pub fn into_message(self) -> String {
        match self {
            StoreError::Unavailable(m)
            | StoreError::Conflict(m)
            | StoreError::Internal(m)
            | StoreError::OutcomeUnknown(m) => m,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
