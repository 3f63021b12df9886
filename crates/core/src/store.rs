//! The one seam between the domain and a database.
//!
//! Each backend (SQLite, PostgreSQL) implements [`Store`] with its own SQL and its own
//! migrations. The trait is deliberately small: one method per thing a request or a
//! command does, so every request is one store call and, for writes, one transaction.

use async_trait::async_trait;

use crate::batch::{Batch, ItemInput, Method, Verdict};
use crate::charge::{Charge, ChargeStatus, StatusGroup};
use crate::clock::{Date, Timestamp};
use crate::money::{Currency, Money};
use crate::text::{ChargeNumber, CustomerId, OperatorCode, Username};
use crate::token::TokenHash;

pub use crate::accounts::Operator;
pub use crate::error::{StoreError, StoreResult};

#[derive(Debug, Clone)]
pub struct NewOperator {
    pub code: OperatorCode,
    pub name: String,
    pub local_currency: Currency,
}

#[derive(Clone)]
pub struct NewUser {
    pub operator_id: i64,
    pub username: Username,
    /// An Argon2id PHC string; never the password.
    pub password_hash: String,
}

/// A user as login needs it.
#[derive(Clone)]
pub struct LoginUser {
    pub user_id: i64,
    pub operator_id: i64,
    pub password_hash: String,
    pub enabled: bool,
}

/// Brute-force protection: after `max_failures` consecutive failures for one
/// organisation+username, that pair is refused for `lockout_seconds`.
#[derive(Debug, Clone, Copy)]
pub struct LoginPolicy {
    pub max_failures: u32,
    pub lockout_seconds: i64,
}

impl Default for LoginPolicy {
    fn default() -> Self {
        LoginPolicy {
            max_failures: 10,
            lockout_seconds: 15 * 60,
        }
    }
}

/// Whether a login attempt may check its password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptPermit {
    Allowed,
    LockedOut { until: Timestamp },
}

pub struct NewToken {
    pub hash: TokenHash,
    pub user_id: i64,
    /// The web API key the token was issued from; `None` for a password login.
    pub key_id: Option<i64>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A secret the server signs tokens with. Secrets live in the database so that every
/// server sharing it signs and checks alike; the one of the highest generation signs,
/// and an older one still vouches for the tokens it signed before it was replaced.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret {
    /// 1 for the first secret, one more at each rotation.
    pub generation: i64,
    pub secret: [u8; 32],
    pub created_at: Timestamp,
}

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSecret")
            .field("generation", &self.generation)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A stored token and whom it speaks for.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub user_id: i64,
    pub operator_id: i64,
    pub operator_code: OperatorCode,
    pub expires_at: Timestamp,
    pub revoked: bool,
    pub user_enabled: bool,
    /// The web API key the token was issued from, if any.
    pub key_id: Option<i64>,
}

/// A batch call whose caller is known only by the token it carries.
#[derive(Debug, Clone)]
pub struct TokenBatch {
    pub token: TokenHash,
    pub method: Method,
    pub request_id: String,
    pub at: Timestamp,
    pub items: Vec<ItemInput>,
}

impl TokenBatch {
    /// The batch as made by the token's user.
    pub fn into_batch(self, caller: &TokenRecord) -> Batch {
        Batch {
            method: self.method,
            operator_id: caller.operator_id,
            user_id: caller.user_id,
            key_id: caller.key_id,
            request_id: self.request_id,
            at: self.at,
            items: self.items,
            via_console: false,
        }
    }
}

/// What became of a [`TokenBatch`].
#[derive(Debug)]
pub enum Authorized {
    /// No such token. Nothing was applied.
    UnknownToken,
    /// The token exists but the admission check refused it (revoked, user disabled,
    /// expired, over the rate limit). Nothing was applied.
    Refused(TokenRecord),
    /// Judged and applied in one transaction.
    Applied {
        caller: TokenRecord,
        batch: Batch,
        verdicts: Vec<Verdict>,
    },
}

