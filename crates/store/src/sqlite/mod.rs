//! The embedded default: one SQLite file, zero set-up.
//!
//! Durability first: WAL with `synchronous=FULL` (a lost decline is a billing error) and
//! foreign keys on. SQLite has one writer, so chargegate has one too: a thread that owns
//! the write connection and runs whole units of work, committing several per fsync
//! ([`writer`]). Every write transaction is `BEGIN IMMEDIATE`, so it holds the write lock
//! from its first read: the snapshot a batch is judged on cannot change before its write,
//! whether the competitor is another task or another process.
//!
//! Reads (token checks, logins, `charges/list`) do not queue behind the writer: they run
//! on reader connections, which WAL lets read beside it, directly on the calling task.
//! They are short indexed lookups (tens of microseconds); handing each to another thread
//! would cost more than the read itself.
//!
//! The SQL below is plain and top to bottom; statements are prepared once per connection
//! and cached.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chargegate_core::batch::{Batch, ChargeChange, Method, Snapshot, Verdict};
use chargegate_core::charge::{Charge, StatusGroup};
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::EventType;
use chargegate_core::import::ResolvedCharge;
use chargegate_core::store::{
    AdminStore, AttemptPermit, ImportOutcome, ImportSummary, ListQuery, LoginPolicy, LoginUser,
    NewCharge, NewOperator, NewToken, NewUser, Operator, Progress, Store, StoreError, StoreResult,
    TokenRecord, TokenSecret,
};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_core::token::TokenHash;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use crate::error::{from_sqlite, from_sqlx};
use crate::migrations::{self, migrator};
use crate::options::StoreOptions;
use crate::rows::{self, ChargeRow, IntakeRow, StateRow, TOKEN_RETENTION_SECONDS, TokenRow};
use crate::tables::{CHUNK_ROWS, CONTENT_TABLES, Chunk, Kind, TABLES, Value};

mod accounts;
mod audit;
mod cancel;
mod connector;
mod console;
mod subscriptions;
mod writer;

use writer::Writer;

pub struct SqliteStore {
    writer: Writer,
    readers: Readers,
    path: PathBuf,
    busy_timeout: Duration,
}

/// Opens a connection with chargegate's settings.
fn connect(path: &Path, busy_timeout: Duration, create: bool) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    // Savepoints journal into memory, not into a temporary file; the writer's own
    // automatic checkpoint is only a safety net behind the background checkpointer.
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 10000;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Reader connections, opened on demand and kept for reuse.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    /// Set by `close`: later reads answer `Unavailable`.
    closed: std::sync::atomic::AtomicBool,
    keep: usize,
    path: PathBuf,
    busy_timeout: Duration,
}

