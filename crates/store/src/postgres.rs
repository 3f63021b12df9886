//! PostgreSQL, for operators who run several chargegate servers on one database.
//!
//! Concurrency is left to the database, not to application locks: a batch locks the rows
//! of the charges it names (`SELECT … FOR UPDATE`, in id order so two batches cannot
//! deadlock), reads them afresh, is judged, and writes with conditional set-based
//! statements whose affected rows are checked. A clash the locks cannot prevent (two
//! batches claiming one new reference number on different charges) surfaces as a unique
//! violation; the whole transaction is then retried and the retry sees the winner's
//! reference, so the loser's item answers `DUPLICATE_REFERENCE_NUMBER`.
//!
//! Connection loss, pool exhaustion and statement timeouts answer
//! `503 SERVICE_UNAVAILABLE` with nothing applied; the pool reconnects on its own when the
//! database comes back.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chargegate_core::batch::{Batch, Snapshot, Verdict};
use chargegate_core::charge::{Charge, StatusGroup};
use chargegate_core::clock::Timestamp;
use chargegate_core::dump::{CopySummary, DumpChunk, DumpSink, DumpSource};
use chargegate_core::store::{
    AttemptPermit, ImportOutcome, ListQuery, LoginPolicy, LoginUser, NewCharge, NewOperator,
    NewToken, NewUser, Operator, Store, StoreError, StoreResult, TokenRecord,
};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_core::token::TokenHash;
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use crate::StoreOptions;
use crate::copy::{self, IS_EMPTY_SQL, Table};
use crate::error::from_sqlx;
use crate::migrations::{self, migrator};
use crate::rows::{
    self, CHARGE_COLUMNS, ChargeRow, LOGIN_USER_COLUMNS, OPERATOR_COLUMNS, StateRow, TOKEN_COLUMNS,
    TOKEN_RETENTION_SECONDS,
};
use crate::sql::{self, Applied, Statements};

type Sql = Statements<Postgres>;

/// How often a batch is retried after losing a race the locks could not prevent.
const MAX_ATTEMPTS: u32 = 8;

/// Serialises imports across servers (charge numbering reads the highest number first).
const IMPORT_LOCK_KEY: i64 = 0x6368_6172_6765; // "charge"

pub struct PostgresStore {
    pool: PgPool,
    /// The URL without its password, for messages.
    shown: String,
}

fn sql_err(e: sqlx::Error) -> StoreError {
    from_sqlx(e)
}

/// Why a transaction attempt failed: a lost race worth retrying, or a final error.
enum Failure {
    Retry(String),
    Final(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        // Unique violation, serialization failure, deadlock: another transaction got
        // there first; a fresh attempt will see what it did.
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
            .unwrap_or_default();
        if matches!(code.as_str(), "23505" | "40001" | "40P01") {
            Failure::Retry(e.to_string())
        } else {
            Failure::Final(from_sqlx(e))
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Final(e)
    }
}

impl PostgresStore {
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let shown = crate::redact(url);
        let timeout_ms = options.acquire_timeout.as_millis().to_string();
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad PostgreSQL URL {shown}: {e}")))?
            .application_name("chargegate")
            // A statement that waits longer than this (on a lock, on a sick server)
            // is cancelled and the request answers 503 instead of hanging.
            .options([
                ("statement_timeout", timeout_ms.as_str()),
                ("lock_timeout", timeout_ms.as_str()),
            ]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .idle_timeout(Duration::from_secs(300))
            .connect_with(connect)
            .await
            .map_err(|e| match from_sqlx(e) {
                StoreError::Unavailable(m) | StoreError::Conflict(m) | StoreError::Internal(m) => {
                    StoreError::Unavailable(format!("cannot connect to {shown}: {m}"))
                }
            })?;
        Ok(PostgresStore { pool, shown })
    }