/// Decides whether a token's caller may go on; the caller keeps its own reason.
pub type Admission<'a> = &'a (dyn Fn(&TokenRecord) -> bool + Send + Sync);

/// One page of `charges/list`.
#[derive(Debug, Clone, Copy)]
pub struct ListQuery {
    pub operator_id: i64,
    pub group: StatusGroup,
    pub offset: u64,
    pub limit: u32,
}

/// A charge to import. Optional fields left `None` take their defaults (a generated
/// number, `received_on` = the import's time, status `PENDING`), and are ignored when a
/// row is compared with an already stored charge of the same number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCharge {
    pub operator_id: i64,
    pub number: Option<ChargeNumber>,
    pub customer: CustomerId,
    pub netflix_customer: Option<String>,
    pub amount: Money,
    pub local_amount: Money,
    pub paid_through_date: Date,
    pub received_on: Option<Timestamp>,
    pub status: Option<ChargeStatus>,
}

/// A stored charge's intake data: what an import row is compared with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIntake {
    pub operator_id: i64,
    pub customer: CustomerId,
    pub netflix_customer: Option<String>,
    pub amount: Money,
    pub local_amount: Money,
    pub paid_through_date: Date,
    pub received_on: Timestamp,
    /// The status the charge was born with (decisions since then do not count).
    pub initial_status: ChargeStatus,
}

impl NewCharge {
    /// Whether importing this row again is a harmless repeat of the stored charge. The
    /// names of the fields that differ otherwise.
    pub fn differences(&self, stored: &StoredIntake) -> Vec<&'static str> {
        let mut diff = Vec::new();
        if self.operator_id != stored.operator_id {
            diff.push("operator");
        }
        if self.customer != stored.customer {
            diff.push("billing_system_customer_identifier");
        }
        if self.netflix_customer.is_some() && self.netflix_customer != stored.netflix_customer {
            diff.push("netflix_customer_identifier");
        }
        if self.amount != stored.amount {
            diff.push("amount");
        }
        if self.local_amount != stored.local_amount {
            diff.push("local_currency_amount");
        }
        if self.paid_through_date != stored.paid_through_date {
            diff.push("paid_through_date");
        }
        if self.received_on.is_some_and(|r| r != stored.received_on) {
            diff.push("received_on");
        }
        if self.status.is_some_and(|s| s != stored.initial_status) {
            diff.push("charge_status");
        }
        diff
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub added: u64,
    pub skipped: u64,
}

/// A row of an import that clashes with a stored charge or an earlier row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportConflict {
    /// Position of the row in the slice given to [`Store::import_charges`].
    pub index: usize,
    /// The column at fault.
    pub column: &'static str,
    pub problem: String,
    /// The earlier row it clashes with, when the clash is within the import.
    pub earlier: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportOutcome {
    Imported(ImportSummary),
    /// Nothing was written.
    Refused(Vec<ImportConflict>),
}

