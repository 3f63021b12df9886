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

//!
//! Every statement has a fixed text (lists travel as arrays), so each is prepared once per
//! connection and its plan does not depend on how many items a call carries.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chargegate_core::batch::{Batch, ChargeChange, Method, Snapshot, Verdict};
use chargegate_core::charge::{Charge, StatusGroup};
use chargegate_core::clock::Timestamp;
use chargegate_core::import::ResolvedCharge;
use chargegate_core::store::{
    AdminStore, Admission, AttemptPermit, Authorized, ImportOutcome, ImportSummary, ListQuery,
    LoginPolicy, LoginUser, NewCharge, NewOperator, NewToken, NewUser, Operator, Progress, Store,
    StoreError, StoreResult, TokenBatch, TokenRecord, TokenSecret,
};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_core::token::TokenHash;
use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};

use crate::error::from_sqlx;
use crate::migrations::{self, migrator};
use crate::options::StoreOptions;
use crate::rows::{self, ChargeRow, IntakeRow, StateRow, TOKEN_RETENTION_SECONDS, TokenRow};
use crate::tables::{CHUNK_ROWS, CONTENT_TABLES, Chunk, Kind, TABLES, Value};

mod accounts;
mod audit;
pub mod batch;
mod connector;
mod console;
mod subscriptions;

/// How often a batch is retried after losing a race the locks could not prevent.
const MAX_ATTEMPTS: u32 = 8;

/// How a token batch's transaction begins (one round trip, simple protocol). Repeatable
/// read: see [`batch`]. No sequential scans: every lookup of a decision is an index probe
/// by design, but statistics taken while a table was nearly empty (an `ANALYZE` right
/// after setting up, or autovacuum early in a database's life) make a scan look cheaper,
/// and a prepared statement's generic plan, once chosen, stays for the life of the
/// connection while the table grows. Off for this transaction only.
pub const BEGIN_DECISIONS: &str =
    "BEGIN ISOLATION LEVEL REPEATABLE READ; SET LOCAL enable_seqscan = off";

/// How the store-level batch (the console's decisions) begins: read committed (see
/// `read_snapshot`), without sequential scans for the reason given at [`BEGIN_DECISIONS`].
const BEGIN_STORE_DECISIONS: &str = "BEGIN; SET LOCAL enable_seqscan = off";

/// Serialises imports across servers (charge numbering reads the highest number first).
const IMPORT_LOCK_KEY: i64 = 0x6368_6172_6765; // "charge"

/// Rows per INSERT of an import.
const IMPORT_CHUNK: usize = 1000;

pub struct PostgresStore {
    pool: PgPool,
    /// How long a call may spend finding out whether its commit happened.
    budget: Duration,
    /// The URL without its password, for messages.
    shown: String,
}

fn sql_err(e: sqlx::Error) -> StoreError {
    from_sqlx(e)
}

/// What became of a transaction whose COMMIT lost its connection.
enum Outcome {
    Committed,
    Aborted,
    Unknown(String),
}

/// Errors after which the server may or may not have received, or acted on, the last
/// command: the connection broke, or the server is shutting down.
fn is_connection_loss(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Why a transaction attempt failed: a lost race worth retrying, a connection found
/// broken before COMMIT (worth one more try on another connection: nothing of the attempt
/// can have been committed), or a final error.
enum Failure {
    Retry(String),
    Broken(StoreError),
    Final(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        // Unique violation, serialization failure, deadlock: another transaction got
        // there first; a fresh attempt will see what it did.
        let code = e
            .as_database_error()
            .and_then(sqlx::error::DatabaseError::code)
            .map(std::borrow::Cow::into_owned)
            .unwrap_or_default();
        if matches!(code.as_str(), "23505" | "40001" | "40P01") {
            Failure::Retry(e.to_string())
        } else if is_connection_loss(&e) {
            Failure::Broken(from_sqlx(e))
        } else {
            Failure::Final(from_sqlx(e))
        }
    }
}

/// The retry policy every write shares: up to [`MAX_ATTEMPTS`] attempts, with short,
/// growing pauses between them that let the winner of a race commit. A connection found
/// broken before COMMIT gets one more attempt on another connection (nothing of the
/// attempt can have been committed); any other failure is final.
struct Retries {
    what: &'static str,
    attempt: u32,
    last: String,
}

impl Retries {
    fn new(what: &'static str) -> Self {
        Retries {
            what,
            attempt: 0,
            last: String::new(),
        }
    }

    /// Whether to make another attempt (after its pause), or give up.
    async fn another(&mut self) -> bool {
        if self.attempt >= MAX_ATTEMPTS {
            return false;
        }
        if self.attempt > 0 {
            tokio::time::sleep(Duration::from_millis(2 << self.attempt.min(6))).await;
        }
        self.attempt += 1;
        true
    }

    /// Takes a failed attempt: the error to answer with, or `None` to try again.
    fn failed(&mut self, failure: Failure) -> Option<StoreError> {
        match failure {
            Failure::Final(e) => Some(e),
            Failure::Broken(e) if self.attempt > 1 => Some(e),
            Failure::Broken(e) => {
                self.last = e.into_message();
                None
            }
            Failure::Retry(reason) => {
                tracing::debug!(attempt = self.attempt, %reason, "{}: retrying after a lost race", self.what);
                self.last = reason;
                None
            }
        }
    }

    /// The answer once every attempt lost a race.
    fn exhausted(self) -> StoreError {
        StoreError::Unavailable(format!(
            "{} kept losing races ({MAX_ATTEMPTS} attempts): {}",
            self.what, self.last
        ))
    }
}

/// Runs `attempt` until it does not lose a race (see [`Retries`]).
async fn retried<T, F, Fut>(what: &'static str, mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut retries = Retries::new(what);
    while retries.another().await {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(failure) => {
                if let Some(e) = retries.failed(failure) {
                    return Err(e);
                }
            }
        }
    }
    Err(retries.exhausted())
}