    /// One attempt at a batch, in its own transaction.
    async fn try_apply_batch(&self, batch: &Batch) -> Result<Vec<Verdict>, Failure> {
        let mut tx = self.pool.begin().await?;
        let snapshot = read_snapshot(&mut tx, batch).await?;
        let verdicts = batch.judge(&snapshot);
        write_applied(&mut tx, batch, &sql::applied(batch, &snapshot, &verdicts)).await?;
        tx.commit().await?;
        Ok(verdicts)
    }
}

/// One page of `charges/list`. The WHERE clause repeats the terms of the partial index
/// `charges_to_list`, so the page comes from it, already in order.
pub fn list_sql() -> String {
    format!(
        "SELECT {CHARGE_COLUMNS} FROM charges \
         WHERE operator_id = $1 AND (status = 'PENDING') = $2 \
           AND acknowledged_status IS DISTINCT FROM status \
         ORDER BY received_on, number LIMIT $3 OFFSET $4"
    )
}

/// Locks the batch's charges, then reads what the rules need.
async fn read_snapshot(conn: &mut PgConnection, batch: &Batch) -> Result<Snapshot, Failure> {
    let mut snapshot = Snapshot::default();
    if batch.numbers().is_empty() {
        return Ok(snapshot);
    }
    // Lock first, read second: the read is a new statement, so under READ COMMITTED it
    // sees every change committed before the locks were granted, decisions included.
    Sql::lock_charges(batch).build().execute(&mut *conn).await?;
    for row in Sql::charge_states(batch)
        .build()
        .fetch_all(&mut *conn)
        .await?
    {
        let (number, state) = StateRow::read(&row)?.into_state()?;
        snapshot.charges.insert(number, state);
    }
    if !batch.references().is_empty() {
        for row in Sql::used_references(batch)
            .build()
            .fetch_all(&mut *conn)
            .await?
        {
            let (reference, number) = rows::used_reference(&row)?;
            snapshot.used_references.insert(reference, number);
        }
    }
    Ok(snapshot)
}

async fn write_applied(
    conn: &mut PgConnection,
    batch: &Batch,
    items: &[Applied<'_>],
) -> Result<(), Failure> {
    if items.is_empty() {
        return Ok(());
    }
    let mut writes = Sql::batch_writes(batch, items);
    let changed = writes
        .update
        .build()
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if changed != writes.expected {
        // The locks make this impossible; should it happen, start over.
        return Err(Failure::Retry(format!(
            "{} changed {changed} of {} charges",
            batch.method, writes.expected
        )));
    }
    writes.record.build().execute(&mut *conn).await?;
    writes.history.build().execute(&mut *conn).await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> StoreResult<()> {
        // sqlx takes an advisory lock, so servers starting together migrate once.
        migrator(migrations::POSTGRES)
            .run(&self.pool)
            .await
            .map_err(migrations::error)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(sql_err)
    }

    async fn create_operator(&self, new: &NewOperator) -> StoreResult<Operator> {
        let sql = format!(
            "INSERT INTO operators (code, name, local_currency, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING {OPERATOR_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(new.code.as_str())
            .bind(&new.name)
            .bind(new.local_currency.code())
            .bind(Timestamp::now().unix())
            .fetch_one(&self.pool)
            .await
            .map_err(|e| match sql_err(e) {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("operator {} already exists", new.code))
                }
                other => other,
            })?;
        rows::operator(&row)
    }

    async fn operator_by_code(&self, code: &OperatorCode) -> StoreResult<Option<Operator>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE code = $1");
        let row = sqlx::query(&sql)
            .bind(code.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_err)?;
        row.as_ref().map(rows::operator).transpose()
    }

