//! Administering an operator's people from the command line: listing users, disabling
//! and enabling them, setting passwords, lifting lockouts, and counting charges.

use async_trait::async_trait;

use crate::charge::ChargeStatus;
use crate::clock::Timestamp;
use crate::error::StoreResult;
use crate::money::Currency;
use crate::text::{OperatorCode, Username};

/// An operator: a pay-TV company or telco reselling Netflix, the tenant every charge,
/// user and key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub id: i64,
    pub code: OperatorCode,
    pub name: String,
    pub local_currency: Currency,
}

/// A user as `user list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSummary {
    pub operator: OperatorCode,
    pub username: Username,
    pub enabled: bool,
    /// When the user last logged in (was issued a token); `None` if never.
    pub last_login: Option<Timestamp>,
    /// Consecutive failed logins counted for the user's organisation+username.
    pub failed_attempts: i64,
    /// The end of a lockout, when one was set (it may lie in the past).
    pub locked_until: Option<Timestamp>,
}

/// An operator with its counts of charges by status, for `operator list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSummary {
    pub operator: Operator,
    pub users: u64,
    /// One count per status, in [`ChargeStatus::ALL`] order.
    pub charges: Vec<(ChargeStatus, u64)>,
}

/// What changing a user did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserChange {
    /// Tokens of the user that this change revoked.
    pub tokens_revoked: u64,
}

/// The command line's user and operator administration. Every change is one transaction,
/// effective at once on every server sharing the database (token checks read the user's
/// state on every request).
#[async_trait]
pub trait AccountAdmin: Send + Sync {
    /// Users, by operator code then name; only `operator_id`'s when given.
    async fn list_users(&self, operator_id: Option<i64>) -> StoreResult<Vec<UserSummary>>;

    /// Every operator, by code, with its counts.
    async fn list_operators(&self) -> StoreResult<Vec<OperatorSummary>>;

    /// Enables or disables a user. Disabling also revokes every token of theirs that is
    /// not revoked yet. `None`: no such user.
    async fn set_user_enabled(
        &self,
        operator_id: i64,
        username: &Username,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<Option<UserChange>>;

    /// Replaces a user's password hash (an Argon2id PHC string) and revokes their tokens.
    /// `None`: no such user.
    async fn set_user_password(
        &self,
        operator_id: i64,
        username: &Username,
        password_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<UserChange>>;

    /// Forgets the failed logins (and so any lockout) of an organisation+username.
    /// Answers whether there was anything to forget.
    async fn clear_login_failures(
        &self,
        organisation: &OperatorCode,
        username: &Username,
    ) -> StoreResult<bool>;
}