/// Reports how many rows of an import are done.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// What serving requests needs: the seam every HTTP handler goes through. Each method is
/// one thing a request does; writes are one transaction each. Implementations must be
/// safe to share between tasks and between server processes on one database.
#[async_trait]
pub trait Store:
    Send
    + Sync
    + crate::audit::AuditStore
    + crate::subscription::Subscriptions
    + crate::console::ConsoleStore
    + crate::connector::Connector
{
    /// Which backend this is (`sqlite`, `postgres`), for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Answers once the database answers a trivial query and, where the backend can
    /// tell, can commit a write again after a failure.
    async fn ping(&self) -> StoreResult<()>;

    async fn login_user(
        &self,
        operator: &OperatorCode,
        username: &Username,
    ) -> StoreResult<Option<LoginUser>>;

    /// Counts an attempt for the pair before its password is checked, so that parallel
    /// guesses cannot slip past the limit; refuses it while the pair is locked out.
    /// Forgets pairs whose last attempt is older than the lockout and that are not
    /// locked, so made-up names do not pile up.
    async fn begin_login_attempt(
        &self,
        organisation: &str,
        username: &str,
        now: Timestamp,
        policy: LoginPolicy,
    ) -> StoreResult<AttemptPermit>;
    /// Settles an allowed attempt: success clears the count, failure may start a lockout.
    async fn finish_login_attempt(
        &self,
        organisation: &str,
        username: &str,
        succeeded: bool,
        now: Timestamp,
        policy: LoginPolicy,
    ) -> StoreResult<()>;

    async fn insert_token(&self, token: &NewToken) -> StoreResult<()>;
    async fn token(&self, hash: &TokenHash) -> StoreResult<Option<TokenRecord>>;
    /// Revokes a token; `false` when no such token exists.
    async fn revoke_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool>;

    /// Every token-signing secret, oldest generation first.
    async fn token_secrets(&self) -> StoreResult<Vec<TokenSecret>>;
    /// Stores a new secret; `false` (and nothing changed) when its generation exists
    /// already, as when two servers make the first secret at once or two rotations race.
    async fn add_token_secret(&self, secret: &TokenSecret) -> StoreResult<bool>;

    /// Judges and applies one batch call in one transaction: reads the named charges and
    /// references, runs [`Batch::decide`], writes its plan, commits. Either every applied
    /// item is stored or (on error) none is.
    async fn apply_batch(&self, batch: &Batch) -> StoreResult<Vec<Verdict>>;

    /// Checks the token, asks `admit`, then judges and applies the batch as
    /// [`Store::apply_batch`] does. A backend that pays for every round trip (PostgreSQL)
    /// reads the token inside the batch's own transaction, in the statement that locks the
    /// charges; the default asks [`Store::token`] first.
    async fn apply_token_batch(
        &self,
        request: TokenBatch,
        admit: Admission<'_>,
    ) -> StoreResult<Authorized> {
        let Some(caller) = self.token(&request.token).await? else {
            return Ok(Authorized::UnknownToken);
        };
        if !admit(&caller) {
            return Ok(Authorized::Refused(caller));
        }
        let batch = request.into_batch(&caller);
        let verdicts = self.apply_batch(&batch).await?;
        Ok(Authorized::Applied {
            caller,
            batch,
            verdicts,
        })
    }

    async fn list_charges(&self, query: &ListQuery) -> StoreResult<Vec<Charge>>;
}

/// What the command line and set-up need: schema, operators, users, imports.
#[async_trait]
pub trait AdminStore: Send + Sync + crate::accounts::AccountAdmin {
    /// Applies pending migrations; a no-op on an up-to-date database.
    async fn migrate(&self) -> StoreResult<()>;

    async fn create_operator(&self, new: &NewOperator) -> StoreResult<Operator>;
    async fn operator_by_code(&self, code: &OperatorCode) -> StoreResult<Option<Operator>>;
    /// Creates a user; `Conflict` when the name is taken within the operator.
    async fn create_user(&self, new: &NewUser) -> StoreResult<i64>;

    /// Imports charges all-or-nothing. `progress` is told how many rows are done.
    async fn import_charges(
        &self,
        charges: Vec<NewCharge>,
        now: Timestamp,
        progress: Progress,
    ) -> StoreResult<ImportOutcome>;

    /// Finishes pending work and releases the database (SQLite folds its write-ahead log
    /// into the database file, so the `.db` file alone holds everything). Later calls
    /// answer `Unavailable`.
    async fn close(&self);
}

/// A whole backend: every seam. `Arc<dyn Database>` coerces to `Arc<dyn Store>`.
pub trait Database:
    Store + AdminStore + crate::subscription::SubscriptionsAdmin + crate::connector::ConnectorAdmin
{
}

impl<
    T: Store + AdminStore + crate::subscription::SubscriptionsAdmin + crate::connector::ConnectorAdmin,
> Database for T
{
}