/// Commits a write that leaves no rows of its own to look up afterwards (a connector or
/// subscription write). When the connection is lost during COMMIT the answer is "outcome
/// unknown": not "nothing applied", which may be false, and not a retry, which would
/// meet the write's own effects when it did commit (and answer, say, "already exists").
/// Each of these writes is safe to send again.
async fn commit_or_unknown(tx: sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), Failure> {
    match tx.commit().await {
        Ok(()) => Ok(()),
        Err(e) if is_connection_loss(&e) => Err(Failure::Final(StoreError::OutcomeUnknown(
            format!("the connection was lost during COMMIT: {e}"),
        ))),
        Err(e) => Err(e.into()),
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Final(e)
    }
}

impl PostgresStore {
    pub async fn open(url: &str, options: &StoreOptions) -> StoreResult<Self> {
        let shown = crate::url::redact(url);
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
            // No ping before every use: it would cost each call a round trip. A
            // connection found broken is replaced, and the call tried once more.
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(|e| {
                let m = from_sqlx(e).into_message();
                StoreError::Unavailable(format!("cannot connect to {shown}: {m}"))
            })?;
        Ok(PostgresStore {
            pool,
            budget: options.acquire_timeout,
            shown,
        })
    }

    /// One attempt at a batch, in its own transaction.
    async fn try_apply_batch(&self, batch: &Batch) -> Result<Vec<Verdict>, Failure> {
        let mut tx = self.pool.begin_with(BEGIN_STORE_DECISIONS).await?;
        let snapshot = read_snapshot(&mut tx, batch).await?;
        let (verdicts, changes) = batch.decide(&snapshot);
        write_plan(&mut tx, batch, &changes).await?;
        self.commit(tx, batch, &changes).await?;
        Ok(verdicts)
    }