impl Readers {
    /// Runs a read on a reader connection, on the calling thread.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the database is closed".into()));
        }
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        let conn = if let Some(conn) = idle {
            conn
        } else {
            let conn = connect(&self.path, self.busy_timeout, false).map_err(from_sqlite)?;
            conn.execute_batch("PRAGMA query_only = ON")
                .map_err(from_sqlite)?;
            conn
        };
        let result = f(&conn);
        // A connection that failed for want of the database is not kept: the next read
        // opens a fresh one.
        if !matches!(result, Err(StoreError::Unavailable(_))) {
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if idle.len() < self.keep {
                idle.push(conn);
            }
        }
        result
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`.
    pub async fn open(path: &Path, options: &StoreOptions) -> StoreResult<Self> {
        let busy_timeout = options.acquire_timeout;
        let cannot_open = |e: rusqlite::Error| {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            let reason = match parent {
                Some(dir) if !dir.is_dir() => {
                    format!("its directory {} does not exist", dir.display())
                }
                // SQLite's own message repeats the path; say it once.
                _ => from_sqlite(e)
                    .into_message()
                    .replace(&format!(": {}", path.display()), ""),
            };
            StoreError::Unavailable(format!(
                "cannot open SQLite database {}: {reason}",
                path.display()
            ))
        };
        // The writer opens first: it creates the file and switches it to WAL before any
        // reader opens it.
        let conn = connect(path, busy_timeout, true).map_err(cannot_open)?;
        let reopen_path = path.to_owned();
        let writer = Writer::start(
            conn,
            std::sync::Arc::new(move || connect(&reopen_path, busy_timeout, false)),
        )
        .map_err(|e| StoreError::Internal(format!("cannot start the database writer: {e}")))?;
        Ok(SqliteStore {
            writer,
            readers: Readers {
                idle: Mutex::new(Vec::new()),
                closed: Default::default(),
                keep: options.max_connections.max(1) as usize,
                path: path.to_owned(),
                busy_timeout,
            },
            path: path.to_owned(),
            busy_timeout,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes a consistent copy of the database to `target`, a path where nothing exists
    /// yet, while servers keep reading and writing: `VACUUM INTO` copies one read
    /// snapshot (in WAL mode it neither waits for nor blocks writers), so the copy holds
    /// every transaction committed before it started and nothing of any later one. The
    /// copy is flushed to disk before this returns, which SQLite does not do itself.
    pub async fn backup(&self, target: &Path) -> StoreResult<()> {
        let Some(target_text) = target.to_str().map(str::to_owned) else {
            return Err(StoreError::Internal(format!(
                "backup path {} is not valid UTF-8",
                target.display()
            )));
        };
        // Claim the path first, atomically: an existing file is never touched, and what
        // is there after a failure is ours to remove. VACUUM INTO accepts an empty file.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StoreError::Conflict(format!(
                    "{} already exists; a backup never overwrites a file",
                    target.display()
                )));
            }
            Err(e) => {
                return Err(StoreError::Conflict(format!(
                    "cannot create {}: {e}",
                    target.display()
                )));
            }
        }
        let (path, busy) = (self.path.clone(), self.busy_timeout);
        let target = target.to_owned();
        let copy = move || -> StoreResult<()> {
            let conn = connect(&path, busy, false).map_err(from_sqlite)?;
            if let Err(e) = conn.execute("VACUUM INTO ?1", [&target_text]) {
                let _ = std::fs::remove_file(&target);
                return Err(from_sqlite(e));
            }
            // The file's data, then its directory entry.
            let flush = || -> std::io::Result<()> {
                std::fs::File::open(&target)?.sync_all()?;
                let dir = match target.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                std::fs::File::open(dir)?.sync_all()
            };
            flush().map_err(|e| {
                StoreError::Unavailable(format!("cannot flush the backup to disk: {e}"))
            })
        };
        tokio::task::spawn_blocking(copy)
            .await
            .map_err(|e| StoreError::Internal(format!("the backup stopped: {e}")))?
    }

    /// Whether the database holds no operator, user, token or charge.
    pub(crate) async fn is_empty(&self) -> StoreResult<bool> {
        self.readers.read(is_empty)
    }

    /// Streams every table, chunk by chunk, from one read transaction (a consistent
    /// snapshot, even while a server keeps writing), then [`Chunk::End`].
    pub(crate) async fn export(&self, sink: tokio::sync::mpsc::Sender<Chunk>) -> StoreResult<()> {
        let (path, busy) = (self.path.clone(), self.busy_timeout);
        let export = move || -> StoreResult<()> {
            let conn = connect(&path, busy, false).map_err(from_sqlite)?;
            conn.execute_batch("BEGIN").map_err(from_sqlite)?;
            for table in TABLES {
                let mut after = i64::MIN;
                loop {
                    let sql = match table.page_key {
                        Some(key) => format!(
                            "SELECT {} FROM {} WHERE {key} > ?1 ORDER BY {key} LIMIT {CHUNK_ROWS}",
                            table.column_list(),
                            table.name
                        ),
                        None => format!(
                            "SELECT {} FROM {} ORDER BY {}",
                            table.column_list(),
                            table.name,
                            table.order_by
                        ),
                    };
                    let mut stmt = conn.prepare(&sql).map_err(from_sqlite)?;
                    let bind: &[&dyn rusqlite::ToSql] = match table.page_key {
                        Some(_) => &[&after],
                        None => &[],
                    };
                    let rows = stmt
                        .query_map(bind, |row| read_values(row, table.columns))
                        .map_err(from_sqlite)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(from_sqlite)?;
                    let full = rows.len() == CHUNK_ROWS;
                    let last = table
                        .page_key
                        .and(rows.last())
                        .and_then(|r| match r.first() {
                            Some(Value::Int(k)) => Some(*k),
                            _ => None,
                        });
                    if !rows.is_empty() {
                        for part in chunk_rows(rows) {
                            sink.blocking_send(Chunk::Rows(table, part)).map_err(|_| {
                                StoreError::Internal("the copy's target stopped reading".into())
                            })?;
                        }
                    }
                    match last {
                        Some(key) if full => after = key,
                        _ => break,
                    }
                }
            }
            conn.execute_batch("COMMIT").map_err(from_sqlite)?;
            sink.blocking_send(Chunk::End)
                .map_err(|_| StoreError::Internal("the copy's target stopped reading".into()))
        };
        tokio::task::spawn_blocking(export)
            .await
            .map_err(|e| StoreError::Internal(format!("the export stopped: {e}")))?
    }

    /// Writes a copy into this (empty) database in one transaction, ids preserved; commits
    /// only after [`Chunk::End`], so an interrupted copy leaves nothing behind.
    pub(crate) async fn import(
        &self,
        mut source: tokio::sync::mpsc::Receiver<Chunk>,
    ) -> StoreResult<Vec<(&'static str, u64)>> {
        let shown = self.path.display().to_string();
        self.writer
            .write(usize::MAX, move |conn| {
                if !is_empty(conn)? {
                    return Err(StoreError::Conflict(format!(
                        "the target database {shown} is not empty"
                    )));
                }
                let mut summary: Vec<(&'static str, u64)> = Vec::new();
                loop {
                    let chunk = source.blocking_recv().ok_or_else(|| {
                        StoreError::Internal(
                            "the copy stopped before its end; nothing was written".into(),
                        )
                    })?;
                    let Chunk::Rows(table, rows) = chunk else {
                        break;
                    };
                    let placeholders = (1..=table.columns.len())
                        .map(|i| format!("?{i}"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    let mut insert = conn
                        .prepare_cached(&format!(
                            "INSERT INTO {} ({}) VALUES ({placeholders})",
                            table.name,
                            table.column_list()
                        ))
                        .map_err(from_sqlite)?;
                    for row in &rows {
                        insert
                            .execute(rusqlite::params_from_iter(row.iter().map(sql_value)))
                            .map_err(from_sqlite)?;
                    }
                    match summary.iter_mut().find(|(t, _)| *t == table.name) {
                        Some((_, n)) => *n += rows.len() as u64,
                        None => summary.push((table.name, rows.len() as u64)),
                    }
                }
                Ok(summary)
            })
            .await
    }
}

fn chunk_rows(rows: Vec<Vec<Value>>) -> Vec<Vec<Vec<Value>>> {
    let mut parts = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        parts.push(rows.by_ref().take(CHUNK_ROWS).collect());
    }
    parts
}

fn read_values(row: &Row<'_>, columns: &[crate::tables::Column]) -> rusqlite::Result<Vec<Value>> {
    use rusqlite::types::ValueRef;
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            Ok(match (row.get_ref(i)?, column.kind) {
                (ValueRef::Null, _) => Value::Null,
                (ValueRef::Integer(n), Kind::Bool) => Value::Bool(n != 0),
                (ValueRef::Integer(n), _) => Value::Int(n),
                (ValueRef::Text(t), _) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                (ValueRef::Blob(b), _) => Value::Bytes(b.to_vec()),
                (ValueRef::Real(r), _) => Value::Text(r.to_string()),
            })
        })
        .collect()
}

fn sql_value(value: &Value) -> rusqlite::types::Value {
    use rusqlite::types::Value as V;
    match value {
        Value::Null => V::Null,
        Value::Int(n) => V::Integer(*n),
        Value::Text(t) => V::Text(t.clone()),
        Value::Bool(b) => V::Integer(i64::from(*b)),
        Value::Bytes(b) => V::Blob(b.clone()),
    }
}

fn is_empty(conn: &Connection) -> StoreResult<bool> {
    for table in CONTENT_TABLES {
        let any: bool = conn
            .prepare_cached(&format!("SELECT EXISTS (SELECT 1 FROM {table})"))
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(from_sqlite)?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The positions of named result columns, looked up once per statement rather than once
/// per row: a lookup by name compares against every column name, which for a page of 50
/// charges cost more than reading them.
fn columns<const N: usize>(
    stmt: &rusqlite::Statement<'_>,
    names: [&str; N],
) -> StoreResult<[usize; N]> {
    let mut positions = [0; N];
    for (slot, name) in positions.iter_mut().zip(names) {
        *slot = stmt.column_index(name).map_err(from_sqlite)?;
    }
    Ok(positions)
}

// ---- batches ---------------------------------------------------------------------------

/// Reads what the rules need, inside the write transaction.
fn read_snapshot(conn: &Connection, batch: &Batch) -> StoreResult<Snapshot> {
    let mut snapshot = Snapshot::default();
    let mut charge = conn
        .prepare_cached(
            "SELECT c.id, c.number, c.customer_id, c.status, d.method AS decision_method, \
                    d.reference_number AS decision_reference, c.acknowledged_status, \
                    c.acknowledged_reference_number \
             FROM charges c LEFT JOIN decisions d ON d.charge_id = c.id \
             WHERE c.operator_id = ?1 AND c.number = ?2",
        )
        .map_err(from_sqlite)?;
    let [
        id,
        number_,
        customer,
        status,
        method,
        reference,
        ack_status,
        ack_reference,
    ] = columns(
        &charge,
        [
            "id",
            "number",
            "customer_id",
            "status",
            "decision_method",
            "decision_reference",
            "acknowledged_status",
            "acknowledged_reference_number",
        ],
    )?;
    for number in batch.numbers() {
        let row = charge
            .query_row(params![batch.operator_id, number.as_str()], |r| {
                Ok(StateRow {
                    id: r.get(id)?,
                    number: r.get(number_)?,
                    customer: r.get(customer)?,
                    status: r.get(status)?,
                    decision_method: r.get(method)?,
                    decision_reference: r.get(reference)?,
                    acknowledged_status: r.get(ack_status)?,
                    acknowledged_reference: r.get(ack_reference)?,
                })
            })
            .optional()
            .map_err(from_sqlite)?;
        if let Some(row) = row {
            let (number, state) = row.into_state()?;
            snapshot.charges.insert(number, state);
        }
    }
    let references = batch.references();
    if references.is_empty() {
        return Ok(snapshot);
    }
    // Each method's references form their own namespace: its accepts, its declines, or
    // its acknowledgements.
    let (sql, method) = match batch.method {
        Method::Acknowledge => (
            "SELECT c.number FROM acknowledgements a JOIN charges c ON c.id = a.charge_id \
             WHERE a.operator_id = ?1 AND a.reference_number = ?2",
            None,
        ),
        Method::Accept | Method::Decline => (
            "SELECT c.number FROM decisions d JOIN charges c ON c.id = d.charge_id \
             WHERE d.operator_id = ?1 AND d.reference_number = ?2 AND d.method = ?3",
            Some(batch.method.as_str()),
        ),
    };
    let mut used = conn.prepare_cached(sql).map_err(from_sqlite)?;
    for reference in references {
        let by_reference = |r: &Row<'_>| r.get::<_, String>(0);
        let number = match method {
            Some(m) => used.query_row(
                params![batch.operator_id, reference.as_str(), m],
                by_reference,
            ),
            None => used.query_row(params![batch.operator_id, reference.as_str()], by_reference),
        }
        .optional()
        .map_err(from_sqlite)?;
        if let Some(number) = number {
            snapshot
                .used_references
                .insert(reference.clone(), rows::number(number)?);
        }
    }
    Ok(snapshot)
}

/// Executes a batch's plan: per change, the conditional status update (which must change
/// exactly that charge, else nothing of the batch is applied), the decision or
/// acknowledgement row, and the history row.
fn write_plan(conn: &Connection, batch: &Batch, changes: &[ChargeChange]) -> StoreResult<()> {
    let at = batch.at.unix();
    let update_sql = match batch.method {
        Method::Accept => {
            "UPDATE charges SET status = 'APPROVED', set_as_approved_on = ?2 \
             WHERE id = ?1 AND status = ?3"
        }
        Method::Decline => {
            "UPDATE charges SET status = 'DECLINED', set_as_declined_on = ?2 \
             WHERE id = ?1 AND status = ?3"
        }
        Method::Acknowledge => {
            "UPDATE charges SET acknowledged_status = status, acknowledged_on = ?2, \
                    acknowledged_reference_number = ?4 \
             WHERE id = ?1 AND status = ?3"
        }
    };
    let record_sql = match batch.method {
        Method::Accept | Method::Decline => {
            "INSERT INTO decisions (charge_id, operator_id, method, reference_number, user_id, \
                                    decided_on, request_id, key_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        }
        Method::Acknowledge => {
            "INSERT INTO acknowledgements (charge_id, operator_id, status, reference_number, \
                                           user_id, acknowledged_on, request_id) \
             VALUES (?1, ?2, ?8, ?4, ?5, ?6, ?7)"
        }
    };
    let mut update = conn.prepare_cached(update_sql).map_err(from_sqlite)?;
    let mut record = conn.prepare_cached(record_sql).map_err(from_sqlite)?;
    let mut history = conn
        .prepare_cached(
            "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, user_id, \
                                         request_id, reference_number, key_id, via_console) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )
        .map_err(from_sqlite)?;
    // What Netflix must be told, in this same transaction.
    let mut event = conn
        .prepare_cached(
            "INSERT INTO outbox (operator_id, type, occurred_at, charge_id, reference_number) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(from_sqlite)?;
    for change in changes {
        let reference = change
            .reference
            .as_ref()
            .map(chargegate_core::ReferenceNumber::as_str);
        let update_params: &[&dyn rusqlite::ToSql] = match batch.method {
            Method::Acknowledge => &[&change.charge_id, &at, &change.from.as_str(), &reference],
            _ => &[&change.charge_id, &at, &change.from.as_str()],
        };
        let changed = update.execute(update_params).map_err(from_sqlite)?;
        if changed != 1 {
            // Impossible under BEGIN IMMEDIATE; if it ever happens, apply nothing.
            return Err(StoreError::Internal(format!(
                "{}: charge {} was not {} any more; rolled back",
                batch.method,
                change.charge_id,
                change.from.as_str()
            )));
        }
        let record_params: &[&dyn rusqlite::ToSql] = match batch.method {
            Method::Acknowledge => &[
                &change.charge_id,
                &batch.operator_id,
                &batch.method.as_str(),
                &reference,
                &batch.user_id,
                &at,
                &batch.request_id,
                &change.from.as_str(),
            ],
            _ => &[
                &change.charge_id,
                &batch.operator_id,
                &batch.method.as_str(),
                &reference,
                &batch.user_id,
                &at,
                &batch.request_id,
                &batch.key_id,
            ],
        };
        record.execute(record_params).map_err(from_sqlite)?;
        history
            .execute(params![
                change.charge_id,
                batch.method.as_str(),
                change.from.as_str(),
                change.to.as_str(),
                at,
                batch.user_id,
                batch.request_id,
                reference,
                batch.key_id,
                batch.via_console,
            ])
            .map_err(from_sqlite)?;
        if let Some(kind) = match batch.method {
            Method::Accept => Some(EventType::ChargeApproved),
            Method::Decline => Some(EventType::ChargeDeclined),
            Method::Acknowledge => None,
        } {
            event
                .execute(params![
                    batch.operator_id,
                    kind.as_str(),
                    at,
                    change.charge_id,
                    reference
                ])
                .map_err(from_sqlite)?;
        }
    }
    if batch.method == Method::Decline {
        // A declined charge ends the Netflix service: its subscription is cancelled in
        // this same transaction, after the charges' own events and in charge order, as
        // PostgreSQL's one statement does it.
        let mut declined: Vec<i64> = changes.iter().map(|c| c.charge_id).collect();
        declined.sort_unstable();
        for charge_id in declined {
            cancel::cancel_for_charge(conn, charge_id, batch)?;
        }
    }
    Ok(())
}

fn apply_batch(conn: &Connection, batch: &Batch) -> StoreResult<Vec<Verdict>> {
    let snapshot = read_snapshot(conn, batch)?;
    let (verdicts, changes) = batch.decide(&snapshot);
    write_plan(conn, batch, &changes)?;
    Ok(verdicts)
}

// ---- imports ---------------------------------------------------------------------------

fn import_charges(
    conn: &Connection,
    charges: &[NewCharge],
    now: Timestamp,
    progress: &Progress,
) -> StoreResult<ImportOutcome> {
    let mut stored = std::collections::HashMap::new();
    {
        let mut intake = conn
            .prepare_cached(
                "SELECT number, operator_id, customer_id, netflix_customer_id, amount_minor, \
                        currency, local_amount_minor, local_currency, paid_through_date, \
                        received_on, initial_status \
                 FROM charges WHERE number = ?1",
            )
            .map_err(from_sqlite)?;
        for number in charges.iter().filter_map(|c| c.number.as_ref()) {
            let row = intake
                .query_row([number.as_str()], |r| {
                    Ok(IntakeRow {
                        number: r.get("number")?,
                        operator_id: r.get("operator_id")?,
                        customer: r.get("customer_id")?,
                        netflix_customer: r.get("netflix_customer_id")?,
                        amount_minor: r.get("amount_minor")?,
                        currency: r.get("currency")?,
                        local_amount_minor: r.get("local_amount_minor")?,
                        local_currency: r.get("local_currency")?,
                        paid_through_date: r.get("paid_through_date")?,
                        received_on: r.get("received_on")?,
                        initial_status: r.get("initial_status")?,
                    })
                })
                .optional()
                .map_err(from_sqlite)?;
            if let Some(row) = row {
                let (number, intake) = row.into_intake()?;
                stored.insert(number, intake);
            }
        }
    }
    // Generated numbers continue after the highest one in use.
    let max_generated: Option<String> = conn
        .query_row(
            "SELECT max(number) FROM charges \
             WHERE number GLOB 'I[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'",
            [],
            |r| r.get(0),
        )
        .map_err(from_sqlite)?;
    let plan = chargegate_core::import::plan(charges, &stored, max_generated.as_deref(), now);
    if !plan.conflicts.is_empty() {
        return Ok(ImportOutcome::Refused(plan.conflicts));
    }
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO charges (number, operator_id, customer_id, netflix_customer_id, \
                                  amount_minor, currency, local_amount_minor, local_currency, \
                                  paid_through_date, status, initial_status, received_on, \
                                  set_as_approved_on, set_as_declined_on, \
                                  set_as_bad_request_on, set_as_rejected_on, subscription_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13, ?14, ?15, \
                     (SELECT id FROM subscriptions WHERE operator_id = ?2 AND customer_id = ?3 \
                        AND life_cycle_state <> 'CANCELLED'))",
        )
        .map_err(from_sqlite)?;
    let mut history = conn
        .prepare_cached(
            "INSERT INTO charge_history (charge_id, event, from_status, to_status, at) \
             VALUES (?1, 'import', NULL, ?2, ?3)",
        )
        .map_err(from_sqlite)?;
    let mut done = plan.skipped as u64;
    for (i, c) in plan.rows.iter().enumerate() {
        insert_charge(&mut insert, c)?;
        history
            .execute(params![
                conn.last_insert_rowid(),
                c.status.as_str(),
                now.unix()
            ])
            .map_err(from_sqlite)?;
        done += 1;
        if i % 1000 == 999 || i + 1 == plan.rows.len() {
            progress(done);
        }
    }
    Ok(ImportOutcome::Imported(ImportSummary {
        added: plan.rows.len() as u64,
        skipped: plan.skipped as u64,
    }))
}

fn insert_charge(
    insert: &mut rusqlite::CachedStatement<'_>,
    c: &ResolvedCharge,
) -> StoreResult<()> {
    let [approved, declined, bad_request, rejected] = c.stamps();
    insert
        .execute(params![
            c.number.as_str(),
            c.operator_id,
            c.customer.as_str(),
            c.netflix_customer.as_deref(),
            c.amount.minor(),
            c.amount.currency().code(),
            c.local_amount.minor(),
            c.local_amount.currency().code(),
            c.paid_through_date.to_string(),
            c.status.as_str(),
            c.received_on.unix(),
            approved,
            declined,
            bad_request,
            rejected,
        ])
        .map(|_| ())
        .map_err(from_sqlite)
}

// ---- reads -----------------------------------------------------------------------------

/// One page of `charges/list`. The WHERE clause repeats the terms of the partial index
/// `charges_to_list`, so the page comes from it, already in order.
const LIST_SQL: &str = "SELECT number, customer_id, amount_minor, currency, local_amount_minor, \
            local_currency, paid_through_date, status, received_on, set_as_approved_on, \
            set_as_declined_on, set_as_bad_request_on, set_as_rejected_on \
     FROM charges \
     WHERE operator_id = ?1 AND (status = 'PENDING') = ?2 \
       AND acknowledged_status IS NOT status \
     ORDER BY received_on, number LIMIT ?3 OFFSET ?4";

fn list_charges(conn: &Connection, query: &ListQuery) -> StoreResult<Vec<Charge>> {
    let mut stmt = conn.prepare_cached(LIST_SQL).map_err(from_sqlite)?;
    let [
        number,
        customer,
        amount,
        currency,
        local_amount,
        local_currency,
        paid_through,
        status,
        received,
        approved,
        declined,
        bad_request,
        rejected,
    ] = columns(
        &stmt,
        [
            "number",
            "customer_id",
            "amount_minor",
            "currency",
            "local_amount_minor",
            "local_currency",
            "paid_through_date",
            "status",
            "received_on",
            "set_as_approved_on",
            "set_as_declined_on",
            "set_as_bad_request_on",
            "set_as_rejected_on",
        ],
    )?;
    let rows = stmt
        .query_map(
            params![
                query.operator_id,
                query.group == StatusGroup::NotProcessed,
                i64::from(query.limit),
                i64::try_from(query.offset).unwrap_or(i64::MAX)
            ],
            |r| {
                Ok(ChargeRow {
                    number: r.get(number)?,
                    customer: r.get(customer)?,
                    amount_minor: r.get(amount)?,
                    currency: r.get_ref(currency)?.as_str()?,
                    local_amount_minor: r.get(local_amount)?,
                    local_currency: r.get_ref(local_currency)?.as_str()?,
                    paid_through_date: r.get_ref(paid_through)?.as_str()?,
                    status: r.get_ref(status)?.as_str()?,
                    received_on: r.get(received)?,
                    set_as_approved_on: r.get(approved)?,
                    set_as_declined_on: r.get(declined)?,
                    set_as_bad_request_on: r.get(bad_request)?,
                    set_as_rejected_on: r.get(rejected)?,
                }
                .into_charge())
            },
        )
        .map_err(from_sqlite)?;
    rows.map(|row| row.map_err(from_sqlite)?).collect()
}

fn operator_by_code(conn: &Connection, code: &str) -> StoreResult<Option<Operator>> {
    let row = conn
        .prepare_cached("SELECT id, code, name, local_currency FROM operators WHERE code = ?1")
        .and_then(|mut s| {
            s.query_row([code], |r| {
                Ok((
                    r.get::<_, i64>("id")?,
                    r.get::<_, String>("code")?,
                    r.get::<_, String>("name")?,
                    r.get::<_, String>("local_currency")?,
                ))
            })
            .optional()
        })
        .map_err(from_sqlite)?;
    row.map(|(id, code, name, currency)| rows::operator(id, code, name, &currency))
        .transpose()
}

fn renamed_conflict(e: StoreError, message: impl FnOnce() -> String) -> StoreError {
    match e {
        StoreError::Conflict(_) => StoreError::Conflict(message()),
        other => other,
    }
}

impl SqliteStore {
    /// Closes every connection; later calls answer `Unavailable`. For tests of what a
    /// server does when its database is gone.
    pub async fn close_now(&self) {
        AdminStore::close(self).await;
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> StoreResult<()> {
        self.readers.read(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))
                .map_err(from_sqlite)
        })?;
        if self.writer.health.writable() {
            return Ok(());
        }
        // The last commit failed: only a real write tells whether the cause is gone.
        self.writer
            .write(1, |conn| {
                conn.prepare_cached(
                    "INSERT INTO write_probe (id, at) VALUES (1, unixepoch()) \
                     ON CONFLICT (id) DO UPDATE SET at = excluded.at",
                )
                .and_then(|mut s| s.execute([]))
                .map(|_| ())
                .map_err(from_sqlite)
            })
            .await
    }

    async fn login_user(
        &self,
        operator: &OperatorCode,
        username: &Username,
    ) -> StoreResult<Option<LoginUser>> {
        self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT u.id, u.operator_id, u.password_hash, u.enabled \
                 FROM users u JOIN operators o ON o.id = u.operator_id \
                 WHERE o.code = ?1 AND u.username = ?2",
            )
            .and_then(|mut s| {
                s.query_row([operator.as_str(), username.as_str()], |r| {
                    Ok(LoginUser {
                        user_id: r.get("id")?,
                        operator_id: r.get("operator_id")?,
                        password_hash: r.get("password_hash")?,
                        enabled: r.get("enabled")?,
                    })
                })
                .optional()
            })
            .map_err(from_sqlite)
        })
    }

    async fn begin_login_attempt(
        &self,
        organisation: &str,
        username: &str,
        now: Timestamp,
        policy: LoginPolicy,
    ) -> StoreResult<AttemptPermit> {
        let (organisation, username) = (organisation.to_owned(), username.to_owned());
        let (attempts, locked_until) = self
            .writer
            .write(1, move |conn| {
                // Pairs neither locked nor tried within the lockout are forgotten.
                conn.prepare_cached(
                    "DELETE FROM login_attempts WHERE last_attempt_at < ?1 - ?2 \
                       AND (locked_until IS NULL OR locked_until <= ?1)",
                )
                .and_then(|mut s| s.execute(params![now.unix(), policy.lockout_seconds]))
                .map_err(from_sqlite)?;
                // One statement counts the attempt and reads the lock, so parallel guesses
                // are each counted before any password is checked. An expired lock starts
                // a new count.
                conn.prepare_cached(
                    "INSERT INTO login_attempts \
                         (organisation, username, attempts, locked_until, last_attempt_at) \
                     VALUES (?1, ?2, 1, NULL, ?3) \
                     ON CONFLICT (organisation, username) DO UPDATE SET \
                       attempts = CASE WHEN locked_until IS NOT NULL AND locked_until <= ?3 \
                                       THEN 1 ELSE attempts + 1 END, \
                       locked_until = CASE WHEN locked_until IS NOT NULL AND locked_until <= ?3 \
                                           THEN NULL \
                                           WHEN attempts + 1 > ?4 \
                                           THEN COALESCE(locked_until, ?3 + ?5) \
                                           ELSE locked_until END, \
                       last_attempt_at = ?3 \
                     RETURNING attempts, locked_until",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            organisation,
                            username,
                            now.unix(),
                            i64::from(policy.max_failures),
                            policy.lockout_seconds
                        ],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
                    )
                })
                .map_err(from_sqlite)
            })
            .await?;
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
        let (organisation, username) = (organisation.to_owned(), username.to_owned());
        self.writer
            .write(1, move |conn| {
                let done = if succeeded {
                    conn.prepare_cached(
                        "DELETE FROM login_attempts WHERE organisation = ?1 AND username = ?2",
                    )
                    .and_then(|mut s| s.execute([&organisation, &username]))
                } else {
                    conn.prepare_cached(
                        "UPDATE login_attempts SET locked_until = ?3 + ?5 \
                         WHERE organisation = ?1 AND username = ?2 AND attempts >= ?4 \
                           AND locked_until IS NULL",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            organisation,
                            username,
                            now.unix(),
                            i64::from(policy.max_failures),
                            policy.lockout_seconds
                        ])
                    })
                };
                done.map(|_| ()).map_err(from_sqlite)
            })
            .await
    }

    async fn insert_token(&self, token: &NewToken) -> StoreResult<()> {
        let (hash, user_id, key_id, issued, expires) = (
            token.hash.0,
            token.user_id,
            token.key_id,
            token.issued_at.unix(),
            token.expires_at.unix(),
        );
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "INSERT INTO tokens (hash, user_id, key_id, issued_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| s.execute(params![&hash[..], user_id, key_id, issued, expires]))
                .map_err(from_sqlite)?;
                conn.prepare_cached("UPDATE users SET last_login_at = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![user_id, issued]))
                    .map_err(from_sqlite)?;
                // Keep the table from growing forever; expired tokens stay a week so that
                // a client still hears EXPIRED_TOKEN rather than INVALID_TOKEN for a while.
                conn.prepare_cached("DELETE FROM tokens WHERE expires_at < ?1")
                    .and_then(|mut s| s.execute([issued - TOKEN_RETENTION_SECONDS]))
                    .map(|_| ())
                    .map_err(from_sqlite)
            })
            .await
    }

    async fn token(&self, hash: &TokenHash) -> StoreResult<Option<TokenRecord>> {
        let row = self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT t.user_id, u.operator_id, o.code, t.expires_at, \
                        t.revoked_at IS NOT NULL AS revoked, u.enabled, t.key_id \
                 FROM tokens t JOIN users u ON u.id = t.user_id \
                 JOIN operators o ON o.id = u.operator_id WHERE t.hash = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&hash.0[..]], |r| {
                    Ok(TokenRow {
                        user_id: r.get("user_id")?,
                        operator_id: r.get("operator_id")?,
                        operator_code: r.get("code")?,
                        expires_at: r.get("expires_at")?,
                        revoked: r.get("revoked")?,
                        user_enabled: r.get("enabled")?,
                        key_id: r.get("key_id")?,
                    })
                })
                .optional()
            })
            .map_err(from_sqlite)
        })?;
        row.map(TokenRow::into_record).transpose()
    }

    async fn revoke_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        let hash = hash.0;
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?1) WHERE hash = ?2",
                )
                .and_then(|mut s| s.execute(params![now.unix(), &hash[..]]))
                .map(|changed| changed > 0)
                .map_err(from_sqlite)
            })
            .await
    }

    async fn token_secrets(&self) -> StoreResult<Vec<TokenSecret>> {
        self.readers.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT generation, secret, created_at FROM token_secrets \
                     ORDER BY generation",
                )
                .map_err(from_sqlite)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(from_sqlite)?;
            rows.into_iter()
                .map(|(generation, secret, created_at)| {
                    rows::token_secret(generation, &secret, created_at)
                })
                .collect()
        })
    }

    async fn add_token_secret(&self, secret: &TokenSecret) -> StoreResult<bool> {
        let (generation, bytes, created_at) =
            (secret.generation, secret.secret, secret.created_at.unix());
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "INSERT INTO token_secrets (generation, secret, created_at) \
                     VALUES (?1, ?2, ?3) ON CONFLICT (generation) DO NOTHING",
                )
                .and_then(|mut s| s.execute(params![generation, &bytes[..], created_at]))
                .map(|added| added > 0)
                .map_err(from_sqlite)
            })
            .await
    }

    async fn apply_batch(&self, batch: &Batch) -> StoreResult<Vec<Verdict>> {
        let batch = batch.clone();
        self.writer
            .write(batch.items.len().max(1), move |conn| {
                apply_batch(conn, &batch)
            })
            .await
    }

    async fn list_charges(&self, query: &ListQuery) -> StoreResult<Vec<Charge>> {
        self.readers.read(|conn| list_charges(conn, query))
    }
}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        // Migrations run once at start, through sqlx's migrator (which keeps its
        // `_sqlx_migrations` table compatible with every earlier chargegate).
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.path)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(self.busy_timeout);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(from_sqlx)?;
        let migrated = migrator(migrations::SQLITE)
            .run(&pool)
            .await
            .map_err(migrations::error);
        pool.close().await;
        migrated
    }

    async fn create_operator(&self, new: &NewOperator) -> StoreResult<Operator> {
        let new = new.clone();
        let now = Timestamp::now().unix();
        self.writer
            .write(1, move |conn| {
                let id = conn
                    .prepare_cached(
                        "INSERT INTO operators (code, name, local_currency, created_at) \
                         VALUES (?1, ?2, ?3, ?4) RETURNING id",
                    )
                    .and_then(|mut s| {
                        s.query_row(
                            params![new.code.as_str(), new.name, new.local_currency.code(), now],
                            |r| r.get::<_, i64>(0),
                        )
                    })
                    .map_err(|e| {
                        renamed_conflict(from_sqlite(e), || {
                            format!("operator {} already exists", new.code)
                        })
                    })?;
                Ok(Operator {
                    id,
                    code: new.code,
                    name: new.name,
                    local_currency: new.local_currency,
                })
            })
            .await
    }

    async fn operator_by_code(&self, code: &OperatorCode) -> StoreResult<Option<Operator>> {
        self.readers
            .read(|conn| operator_by_code(conn, code.as_str()))
    }

    async fn create_user(&self, new: &NewUser) -> StoreResult<i64> {
        let new = new.clone();
        let now = Timestamp::now().unix();
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "INSERT INTO users (operator_id, username, password_hash, created_at) \
                     VALUES (?1, ?2, ?3, ?4) RETURNING id",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            new.operator_id,
                            new.username.as_str(),
                            new.password_hash,
                            now
                        ],
                        |r| r.get(0),
                    )
                })
                .map_err(|e| {
                    renamed_conflict(from_sqlite(e), || {
                        format!("user {} already exists", new.username)
                    })
                })
            })
            .await
    }

    async fn import_charges(
        &self,
        charges: Vec<NewCharge>,
        now: Timestamp,
        progress: Progress,
    ) -> StoreResult<ImportOutcome> {
        self.writer
            .write(charges.len().max(1), move |conn| {
                import_charges(conn, &charges, now, &progress)
            })
            .await
    }

    async fn close(&self) {
        self.writer.close().await;
        self.readers
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.readers
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listing_is_served_by_the_partial_index_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db"), &StoreOptions::default())
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        for pending in [true, false] {
            let plan = store
                .readers
                .read(|conn| {
                    let mut stmt = conn
                        .prepare(&format!("EXPLAIN QUERY PLAN {LIST_SQL}"))
                        .map_err(from_sqlite)?;
                    let details = stmt
                        .query_map(params![1_i64, pending, 50_i64, 0_i64], |r| {
                            r.get::<_, String>(3)
                        })
                        .map_err(from_sqlite)?
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(from_sqlite)?;
                    Ok(details.join(" | "))
                })
                .expect("plan");
            assert!(plan.contains("USING INDEX charges_to_list"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "sorted in memory: {plan}");
        }
    }
}