    async fn create_user(&self, new: &NewUser) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO users (operator_id, username, password_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(new.operator_id)
        .bind(new.username.as_str())
        .bind(&new.password_hash)
        .bind(Timestamp::now().unix())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match sql_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("user {} already exists", new.username))
            }
            other => other,
        })
    }

    async fn login_user(
        &self,
        operator: &OperatorCode,
        username: &Username,
    ) -> StoreResult<Option<LoginUser>> {
        let sql = format!(
            "SELECT {LOGIN_USER_COLUMNS} FROM users u JOIN operators o ON o.id = u.operator_id \
             WHERE o.code = $1 AND u.username = $2"
        );
        let row = sqlx::query(&sql)
            .bind(operator.as_str())
            .bind(username.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_err)?;
        row.as_ref().map(rows::login_user).transpose()
    }

    async fn begin_login_attempt(
        &self,
        organisation: &str,
        username: &str,
        now: Timestamp,
        policy: LoginPolicy,
    ) -> StoreResult<AttemptPermit> {
        // The row lock of the upsert serialises parallel attempts for one pair; each is
        // counted before its password is checked. An expired lock starts a new count.
        let (attempts, locked_until): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO login_attempts AS a (organisation, username, attempts, locked_until) \
             VALUES ($1, $2, 1, NULL) \
             ON CONFLICT (organisation, username) DO UPDATE SET \
               attempts = CASE WHEN a.locked_until IS NOT NULL AND a.locked_until <= $3 THEN 1 \
                               ELSE a.attempts + 1 END, \
               locked_until = CASE WHEN a.locked_until IS NOT NULL AND a.locked_until <= $3 \
                                       THEN NULL \
                                   WHEN a.attempts + 1 > $4 THEN COALESCE(a.locked_until, $3 + $5) \
                                   ELSE a.locked_until END \
             RETURNING attempts, locked_until",
        )
        .bind(organisation)
        .bind(username)
        .bind(now.unix())
        .bind(i64::from(policy.max_failures))
        .bind(policy.lockout_seconds)
        .fetch_one(&self.pool)
        .await
        .map_err(sql_err)?;
        rows::permit(attempts, locked_until, now, policy)
    }

    async fn finish_login_attempt(
        &self,
        organisation: &str,
        username: &str,
        succeeded: bool,
        now: Timestamp,
        policy: LoginPolicy,
    ) -> StoreResult<()> {
        let q = if succeeded {
            sqlx::query("DELETE FROM login_attempts WHERE organisation = $1 AND username = $2")
                .bind(organisation)
                .bind(username)
        } else {
            sqlx::query(
                "UPDATE login_attempts SET locked_until = $3 \
                 WHERE organisation = $1 AND username = $2 AND attempts >= $4 \
                   AND locked_until IS NULL",
            )
            .bind(organisation)
            .bind(username)
            .bind(now.plus_seconds(policy.lockout_seconds).unix())
            .bind(i64::from(policy.max_failures))
        };
        q.execute(&self.pool).await.map(|_| ()).map_err(sql_err)
    }

    async fn insert_token(&self, token: &NewToken) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        sqlx::query(
            "INSERT INTO tokens (hash, user_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&token.hash.0[..])
        .bind(token.user_id)
        .bind(token.issued_at.unix())
        .bind(token.expires_at.unix())
        .execute(&mut *tx)
        .await
        .map_err(sql_err)?;
        sqlx::query("DELETE FROM tokens WHERE expires_at < $1")
            .bind(token.issued_at.unix() - TOKEN_RETENTION_SECONDS)
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        tx.commit().await.map_err(sql_err)
    }

    async fn token(&self, hash: &TokenHash) -> StoreResult<Option<TokenRecord>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id \
             JOIN operators o ON o.id = u.operator_id WHERE t.hash = $1"
        );
        let row = sqlx::query(&sql)
            .bind(&hash.0[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(sql_err)?;
        row.as_ref().map(rows::token_record).transpose()
    }

    async fn revoke_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, $1) WHERE hash = $2")
                .bind(now.unix())
                .bind(&hash.0[..])
                .execute(&self.pool)
                .await
                .map_err(sql_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn apply_batch(&self, batch: &Batch) -> StoreResult<Vec<Verdict>> {
        let mut last = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Short, growing pauses let the winner commit.
                tokio::time::sleep(Duration::from_millis(2 << attempt.min(6))).await;
            }
            match self.try_apply_batch(batch).await {
                Ok(verdicts) => return Ok(verdicts),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Retry(reason)) => {
                    tracing::debug!(attempt, %reason, "{}: retrying after a lost race", batch.method);
                    last = reason;
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "{} kept losing races ({MAX_ATTEMPTS} attempts): {last}",
            batch.method
        )))
    }

    async fn list_charges(&self, query: &ListQuery) -> StoreResult<Vec<Charge>> {
        let rows = sqlx::query(&list_sql())
            .bind(query.operator_id)
            .bind(query.group == StatusGroup::NotProcessed)
            .bind(i64::from(query.limit))
            .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(sql_err)?;
        rows.iter()
            .map(|r| ChargeRow::read(r).map_err(sql_err)?.into_charge())
            .collect()
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        sqlx::query_scalar(IS_EMPTY_SQL)
            .fetch_one(&self.pool)
            .await
            .map_err(sql_err)
    }

    async fn export_dump(&self, sink: &mut dyn DumpSink) -> StoreResult<()> {
        // One snapshot for the whole copy, even while servers keep writing.
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        copy::export_tables::<Postgres>(&mut tx, sink).await?;
        tx.rollback().await.map_err(sql_err)
    }

    async fn import_dump(&self, source: &mut dyn DumpSource) -> StoreResult<CopySummary> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        // No other writer may slip rows in while the copy runs.
        sqlx::query(
            "LOCK TABLE operators, users, login_attempts, tokens, charges, decisions, \
             acknowledgements, charge_history IN EXCLUSIVE MODE",
        )
        .execute(&mut *tx)
        .await
        .map_err(sql_err)?;
        let summary = copy::import_dump_in!(Postgres, tx, source, self.shown);
        // Ids were copied verbatim: move each identity past them.
        for table in Table::ALL.into_iter().filter(|t| t.has_identity()) {
            let name = table.name();
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{name}', 'id'), \
                 COALESCE((SELECT max(id) FROM {name}), 0) + 1, false)"
            ))
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        }
        tx.commit().await.map_err(sql_err)?;
        Ok(summary)
    }

    async fn import_charges(
        &self,
        charges: &[NewCharge],
        now: Timestamp,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> StoreResult<ImportOutcome> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        // Imports on several servers at once would race for the next generated number.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(IMPORT_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;

        sql::import_charges_in!(
            Postgres,
            tx,
            charges,
            now,
            progress,
            "SELECT max(number) FROM charges WHERE number ~ '^I[0-9]{8}$'"
        )
    }
}