    /// Commits a batch's transaction and, when the connection is lost during COMMIT,
    /// finds out from the batch's own rows whether it happened (see
    /// [`PostgresStore::commit_outcome`]).
    async fn commit(
        &self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        batch: &Batch,
        changes: &[ChargeChange],
    ) -> Result<(), Failure> {
        match tx.commit().await {
            Ok(()) => Ok(()),
            // Nothing to apply: whatever became of the transaction, the verdicts hold.
            Err(_) if changes.is_empty() => Ok(()),
            Err(e) if is_connection_loss(&e) => match self.commit_outcome(batch, changes).await {
                Outcome::Committed => Ok(()),
                Outcome::Aborted => Err(Failure::Final(StoreError::Unavailable(format!(
                    "the connection was lost during COMMIT, which did not happen: {e}"
                )))),
                Outcome::Unknown(why) => Err(Failure::Final(StoreError::OutcomeUnknown(format!(
                    "the connection was lost during COMMIT ({e}); {why}"
                )))),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Whether a batch whose COMMIT lost its connection is stored, asked on a fresh
    /// connection within the call's time budget (`db_timeout`), from the batch's own
    /// rows: each planned change leaves a decision (or an acknowledgement) naming its
    /// charge, method, reference, user, time and request id, all written by the one
    /// transaction, so the transaction committed exactly when every one of them is there.
    ///
    /// A transaction id would not do: after a failover the server answering is another
    /// one, where the id of a commit that never reached it is first "in the future" and
    /// then given to a new transaction, whose commit it would report.
    ///
    /// The question first locks the batch's charges (`FOR KEY SHARE`, which waits for the
    /// `FOR UPDATE` the batch holds): while the batch's transaction is alive on this
    /// server, still committing or not yet aware that its client is gone, the answer
    /// waits for it to end; read after the lock, the rows are the final word of this
    /// server.
    async fn commit_outcome(&self, batch: &Batch, changes: &[ChargeChange]) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.budget;
        let mut last = String::from("no answer");
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, self.stored(batch, changes)).await {
                Ok(Ok(true)) => return Outcome::Committed,
                Ok(Ok(false)) => return Outcome::Aborted,
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "no answer in time".into(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Outcome::Unknown(format!(
            "whether it committed could not be found out in time ({last})"
        ))
    }

    /// Whether every change of the batch is stored as planned (see
    /// [`PostgresStore::commit_outcome`]).
    async fn stored(&self, batch: &Batch, changes: &[ChargeChange]) -> Result<bool, sqlx::Error> {
        let ids: Vec<i64> = changes.iter().map(|c| c.charge_id).collect();
        let from: Vec<&str> = changes.iter().map(|c| c.from.as_str()).collect();
        let references: Vec<Option<&str>> = changes
            .iter()
            .map(|c| {
                c.reference
                    .as_ref()
                    .map(chargegate_core::ReferenceNumber::as_str)
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "SELECT id FROM charges WHERE id = ANY($1::bigint[]) ORDER BY id FOR KEY SHARE",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        let query = match batch.method {
            Method::Acknowledge => sqlx::query_scalar::<_, i64>(STORED_ACKNOWLEDGEMENTS),
            Method::Accept | Method::Decline => {
                sqlx::query_scalar::<_, i64>(STORED_DECISIONS).bind(batch.method.as_str())
            }
        };
        let found = query
            .bind(&ids)
            .bind(&from)
            .bind(&references)
            .bind(batch.user_id)
            .bind(batch.at.unix())
            .bind(&batch.request_id)
            .fetch_one(&mut *tx)
            .await?;
        // The answer is read; how the look-up ends does not change it.
        let _ = tx.rollback().await;
        Ok(found == changes.len() as i64)
    }

    /// Whether the database holds no operator, user, token or charge.
    pub(crate) async fn is_empty(&self) -> StoreResult<bool> {
        let mut conn = self.pool.acquire().await.map_err(sql_err)?;
        is_empty(&mut conn).await
    }

    /// Streams every table, chunk by chunk, from one snapshot, then [`Chunk::End`].
    pub(crate) async fn export(&self, sink: tokio::sync::mpsc::Sender<Chunk>) -> StoreResult<()> {
        let gone = || StoreError::Internal("the copy's target stopped reading".into());
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        for table in TABLES {
            let mut after = i64::MIN;
            loop {
                let rows =
                    match table.page_key {
                        Some(key) => sqlx::query(&format!(
                            "SELECT {} FROM {} WHERE {key} > $1 ORDER BY {key} LIMIT {CHUNK_ROWS}",
                            table.column_list(),
                            table.name
                        ))
                        .bind(after)
                        .fetch_all(&mut *tx)
                        .await,
                        None => {
                            sqlx::query(&format!(
                                "SELECT {} FROM {} ORDER BY {}",
                                table.column_list(),
                                table.name,
                                table.order_by
                            ))
                            .fetch_all(&mut *tx)
                            .await
                        }
                    }
                    .map_err(sql_err)?;
                let full = rows.len() == CHUNK_ROWS;
                let values = rows
                    .iter()
                    .map(|r| read_values(r, table.columns))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(sql_err)?;
                let last = table
                    .page_key
                    .and(values.last())
                    .and_then(|r| match r.first() {
                        Some(Value::Int(k)) => Some(*k),
                        _ => None,
                    });
                let mut values = values.into_iter().peekable();
                while values.peek().is_some() {
                    let part: Vec<_> = values.by_ref().take(CHUNK_ROWS).collect();
                    sink.send(Chunk::Rows(table, part))
                        .await
                        .map_err(|_| gone())?;
                }
                match last {
                    Some(key) if full => after = key,
                    _ => break,
                }
            }
        }
        tx.rollback().await.map_err(sql_err)?;
        sink.send(Chunk::End).await.map_err(|_| gone())
    }

    /// Writes a copy into this (empty) database in one transaction, ids preserved; commits
    /// only after [`Chunk::End`], so an interrupted copy leaves nothing behind.
    pub(crate) async fn import(
        &self,
        mut source: tokio::sync::mpsc::Receiver<Chunk>,
    ) -> StoreResult<Vec<(&'static str, u64)>> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        // No other writer may slip rows in while the copy runs.
        let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        sqlx::query(&format!(
            "LOCK TABLE {} IN EXCLUSIVE MODE",
            names.join(", ")
        ))
        .execute(&mut *tx)
        .await
        .map_err(sql_err)?;
        if !is_empty(&mut tx).await? {
            return Err(StoreError::Conflict(format!(
                "the target database {} is not empty",
                self.shown
            )));
        }
        let mut summary: Vec<(&'static str, u64)> = Vec::new();
        loop {
            let chunk = source.recv().await.ok_or_else(|| {
                StoreError::Internal("the copy stopped before its end; nothing was written".into())
            })?;
            let Chunk::Rows(table, rows) = chunk else {
                break;
            };
            insert_values(&mut tx, table, &rows).await?;
            match summary.iter_mut().find(|(t, _)| *t == table.name) {
                Some((_, n)) => *n += rows.len() as u64,
                None => summary.push((table.name, rows.len() as u64)),
            }
        }
        // Ids were copied verbatim: move each identity past them.
        for table in TABLES.iter().filter(|t| t.identity) {
            let name = table.name;
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
}

fn read_values(row: &PgRow, columns: &[crate::tables::Column]) -> Result<Vec<Value>, sqlx::Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            Ok(match column.kind {
                Kind::Int => row.try_get::<Option<i64>, _>(i)?.map(Value::Int),
                Kind::Text => row.try_get::<Option<String>, _>(i)?.map(Value::Text),
                Kind::Bool => row.try_get::<Option<bool>, _>(i)?.map(Value::Bool),
                Kind::Bytes => row.try_get::<Option<Vec<u8>>, _>(i)?.map(Value::Bytes),
            }
            .unwrap_or(Value::Null))
        })
        .collect()
}

/// Inserts copied rows with one statement: each column travels as one typed array.
async fn insert_values(
    conn: &mut PgConnection,
    table: &crate::tables::Table,
    rows: &[Vec<Value>],
) -> StoreResult<()> {
    let arrays = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let ty = match c.kind {
                Kind::Int => "bigint",
                Kind::Text => "text",
                Kind::Bool => "boolean",
                Kind::Bytes => "bytea",
            };
            format!("${}::{ty}[]", i + 1)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM unnest({arrays})",
        table.name,
        table.column_list()
    );
    let mut query = sqlx::query(&sql);
    for (i, column) in table.columns.iter().enumerate() {
        let cells = rows.iter().map(|r| r.get(i).unwrap_or(&Value::Null));
        query = match column.kind {
            Kind::Int => query.bind(
                cells
                    .map(|v| match v {
                        Value::Int(n) => Some(*n),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            Kind::Text => query.bind(
                cells
                    .map(|v| match v {
                        Value::Text(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            Kind::Bool => query.bind(
                cells
                    .map(|v| match v {
                        Value::Bool(b) => Some(*b),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
            Kind::Bytes => query.bind(
                cells
                    .map(|v| match v {
                        Value::Bytes(b) => Some(b.clone()),
                        _ => None,
                    })
                    .collect::<Vec<_>>(),
            ),
        };
    }
    query.execute(&mut *conn).await.map(|_| ()).map_err(sql_err)
}

async fn is_empty(conn: &mut PgConnection) -> StoreResult<bool> {
    for table in CONTENT_TABLES {
        let any: bool = sqlx::query_scalar(&format!("SELECT EXISTS (SELECT 1 FROM {table})"))
            .fetch_one(&mut *conn)
            .await
            .map_err(sql_err)?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// One page of `charges/list`. The WHERE clause repeats the terms of the partial index
/// `charges_to_list`, so the page comes from it, already in order.
pub const LIST_SQL: &str = "SELECT number, customer_id, amount_minor, currency, \
        local_amount_minor, local_currency, paid_through_date, status, received_on, \
        set_as_approved_on, set_as_declined_on, set_as_bad_request_on, set_as_rejected_on \
     FROM charges \
     WHERE operator_id = $1 AND (status = 'PENDING') = $2 \
       AND acknowledged_status IS DISTINCT FROM status \
     ORDER BY received_on, number LIMIT $3 OFFSET $4";

/// The references among `$3` that operator `$1` already used on its `$2` decisions, with
/// the charge each was used on.
pub const USED_DECISION_REFERENCES: &str = "SELECT d.reference_number, c.number \
     FROM unnest($3::text[]) AS r(reference) \
     CROSS JOIN LATERAL (SELECT charge_id, reference_number FROM decisions \
          WHERE operator_id = $1 AND method = $2 AND reference_number = r.reference LIMIT 1) d \
     JOIN charges c ON c.id = d.charge_id";

/// Locks the batch's charges, then reads what the rules need.
async fn read_snapshot(conn: &mut PgConnection, batch: &Batch) -> Result<Snapshot, Failure> {
    let mut snapshot = Snapshot::default();
    let numbers: Vec<&str> = batch
        .numbers()
        .into_iter()
        .map(chargegate_core::ChargeNumber::as_str)
        .collect();
    if numbers.is_empty() {
        return Ok(snapshot);
    }
    // Lock first, in id order (so two batches cannot deadlock), read second: the read is
    // a new statement, so under READ COMMITTED it sees every change committed before the
    // locks were granted, decisions included.
    sqlx::query(
        "SELECT id FROM charges \
         WHERE operator_id = $1 AND number = ANY($2) ORDER BY id FOR UPDATE",
    )
    .bind(batch.operator_id)
    .bind(&numbers)
    .execute(&mut *conn)
    .await?;
    let found = sqlx::query(
        "SELECT c.id, c.number, c.customer_id, c.status, d.method AS decision_method, \
                d.reference_number AS decision_reference, c.acknowledged_status, \
                c.acknowledged_reference_number \
         FROM charges c LEFT JOIN decisions d ON d.charge_id = c.id \
         WHERE c.operator_id = $1 AND c.number = ANY($2)",
    )
    .bind(batch.operator_id)
    .bind(&numbers)
    .fetch_all(&mut *conn)
    .await?;
    for r in &found {
        let row = StateRow {
            id: r.try_get("id")?,
            number: r.try_get("number")?,
            customer: r.try_get("customer_id")?,
            status: r.try_get("status")?,
            decision_method: r.try_get("decision_method")?,
            decision_reference: r.try_get("decision_reference")?,
            acknowledged_status: r.try_get("acknowledged_status")?,
            acknowledged_reference: r.try_get("acknowledged_reference_number")?,
        };
        let (number, state) = row.into_state()?;
        snapshot.charges.insert(number, state);
    }
    let references: Vec<&str> = batch
        .references()
        .into_iter()
        .map(chargegate_core::ReferenceNumber::as_str)
        .collect();
    if references.is_empty() {
        return Ok(snapshot);
    }
    // Each method's references form their own namespace: its accepts, its declines, or
    // its acknowledgements. Each reference is looked up by the whole unique index: the
    // lateral subquery (kept apart by its LIMIT, which the unique index makes exact) is
    // one index probe per reference, so the plan cannot fall back to reading every
    // decision of the operator on a database without statistics.
    let used = match batch.method {
        Method::Acknowledge => {
            sqlx::query(
                "SELECT a.reference_number, c.number FROM unnest($2::text[]) AS r(reference) \
                 CROSS JOIN LATERAL (SELECT charge_id, reference_number FROM acknowledgements \
                      WHERE operator_id = $1 AND reference_number = r.reference LIMIT 1) a \
                 JOIN charges c ON c.id = a.charge_id",
            )
            .bind(batch.operator_id)
            .bind(&references)
            .fetch_all(&mut *conn)
            .await?
        }
        Method::Accept | Method::Decline => {
            sqlx::query(USED_DECISION_REFERENCES)
                .bind(batch.operator_id)
                .bind(batch.method.as_str())
                .bind(&references)
                .fetch_all(&mut *conn)
                .await?
        }
    };
    for r in &used {
        let reference: Option<String> = r.try_get("reference_number")?;
        let number: String = r.try_get("number")?;
        if let Some(reference) = rows::reference(reference)? {
            snapshot
                .used_references
                .insert(reference, rows::number(number)?);
        }
    }
    Ok(snapshot)
}

/// How many of a decision's planned changes are stored as planned: `$1` method, `$2`
/// charge ids, `$3` from-statuses (unused: a decision row does not keep it), `$4`
/// references, `$5` user, `$6` time, `$7` request id (what [`DECLINE_SQL`] and
/// [`ACCEPT_SQL`] write).
const STORED_DECISIONS: &str = "SELECT count(*) \
     FROM unnest($2::bigint[], $3::text[], $4::text[]) AS p(id, from_status, reference) \
     WHERE EXISTS (SELECT 1 FROM decisions d WHERE d.charge_id = p.id AND d.method = $1 \
          AND d.reference_number IS NOT DISTINCT FROM p.reference AND d.user_id = $5 \
          AND d.decided_on = $6 AND d.request_id = $7)";

/// How many of an acknowledgement's planned changes are stored as planned: `$1` charge
/// ids, `$2` the statuses acknowledged, `$3` references, `$4` user, `$5` time, `$6`
/// request id (what [`ACKNOWLEDGE_SQL`] writes).
const STORED_ACKNOWLEDGEMENTS: &str = "SELECT count(*) \
     FROM unnest($1::bigint[], $2::text[], $3::text[]) AS p(id, status, reference) \
     WHERE EXISTS (SELECT 1 FROM acknowledgements a WHERE a.charge_id = p.id \
          AND a.status = p.status AND a.reference_number IS NOT DISTINCT FROM p.reference \
          AND a.user_id = $4 AND a.acknowledged_on = $5 AND a.request_id = $6)";

/// A decision's writes in one statement (one round trip): the conditional status update,
/// the decision rows and the history rows, all from the plan's arrays. `$1` ids, `$2`
/// from-statuses, `$3` to-statuses, `$4` references, `$5` the time, `$6` operator, `$7`
/// method, `$8` user, `$9` request id, `$10` the key of the caller's token, `$11` whether
/// a person decided in the console. `$extra` adds CTEs of one method only. Answers how
/// many charges changed.
macro_rules! decide_sql {
    ($status:literal, $stamp:literal, $extra:expr) => {
        concat!(
            "WITH plan AS (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[]) \
                  WITH ORDINALITY AS p(id, from_status, to_status, reference, position)), \
             changed AS (UPDATE charges c SET status = '",
            $status,
            "', ",
            $stamp,
            " = $5 FROM plan WHERE c.id = plan.id AND c.status = plan.from_status \
                  RETURNING c.id), \
             recorded AS (INSERT INTO decisions (charge_id, operator_id, method, \
                  reference_number, user_id, decided_on, request_id, key_id) \
                  SELECT id, $6, $7, reference, $8, $5, $9, $10 FROM plan), \
             history AS (INSERT INTO charge_history (charge_id, event, from_status, to_status, \
                  at, user_id, request_id, reference_number, key_id, via_console) \
                  SELECT id, $7, from_status, to_status, $5, $8, $9, reference, $10, $11 \
                  FROM plan)",
            $extra,
            " SELECT count(*) FROM changed"
        )
    };
}

const ACCEPT_SQL: &str = decide_sql!(
    "APPROVED",
    "set_as_approved_on",
    ", \
        events AS (INSERT INTO outbox (operator_id, type, occurred_at, charge_id, \
             reference_number) \
             SELECT $6, 'charge.approved', $5, id, reference FROM plan ORDER BY position)"
);
/// A decline also cancels the live subscriptions its charges belong to, with their history
/// rows, in the same statement (no extra round trip): a declined charge ends the Netflix
/// service. `doomed` reads the states before the statement, so each history row has the
/// state the subscription was cancelled from.
const DECLINE_SQL: &str = decide_sql!(
    "DECLINED",
    "set_as_declined_on",
    ", \
        doomed AS (SELECT s.id, s.life_cycle_state, min(c.id) AS charge_id \
             FROM plan JOIN charges c ON c.id = plan.id \
             JOIN subscriptions s ON s.id = c.subscription_id \
             WHERE s.life_cycle_state <> 'CANCELLED' GROUP BY s.id, s.life_cycle_state), \
        cancelled AS (UPDATE subscriptions s SET life_cycle_state = 'CANCELLED', \
             cancelled_at = $5, netflix_token_hash = NULL, netflix_token_expires_at = NULL \
             FROM doomed WHERE s.id = doomed.id AND s.life_cycle_state <> 'CANCELLED' \
             RETURNING s.id, doomed.life_cycle_state AS from_state, doomed.charge_id, \
                  s.operator_id, s.netflix_state, s.netflix_customer_id), \
        cancelled_history AS (INSERT INTO subscription_history (subscription_id, event, \
             from_state, to_state, at, user_id, key_id, request_id, charge_id, via_console) \
             SELECT id, 'cancelled', from_state, 'CANCELLED', $5, $8, $10, $9, charge_id, $11 \
             FROM cancelled), \
        events AS (INSERT INTO outbox (operator_id, type, occurred_at, charge_id, \
             reference_number, subscription_id, life_cycle_state, netflix_state, \
             netflix_customer_id) \
             SELECT $6, type, $5, charge_id, reference, subscription_id, life_cycle_state, \
                  netflix_state, netflix_customer_id \
             FROM (SELECT 0 AS k, position, 'charge.declined' AS type, id AS charge_id, \
                       reference, NULL::bigint AS subscription_id, \
                       NULL::text AS life_cycle_state, NULL::text AS netflix_state, \
                       NULL::text AS netflix_customer_id FROM plan \
                   UNION ALL \
                   SELECT 1, charge_id, 'subscription.cancelled', NULL, NULL, id, 'CANCELLED', \
                       netflix_state, netflix_customer_id FROM cancelled) e \
             ORDER BY k, position)"
);

/// An acknowledgement's writes in one statement, with the same parameters as
/// [`DECLINE_SQL`]: the charge keeps its status and records it as acknowledged.
const ACKNOWLEDGE_SQL: &str = "WITH plan AS (SELECT * FROM unnest($1::bigint[], $2::text[], \
          $3::text[], $4::text[]) AS p(id, from_status, to_status, reference)), \
     changed AS (UPDATE charges c SET acknowledged_status = c.status, acknowledged_on = $5, \
          acknowledged_reference_number = plan.reference \
          FROM plan WHERE c.id = plan.id AND c.status = plan.from_status RETURNING c.id), \
     recorded AS (INSERT INTO acknowledgements (charge_id, operator_id, status, \
          reference_number, user_id, acknowledged_on, request_id) \
          SELECT id, $6, from_status, reference, $8, $5, $9 FROM plan), \
     history AS (INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
          user_id, request_id, reference_number, key_id, via_console) \
          SELECT id, $7, from_status, to_status, $5, $8, $9, reference, $10, $11 FROM plan) \
     SELECT count(*) FROM changed";

/// Executes a batch's plan in one statement. Every planned charge must still be in the
/// status it was judged in (the row locks make sure of it); should one not be, the attempt
/// starts over and nothing of it is kept.
async fn write_plan(
    conn: &mut PgConnection,
    batch: &Batch,
    changes: &[ChargeChange],
) -> Result<(), Failure> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = changes.iter().map(|c| c.charge_id).collect();
    let from: Vec<&str> = changes.iter().map(|c| c.from.as_str()).collect();
    let to: Vec<&str> = changes.iter().map(|c| c.to.as_str()).collect();
    let references: Vec<Option<&str>> = changes
        .iter()
        .map(|c| {
            c.reference
                .as_ref()
                .map(chargegate_core::ReferenceNumber::as_str)
        })
        .collect();
    let sql = match batch.method {
        Method::Accept => ACCEPT_SQL,
        Method::Decline => DECLINE_SQL,
        Method::Acknowledge => ACKNOWLEDGE_SQL,
    };
    let changed: i64 = sqlx::query_scalar(sql)
        .bind(&ids)
        .bind(&from)
        .bind(&to)
        .bind(&references)
        .bind(batch.at.unix())
        .bind(batch.operator_id)
        .bind(batch.method.as_str())
        .bind(batch.user_id)
        .bind(&batch.request_id)
        .bind(batch.key_id)
        .bind(batch.via_console)
        .fetch_one(&mut *conn)
        .await?;
    if changed != changes.len() as i64 {
        // The locks make this impossible; should it happen, start over.
        return Err(Failure::Retry(format!(
            "{} changed {changed} of {} charges",
            batch.method,
            changes.len()
        )));
    }
    Ok(())
}

fn renamed_conflict(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match sql_err(e) {
        StoreError::Conflict(_) => StoreError::Conflict(message()),
        other => other,
    }
}

/// Inserts resolved charges with one statement per chunk, returning each `(id, status)`.
async fn insert_charges(
    conn: &mut PgConnection,
    rows: &[ResolvedCharge],
) -> StoreResult<Vec<(i64, String)>> {
    let column =
        |f: &dyn Fn(&ResolvedCharge) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
    let text =
        |f: &dyn Fn(&ResolvedCharge) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
    let inserted = sqlx::query(
        "INSERT INTO charges (number, operator_id, customer_id, netflix_customer_id, \
                              amount_minor, currency, local_amount_minor, local_currency, \
                              paid_through_date, status, initial_status, received_on, \
                              set_as_approved_on, set_as_declined_on, set_as_bad_request_on, \
                              set_as_rejected_on, subscription_id) \
         SELECT number, operator_id, customer_id, netflix_customer_id, amount_minor, currency, \
                local_amount_minor, local_currency, paid_through_date, status, status, \
                received_on, approved, declined, bad_request, rejected, \
                (SELECT s.id FROM subscriptions s WHERE s.operator_id = u.operator_id \
                   AND s.customer_id = u.customer_id AND s.life_cycle_state <> 'CANCELLED') \
         FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], \
                     $6::text[], $7::bigint[], $8::text[], $9::text[], $10::text[], \
                     $11::bigint[], $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[]) \
              AS u(number, operator_id, customer_id, netflix_customer_id, amount_minor, \
                   currency, local_amount_minor, local_currency, paid_through_date, status, \
                   received_on, approved, declined, bad_request, rejected) \
         RETURNING id, status",
    )
    .bind(text(&|c| Some(c.number.as_str().to_owned())))
    .bind(column(&|c| Some(c.operator_id)))
    .bind(text(&|c| Some(c.customer.as_str().to_owned())))
    .bind(text(&|c| c.netflix_customer.clone()))
    .bind(column(&|c| Some(c.amount.minor())))
    .bind(text(&|c| Some(c.amount.currency().code().to_owned())))
    .bind(column(&|c| Some(c.local_amount.minor())))
    .bind(text(&|c| Some(c.local_amount.currency().code().to_owned())))
    .bind(text(&|c| Some(c.paid_through_date.to_string())))
    .bind(text(&|c| Some(c.status.as_str().to_owned())))
    .bind(column(&|c| Some(c.received_on.unix())))
    .bind(column(&|c| c.stamps()[0]))
    .bind(column(&|c| c.stamps()[1]))
    .bind(column(&|c| c.stamps()[2]))
    .bind(column(&|c| c.stamps()[3]))
    .fetch_all(&mut *conn)
    .await
    .map_err(sql_err)?;
    inserted
        .iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("status")?)))
        .collect::<Result<Vec<_>, sqlx::Error>>()
        .map_err(sql_err)
}

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(sql_err)
    }

    async fn login_user(
        &self,
        operator: &OperatorCode,
        username: &Username,
    ) -> StoreResult<Option<LoginUser>> {
        let row = sqlx::query(
            "SELECT u.id, u.operator_id, u.password_hash, u.enabled \
             FROM users u JOIN operators o ON o.id = u.operator_id \
             WHERE o.code = $1 AND u.username = $2",
        )
        .bind(operator.as_str())
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_err)?;
        row.map(|r| {
            Ok(LoginUser {
                user_id: r.try_get("id")?,
                operator_id: r.try_get("operator_id")?,
                password_hash: r.try_get("password_hash")?,
                enabled: r.try_get("enabled")?,
            })
        })
        .transpose()
        .map_err(sql_err)
    }

    async fn begin_login_attempt(
        &self,
        organisation: &str,
        username: &str,
        now: Timestamp,
        policy: LoginPolicy,
    ) -> StoreResult<AttemptPermit> {
        // Pairs neither locked nor tried within the lockout are forgotten.
        sqlx::query(
            "DELETE FROM login_attempts WHERE last_attempt_at < $1 - $2 \
               AND (locked_until IS NULL OR locked_until <= $1)",
        )
        .bind(now.unix())
        .bind(policy.lockout_seconds)
        .execute(&self.pool)
        .await
        .map_err(sql_err)?;
        // The row lock of the upsert serialises parallel attempts for one pair; each is
        // counted before its password is checked. An expired lock starts a new count.
        let (attempts, locked_until): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO login_attempts AS a \
                 (organisation, username, attempts, locked_until, last_attempt_at) \
             VALUES ($1, $2, 1, NULL, $3) \
             ON CONFLICT (organisation, username) DO UPDATE SET \
               attempts = CASE WHEN a.locked_until IS NOT NULL AND a.locked_until <= $3 THEN 1 \
                               ELSE a.attempts + 1 END, \
               locked_until = CASE WHEN a.locked_until IS NOT NULL AND a.locked_until <= $3 \
                                       THEN NULL \
                                   WHEN a.attempts + 1 > $4 THEN COALESCE(a.locked_until, $3 + $5) \
                                   ELSE a.locked_until END, \
               last_attempt_at = $3 \
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
            "INSERT INTO tokens (hash, user_id, key_id, issued_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.hash.0[..])
        .bind(token.user_id)
        .bind(token.key_id)
        .bind(token.issued_at.unix())
        .bind(token.expires_at.unix())
        .execute(&mut *tx)
        .await
        .map_err(sql_err)?;
        sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1")
            .bind(token.user_id)
            .bind(token.issued_at.unix())
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        // Keep the table from growing forever; expired tokens stay a week so that a
        // client still hears EXPIRED_TOKEN rather than INVALID_TOKEN for a while.
        sqlx::query("DELETE FROM tokens WHERE expires_at < $1")
            .bind(token.issued_at.unix() - TOKEN_RETENTION_SECONDS)
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        tx.commit().await.map_err(sql_err)
    }

    async fn token(&self, hash: &TokenHash) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT t.user_id, u.operator_id, o.code, t.expires_at, \
                    t.revoked_at IS NOT NULL AS revoked, u.enabled, t.key_id \
             FROM tokens t JOIN users u ON u.id = t.user_id \
             JOIN operators o ON o.id = u.operator_id WHERE t.hash = $1",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_err)?;
        let Some(r) = row else {
            return Ok(None);
        };
        caller(&r).map_err(sql_err)?.into_record().map(Some)
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

    async fn token_secrets(&self) -> StoreResult<Vec<TokenSecret>> {
        let rows = sqlx::query(
            "SELECT generation, secret, created_at FROM token_secrets ORDER BY generation",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        rows.iter()
            .map(|r| {
                let generation: i64 = r.try_get("generation").map_err(sql_err)?;
                let secret: Vec<u8> = r.try_get("secret").map_err(sql_err)?;
                let created_at: i64 = r.try_get("created_at").map_err(sql_err)?;
                rows::token_secret(generation, &secret, created_at)
            })
            .collect()
    }

    async fn add_token_secret(&self, secret: &TokenSecret) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO token_secrets (generation, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (generation) DO NOTHING",
        )
        .bind(secret.generation)
        .bind(&secret.secret[..])
        .bind(secret.created_at.unix())
        .execute(&self.pool)
        .await
        .map_err(sql_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn apply_batch(&self, batch: &Batch) -> StoreResult<Vec<Verdict>> {
        retried(batch.method.as_str(), || self.try_apply_batch(batch)).await
    }

    async fn apply_token_batch(
        &self,
        request: TokenBatch,
        admit: Admission<'_>,
    ) -> StoreResult<Authorized> {
        self.token_batch(request, admit).await
    }

    async fn list_charges(&self, query: &ListQuery) -> StoreResult<Vec<Charge>> {
        let found = sqlx::query(LIST_SQL)
            .bind(query.operator_id)
            .bind(query.group == StatusGroup::NotProcessed)
            .bind(i64::from(query.limit))
            .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(sql_err)?;
        found
            .iter()
            .map(|r| {
                let row = (|| -> Result<ChargeRow<'_>, sqlx::Error> {
                    Ok(ChargeRow {
                        number: r.try_get("number")?,
                        customer: r.try_get("customer_id")?,
                        amount_minor: r.try_get("amount_minor")?,
                        currency: r.try_get("currency")?,
                        local_amount_minor: r.try_get("local_amount_minor")?,
                        local_currency: r.try_get("local_currency")?,
                        paid_through_date: r.try_get("paid_through_date")?,
                        status: r.try_get("status")?,
                        received_on: r.try_get("received_on")?,
                        set_as_approved_on: r.try_get("set_as_approved_on")?,
                        set_as_declined_on: r.try_get("set_as_declined_on")?,
                        set_as_bad_request_on: r.try_get("set_as_bad_request_on")?,
                        set_as_rejected_on: r.try_get("set_as_rejected_on")?,
                    })
                })()
                .map_err(sql_err)?;
                row.into_charge()
            })
            .collect()
    }
}

#[async_trait]
impl AdminStore for PostgresStore {
    async fn migrate(&self) -> StoreResult<()> {
        // sqlx takes an advisory lock, so servers starting together migrate once.
        migrator(migrations::POSTGRES)
            .run(&self.pool)
            .await
            .map_err(migrations::error)
    }

    async fn create_operator(&self, new: &NewOperator) -> StoreResult<Operator> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO operators (code, name, local_currency, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(new.code.as_str())
        .bind(&new.name)
        .bind(new.local_currency.code())
        .bind(Timestamp::now().unix())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| renamed_conflict(e, || format!("operator {} already exists", new.code)))?;
        Ok(Operator {
            id,
            code: new.code.clone(),
            name: new.name.clone(),
            local_currency: new.local_currency,
        })
    }

    async fn operator_by_code(&self, code: &OperatorCode) -> StoreResult<Option<Operator>> {
        let row =
            sqlx::query("SELECT id, code, name, local_currency FROM operators WHERE code = $1")
                .bind(code.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_err)?;
        let Some(r) = row else {
            return Ok(None);
        };
        let (id, code, name, currency) =
            (|| -> Result<(i64, String, String, String), sqlx::Error> {
                Ok((
                    r.try_get("id")?,
                    r.try_get("code")?,
                    r.try_get("name")?,
                    r.try_get("local_currency")?,
                ))
            })()
            .map_err(sql_err)?;
        rows::operator(id, code, name, &currency).map(Some)
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
        .map_err(|e| renamed_conflict(e, || format!("user {} already exists", new.username)))
    }

    async fn import_charges(
        &self,
        charges: Vec<NewCharge>,
        now: Timestamp,
        progress: Progress,
    ) -> StoreResult<ImportOutcome> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        // Imports on several servers at once would race for the next generated number.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(IMPORT_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        let given: Vec<&str> = charges
            .iter()
            .filter_map(|c| c.number.as_ref().map(chargegate_core::ChargeNumber::as_str))
            .collect();
        let mut stored = std::collections::HashMap::new();
        for chunk in given.chunks(IMPORT_CHUNK) {
            let found = sqlx::query(
                "SELECT number, operator_id, customer_id, netflix_customer_id, amount_minor, \
                        currency, local_amount_minor, local_currency, paid_through_date, \
                        received_on, initial_status \
                 FROM charges WHERE number = ANY($1)",
            )
            .bind(chunk)
            .fetch_all(&mut *tx)
            .await
            .map_err(sql_err)?;
            for r in &found {
                let row = (|| -> Result<IntakeRow, sqlx::Error> {
                    Ok(IntakeRow {
                        number: r.try_get("number")?,
                        operator_id: r.try_get("operator_id")?,
                        customer: r.try_get("customer_id")?,
                        netflix_customer: r.try_get("netflix_customer_id")?,
                        amount_minor: r.try_get("amount_minor")?,
                        currency: r.try_get("currency")?,
                        local_amount_minor: r.try_get("local_amount_minor")?,
                        local_currency: r.try_get("local_currency")?,
                        paid_through_date: r.try_get("paid_through_date")?,
                        received_on: r.try_get("received_on")?,
                        initial_status: r.try_get("initial_status")?,
                    })
                })()
                .map_err(sql_err)?;
                let (number, intake) = row.into_intake()?;
                stored.insert(number, intake);
            }
        }
        // Generated numbers continue after the highest one in use.
        let max_generated: Option<String> =
            sqlx::query_scalar("SELECT max(number) FROM charges WHERE number ~ '^I[0-9]{8}$'")
                .fetch_one(&mut *tx)
                .await
                .map_err(sql_err)?;
        let plan = chargegate_core::import::plan(&charges, &stored, max_generated.as_deref(), now);
        if !plan.conflicts.is_empty() {
            tx.rollback().await.map_err(sql_err)?;
            return Ok(ImportOutcome::Refused(plan.conflicts));
        }
        let mut done = plan.skipped as u64;
        for chunk in plan.rows.chunks(IMPORT_CHUNK) {
            let inserted = insert_charges(&mut tx, chunk).await?;
            let ids: Vec<i64> = inserted.iter().map(|(id, _)| *id).collect();
            let statuses: Vec<&str> = inserted.iter().map(|(_, s)| s.as_str()).collect();
            sqlx::query(
                "INSERT INTO charge_history (charge_id, event, from_status, to_status, at) \
                 SELECT u.id, 'import', NULL, u.status, $3 \
                 FROM unnest($1::bigint[], $2::text[]) AS u(id, status)",
            )
            .bind(&ids)
            .bind(&statuses)
            .bind(now.unix())
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
            done += chunk.len() as u64;
            progress(done);
        }
        tx.commit().await.map_err(sql_err)?;
        Ok(ImportOutcome::Imported(ImportSummary {
            added: plan.rows.len() as u64,
            skipped: plan.skipped as u64,
        }))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// A token's columns (`user_id`, `operator_id`, `code`, `expires_at`, `revoked`,
/// `enabled`, `key_id`), as both the token lookup and the batch statement name them.
pub(super) fn caller(row: &PgRow) -> Result<TokenRow, sqlx::Error> {
    Ok(TokenRow {
        user_id: row.try_get("user_id")?,
        operator_id: row.try_get("operator_id")?,
        operator_code: row.try_get("code")?,
        expires_at: row.try_get("expires_at")?,
        revoked: row.try_get("revoked")?,
        user_enabled: row.try_get("enabled")?,
        key_id: row.try_get("key_id")?,
    })
}
