//! The embedded default: one SQLite file, zero set-up.
//!
//! Durability first: WAL with `synchronous=FULL` (a lost decline is a billing error),
//! foreign keys on, and every write transaction opened `BEGIN IMMEDIATE` so it holds the
//! write lock from its first read: the snapshot a batch is judged on cannot change before
//! its write, whether the competitor is another task or another process. Writes go
//! through a single-connection pool (SQLite has one writer anyway; queueing in the pool is
//! fairer than spinning on `SQLITE_BUSY`), reads through a pool of their own, which WAL
//! lets run beside the writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chargegate_core::batch::{Batch, ChargeState, Method, Snapshot, Verdict};
use chargegate_core::charge::{Charge, StatusGroup};
use chargegate_core::clock::Timestamp;
use chargegate_core::money::Currency;
use chargegate_core::store::{
    AttemptPermit, ImportOutcome, ImportSummary, ListQuery, LoginPolicy, LoginUser, NewCharge,
    NewOperator, NewToken, NewUser, Operator, Store, StoreError, StoreResult, TokenRecord,
};
use chargegate_core::text::{ChargeNumber, OperatorCode, ReferenceNumber, Username};
use chargegate_core::token::TokenHash;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::StoreOptions;
use crate::error::{corrupt, from_sqlx};
use crate::migrations::{self, migrator};
use crate::rows::{
    self, CHARGE_COLUMNS, ChargeRow, INTAKE_COLUMNS, IntakeRow, STATE_COLUMNS, StateRow,
    stamp_column,
};

/// Rows per multi-row INSERT during an import (11 parameters each, far below SQLite's
/// limit of 32766 parameters per statement).
const IMPORT_CHUNK: usize = 500;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
}

fn sql_err(e: sqlx::Error) -> StoreError {
    from_sqlx(e)
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`.
    pub async fn open(path: &Path, options: &StoreOptions) -> StoreResult<Self> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.acquire_timeout);
        let cannot_open = |e: sqlx::Error| {
            StoreError::Unavailable(format!(
                "cannot open SQLite database {}: {}",
                path.display(),
                match from_sqlx(e) {
                    StoreError::Unavailable(m)
                    | StoreError::Conflict(m)
                    | StoreError::Internal(m) => m,
                }
            ))
        };
        // Connecting the writer eagerly creates the file and switches it to WAL before any
        // reader opens it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(cannot_open)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        Ok(SqliteStore {
            writer,
            reader,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn begin_write(&self) -> StoreResult<sqlx::Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(sql_err)
    }

    /// Writes a consistent copy of the database to `target`, a path where nothing exists
    /// yet, while servers keep reading and writing: `VACUUM INTO` copies one read
    /// snapshot (in WAL mode it neither waits for nor blocks writers), so the copy holds
    /// every transaction committed before it started and nothing of any later one. The
    /// copy is flushed to disk before this returns, which SQLite does not do itself.
    pub async fn backup(&self, target: &Path) -> StoreResult<()> {
        let Some(target_text) = target.to_str() else {
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
                return Err(StoreError::Unavailable(format!(
                    "cannot create {}: {e}",
                    target.display()
                )));
            }
        }
        let copied = sqlx::query("VACUUM INTO ?")
            .bind(target_text)
            .execute(&self.reader)
            .await;
        if let Err(e) = copied {
            let _ = std::fs::remove_file(target);
            return Err(sql_err(e));
        }
        let target = target.to_owned();
        // The file's data, then its directory entry.
        let flush = move || -> std::io::Result<()> {
            std::fs::File::open(&target)?.sync_all()?;
            #[cfg(unix)]
            {
                let dir = match target.parent() {
                    Some(dir) if !dir.as_os_str().is_empty() => dir,
                    _ => Path::new("."),
                };
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        tokio::task::spawn_blocking(flush)
            .await
            .map_err(|e| StoreError::Internal(format!("flushing the backup stopped: {e}")))?
            .map_err(|e| StoreError::Unavailable(format!("cannot flush the backup to disk: {e}")))
    }

    /// Closes every connection; later calls answer `Unavailable`. For tests of what a
    /// server does when its database is gone.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

fn charge_row(r: &SqliteRow) -> Result<ChargeRow, sqlx::Error> {
    Ok(ChargeRow {
        number: r.try_get(0)?,
        customer: r.try_get(1)?,
        amount_minor: r.try_get(2)?,
        currency: r.try_get(3)?,
        local_amount_minor: r.try_get(4)?,
        local_currency: r.try_get(5)?,
        paid_through_date: r.try_get(6)?,
        status: r.try_get(7)?,
        received_on: r.try_get(8)?,
        set_as_approved_on: r.try_get(9)?,
        set_as_declined_on: r.try_get(10)?,
        set_as_bad_request_on: r.try_get(11)?,
        set_as_rejected_on: r.try_get(12)?,
    })
}

fn state_row(r: &SqliteRow) -> Result<StateRow, sqlx::Error> {
    Ok(StateRow {
        id: r.try_get(0)?,
        number: r.try_get(1)?,
        customer: r.try_get(2)?,
        status: r.try_get(3)?,
        decision_method: r.try_get(4)?,
        decision_reference: r.try_get(5)?,
        acknowledged_status: r.try_get(6)?,
        acknowledged_reference: r.try_get(7)?,
    })
}

fn intake_row(r: &SqliteRow) -> Result<IntakeRow, sqlx::Error> {
    Ok(IntakeRow {
        number: r.try_get(0)?,
        operator_id: r.try_get(1)?,
        customer: r.try_get(2)?,
        netflix_customer: r.try_get(3)?,
        amount_minor: r.try_get(4)?,
        currency: r.try_get(5)?,
        local_amount_minor: r.try_get(6)?,
        local_currency: r.try_get(7)?,
        paid_through_date: r.try_get(8)?,
        received_on: r.try_get(9)?,
        initial_status: r.try_get(10)?,
    })
}

fn operator_row(r: &SqliteRow) -> StoreResult<Operator> {
    let code: String = r.try_get(1).map_err(sql_err)?;
    let currency: String = r.try_get(3).map_err(sql_err)?;
    Ok(Operator {
        id: r.try_get(0).map_err(sql_err)?,
        code: OperatorCode::parse(code).map_err(corrupt)?,
        name: r.try_get(2).map_err(sql_err)?,
        local_currency: Currency::parse(&currency).map_err(corrupt)?,
    })
}

/// Reads what the rules need, inside the write transaction.
async fn read_snapshot(conn: &mut SqliteConnection, batch: &Batch) -> StoreResult<Snapshot> {
    let mut snapshot = Snapshot::default();
    let numbers = batch.numbers();
    if numbers.is_empty() {
        return Ok(snapshot);
    }
    let mut q = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {STATE_COLUMNS} FROM charges c LEFT JOIN decisions d ON d.charge_id = c.id \
         WHERE c.operator_id = "
    ));
    q.push_bind(batch.operator_id).push(" AND c.number IN (");
    let mut list = q.separated(", ");
    for n in &numbers {
        list.push_bind(n.as_str());
    }
    q.push(")");
    for row in q.build().fetch_all(&mut *conn).await.map_err(sql_err)? {
        let (number, state) = state_row(&row).map_err(sql_err)?.into_state()?;
        snapshot.charges.insert(number, state);
    }

    let references = batch.references();
    if !references.is_empty() {
        let mut q = match batch.method {
            Method::Acknowledge => {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "SELECT a.reference_number, c.number FROM acknowledgements a \
                     JOIN charges c ON c.id = a.charge_id WHERE a.operator_id = ",
                );
                q.push_bind(batch.operator_id);
                q.push(" AND a.reference_number IN (");
                q
            }
            Method::Accept | Method::Decline => {
                let mut q = QueryBuilder::<Sqlite>::new(
                    "SELECT d.reference_number, c.number FROM decisions d \
                     JOIN charges c ON c.id = d.charge_id WHERE d.operator_id = ",
                );
                q.push_bind(batch.operator_id)
                    .push(" AND d.method = ")
                    .push_bind(batch.method.as_str());
                q.push(" AND d.reference_number IN (");
                q
            }
        };
        let mut list = q.separated(", ");
        for r in &references {
            list.push_bind(r.as_str());
        }
        q.push(")");
        for row in q.build().fetch_all(&mut *conn).await.map_err(sql_err)? {
            let r: String = row.try_get(0).map_err(sql_err)?;
            let n: String = row.try_get(1).map_err(sql_err)?;
            snapshot.used_references.insert(
                ReferenceNumber::parse(r).map_err(corrupt)?,
                rows::number(n)?,
            );
        }
    }
    Ok(snapshot)
}

/// One item to write: the charge as read, and the item's reference.
struct Applied<'a> {
    state: &'a ChargeState,
    reference: Option<&'a str>,
}

fn applied<'a>(batch: &'a Batch, snapshot: &'a Snapshot, verdicts: &[Verdict]) -> Vec<Applied<'a>> {
    batch
        .items
        .iter()
        .zip(verdicts)
        .filter(|(_, v)| matches!(v, Verdict::Apply { .. }))
        .filter_map(|(item, _)| item.parsed.as_ref().ok())
        .filter_map(|req| {
            snapshot.charges.get(&req.number).map(|state| Applied {
                state,
                reference: req.reference.as_ref().map(ReferenceNumber::as_str),
            })
        })
        .collect()
}

/// Writes the applied items of a batch: one conditional set-based UPDATE, one multi-row
/// INSERT of decisions or acknowledgements, one multi-row INSERT of history.
async fn write_applied(
    conn: &mut SqliteConnection,
    batch: &Batch,
    items: &[Applied<'_>],
) -> StoreResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let at = batch.at.unix();
    let expected = items.len() as u64;
    let changed = match batch.method.target_status() {
        Some(target) => {
            let stamp = stamp_column(target).ok_or_else(|| {
                StoreError::Internal(format!("{} has no timestamp column", target))
            })?;
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE charges SET status = ");
            q.push_bind(target.as_str())
                .push(format!(", {stamp} = "))
                .push_bind(at)
                .push(" WHERE status = 'PENDING' AND id IN (");
            let mut list = q.separated(", ");
            for a in items {
                list.push_bind(a.state.id);
            }
            q.push(")");
            let changed = q
                .build()
                .execute(&mut *conn)
                .await
                .map_err(sql_err)?
                .rows_affected();

            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO decisions (charge_id, operator_id, method, reference_number, \
                 user_id, decided_on, request_id) ",
            );
            q.push_values(items, |mut row, a| {
                row.push_bind(a.state.id)
                    .push_bind(batch.operator_id)
                    .push_bind(batch.method.as_str())
                    .push_bind(a.reference)
                    .push_bind(batch.user_id)
                    .push_bind(at)
                    .push_bind(batch.request_id.as_str());
            });
            q.build().execute(&mut *conn).await.map_err(sql_err)?;
            changed
        }
        None => {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO acknowledgements (charge_id, operator_id, status, reference_number, \
                 user_id, acknowledged_on, request_id) ",
            );
            q.push_values(items, |mut row, a| {
                row.push_bind(a.state.id)
                    .push_bind(batch.operator_id)
                    .push_bind(a.state.status.as_str())
                    .push_bind(a.reference)
                    .push_bind(batch.user_id)
                    .push_bind(at)
                    .push_bind(batch.request_id.as_str());
            });
            q.build().execute(&mut *conn).await.map_err(sql_err)?;

            // The status condition makes the write conditional on what was judged.
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE charges SET acknowledged_status = v.column2, acknowledged_on = ",
            );
            q.push_bind(at)
                .push(", acknowledged_reference_number = v.column3 FROM (");
            q.push_values(items, |mut row, a| {
                row.push_bind(a.state.id)
                    .push_bind(a.state.status.as_str())
                    .push_bind(a.reference);
            });
            q.push(") AS v WHERE charges.id = v.column1 AND charges.status = v.column2");
            q.build()
                .execute(&mut *conn)
                .await
                .map_err(sql_err)?
                .rows_affected()
        }
    };
    if changed != expected {
        // Impossible under BEGIN IMMEDIATE; if it ever happens, apply nothing.
        return Err(StoreError::Internal(format!(
            "{} changed {changed} of {expected} charges; rolled back",
            batch.method
        )));
    }

    let mut q = QueryBuilder::<Sqlite>::new(
        "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, user_id, \
         request_id, reference_number) ",
    );
    let to = batch.method.target_status();
    q.push_values(items, |mut row, a| {
        row.push_bind(a.state.id)
            .push_bind(batch.method.as_str())
            .push_bind(a.state.status.as_str())
            .push_bind(to.unwrap_or(a.state.status).as_str())
            .push_bind(at)
            .push_bind(batch.user_id)
            .push_bind(batch.request_id.as_str())
            .push_bind(a.reference);
    });
    q.build().execute(&mut *conn).await.map_err(sql_err)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> StoreResult<()> {
        migrator(migrations::SQLITE)
            .run(&self.writer)
            .await
            .map_err(crate::migrations::error)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(|_| ())
            .map_err(sql_err)
    }

    async fn create_operator(&self, new: &NewOperator) -> StoreResult<Operator> {
        let row = sqlx::query(
            "INSERT INTO operators (code, name, local_currency, created_at) VALUES (?, ?, ?, ?) \
             RETURNING id, code, name, local_currency",
        )
        .bind(new.code.as_str())
        .bind(&new.name)
        .bind(new.local_currency.code())
        .bind(Timestamp::now().unix())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| match sql_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("operator {} already exists", new.code))
            }
            other => other,
        })?;
        operator_row(&row)
    }

    async fn operator_by_code(&self, code: &OperatorCode) -> StoreResult<Option<Operator>> {
        let row =
            sqlx::query("SELECT id, code, name, local_currency FROM operators WHERE code = ?")
                .bind(code.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(sql_err)?;
        row.as_ref().map(operator_row).transpose()
    }

    async fn create_user(&self, new: &NewUser) -> StoreResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO users (operator_id, username, password_hash, created_at) \
             VALUES (?, ?, ?, ?) RETURNING id",
        )
        .bind(new.operator_id)
        .bind(new.username.as_str())
        .bind(&new.password_hash)
        .bind(Timestamp::now().unix())
        .fetch_one(&self.writer)
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
        let row = sqlx::query(
            "SELECT u.id, u.operator_id, u.password_hash, u.enabled FROM users u \
             JOIN operators o ON o.id = u.operator_id WHERE o.code = ? AND u.username = ?",
        )
        .bind(operator.as_str())
        .bind(username.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(sql_err)?;
        row.map(|r| -> Result<LoginUser, sqlx::Error> {
            Ok(LoginUser {
                user_id: r.try_get(0)?,
                operator_id: r.try_get(1)?,
                password_hash: r.try_get(2)?,
                enabled: r.try_get::<i64, _>(3)? != 0,
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
        // One statement counts the attempt and reads the lock, so parallel guesses are
        // each counted before any password is checked. An expired lock starts a new count.
        let (attempts, locked_until): (i64, Option<i64>) = sqlx::query_as(
            "INSERT INTO login_attempts (organisation, username, attempts, locked_until) \
             VALUES (?1, ?2, 1, NULL) \
             ON CONFLICT (organisation, username) DO UPDATE SET \
               attempts = CASE WHEN locked_until IS NOT NULL AND locked_until <= ?3 THEN 1 \
                               ELSE attempts + 1 END, \
               locked_until = CASE WHEN locked_until IS NOT NULL AND locked_until <= ?3 THEN NULL \
                                   WHEN attempts + 1 > ?4 THEN COALESCE(locked_until, ?3 + ?5) \
                                   ELSE locked_until END \
             RETURNING attempts, locked_until",
        )
        .bind(organisation)
        .bind(username)
        .bind(now.unix())
        .bind(i64::from(policy.max_failures))
        .bind(policy.lockout_seconds)
        .fetch_one(&self.writer)
        .await
        .map_err(sql_err)?;
        permit(attempts, locked_until, now, policy)
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
            sqlx::query("DELETE FROM login_attempts WHERE organisation = ?1 AND username = ?2")
        } else {
            sqlx::query(
                "UPDATE login_attempts SET locked_until = ?3 + ?5 \
                 WHERE organisation = ?1 AND username = ?2 AND attempts >= ?4 \
                   AND locked_until IS NULL",
            )
        };
        q.bind(organisation)
            .bind(username)
            .bind(now.unix())
            .bind(i64::from(policy.max_failures))
            .bind(policy.lockout_seconds)
            .execute(&self.writer)
            .await
            .map(|_| ())
            .map_err(sql_err)
    }

    async fn insert_token(&self, token: &NewToken) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO tokens (hash, user_id, issued_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(&token.hash.0[..])
        .bind(token.user_id)
        .bind(token.issued_at.unix())
        .bind(token.expires_at.unix())
        .execute(&mut *tx)
        .await
        .map_err(sql_err)?;
        // Keep the table from growing forever; expired tokens stay a week so that a
        // client still hears EXPIRED_TOKEN rather than INVALID_TOKEN for a while.
        sqlx::query("DELETE FROM tokens WHERE expires_at < ?")
            .bind(token.issued_at.unix() - TOKEN_RETENTION_SECONDS)
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        tx.commit().await.map_err(sql_err)
    }

    async fn token(&self, hash: &TokenHash) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query(
            "SELECT t.user_id, u.operator_id, o.code, t.expires_at, t.revoked_at IS NOT NULL, \
                    u.enabled \
             FROM tokens t JOIN users u ON u.id = t.user_id \
             JOIN operators o ON o.id = u.operator_id WHERE t.hash = ?",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.reader)
        .await
        .map_err(sql_err)?;
        let Some(r) = row else { return Ok(None) };
        let code: String = r.try_get(2).map_err(sql_err)?;
        Ok(Some(TokenRecord {
            user_id: r.try_get(0).map_err(sql_err)?,
            operator_id: r.try_get(1).map_err(sql_err)?,
            operator_code: OperatorCode::parse(code).map_err(corrupt)?,
            expires_at: rows::timestamp(r.try_get(3).map_err(sql_err)?)?,
            revoked: r.try_get(4).map_err(sql_err)?,
            user_enabled: r.try_get::<i64, _>(5).map_err(sql_err)? != 0,
        }))
    }

    async fn revoke_token(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE hash = ?")
                .bind(now.unix())
                .bind(&hash.0[..])
                .execute(&self.writer)
                .await
                .map_err(sql_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn apply_batch(&self, batch: &Batch) -> StoreResult<Vec<Verdict>> {
        let mut tx = self.begin_write().await?;
        let snapshot = read_snapshot(&mut tx, batch).await?;
        let verdicts = batch.judge(&snapshot);
        write_applied(&mut tx, batch, &applied(batch, &snapshot, &verdicts)).await?;
        tx.commit().await.map_err(sql_err)?;
        Ok(verdicts)
    }

    async fn list_charges(&self, query: &ListQuery) -> StoreResult<Vec<Charge>> {
        let sql = list_sql();
        let rows = sqlx::query(&sql)
            .bind(query.operator_id)
            .bind(query.group == StatusGroup::NotProcessed)
            .bind(i64::from(query.limit))
            .bind(i64::try_from(query.offset).unwrap_or(i64::MAX))
            .fetch_all(&self.reader)
            .await
            .map_err(sql_err)?;
        rows.iter()
            .map(|r| charge_row(r).map_err(sql_err)?.into_charge())
            .collect()
    }

    async fn import_charges(
        &self,
        charges: &[NewCharge],
        now: Timestamp,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> StoreResult<ImportOutcome> {
        let mut tx = self.begin_write().await?;

        // Stored charges with the numbers the import names.
        let given: Vec<&str> = charges
            .iter()
            .filter_map(|c| c.number.as_ref().map(ChargeNumber::as_str))
            .collect();
        let mut stored = HashMap::new();
        for chunk in given.chunks(IMPORT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(format!(
                "SELECT {INTAKE_COLUMNS} FROM charges WHERE number IN ("
            ));
            let mut list = q.separated(", ");
            for n in chunk {
                list.push_bind(*n);
            }
            q.push(")");
            for row in q.build().fetch_all(&mut *tx).await.map_err(sql_err)? {
                let (number, intake) = intake_row(&row).map_err(sql_err)?.into_intake()?;
                stored.insert(number, intake);
            }
        }
        let max_generated: Option<String> = sqlx::query_scalar(
            "SELECT max(number) FROM charges \
             WHERE number GLOB 'I[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(sql_err)?;

        let plan = chargegate_core::import::plan(charges, &stored, max_generated.as_deref(), now);
        if !plan.conflicts.is_empty() {
            tx.rollback().await.map_err(sql_err)?;
            return Ok(ImportOutcome::Refused(plan.conflicts));
        }

        let mut done = plan.skipped as u64;
        for chunk in plan.rows.chunks(IMPORT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO charges (number, operator_id, customer_id, netflix_customer_id, \
                 amount_minor, currency, local_amount_minor, local_currency, paid_through_date, \
                 status, initial_status, received_on, set_as_approved_on, set_as_declined_on, \
                 set_as_bad_request_on, set_as_rejected_on) ",
            );
            q.push_values(chunk, |mut row, c| {
                row.push_bind(c.number.as_str())
                    .push_bind(c.operator_id)
                    .push_bind(c.customer.as_str())
                    .push_bind(c.netflix_customer.as_deref())
                    .push_bind(c.amount.minor())
                    .push_bind(c.amount.currency().code())
                    .push_bind(c.local_amount.minor())
                    .push_bind(c.local_amount.currency().code())
                    .push_bind(c.paid_through_date.to_string())
                    .push_bind(c.status.as_str())
                    .push_bind(c.status.as_str())
                    .push_bind(c.received_on.unix());
                for stamp in c.stamps() {
                    row.push_bind(stamp);
                }
            });
            q.push(" RETURNING id, status");
            let inserted = q
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(sql_err)?
                .iter()
                .map(|r| Ok((r.try_get::<i64, _>(0)?, r.try_get::<String, _>(1)?)))
                .collect::<Result<Vec<_>, sqlx::Error>>()
                .map_err(sql_err)?;

            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO charge_history (charge_id, event, from_status, to_status, at) ",
            );
            q.push_values(inserted, |mut row, (id, status)| {
                row.push_bind(id)
                    .push_bind("import")
                    .push_bind(None::<String>)
                    .push_bind(status)
                    .push_bind(now.unix());
            });
            q.build().execute(&mut *tx).await.map_err(sql_err)?;
            done += chunk.len() as u64;
            progress(done);
        }
        tx.commit().await.map_err(sql_err)?;
        Ok(ImportOutcome::Imported(ImportSummary {
            added: plan.rows.len() as u64,
            skipped: plan.skipped as u64,
        }))
    }
}

/// One page of `charges/list`. The WHERE clause repeats the terms of the partial index
/// `charges_to_list` so SQLite serves the page from it, already in order.
fn list_sql() -> String {
    format!(
        "SELECT {CHARGE_COLUMNS} FROM charges \
         WHERE operator_id = ? AND (status = 'PENDING') = ? \
           AND acknowledged_status IS NOT status \
         ORDER BY received_on, number LIMIT ? OFFSET ?"
    )
}

/// Tokens this long past their expiry are deleted.
const TOKEN_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

fn permit(
    attempts: i64,
    locked_until: Option<i64>,
    now: Timestamp,
    policy: LoginPolicy,
) -> StoreResult<AttemptPermit> {
    match locked_until {
        Some(until) if until > now.unix() => Ok(AttemptPermit::LockedOut {
            until: rows::timestamp(until)?,
        }),
        _ if attempts > i64::from(policy.max_failures) => Ok(AttemptPermit::LockedOut {
            until: now.plus_seconds(policy.lockout_seconds),
        }),
        _ => Ok(AttemptPermit::Allowed),
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
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", list_sql()))
                .bind(1_i64)
                .bind(pending)
                .bind(50_i64)
                .bind(0_i64)
                .fetch_all(&store.reader)
                .await
                .expect("plan")
                .iter()
                .map(|r| r.try_get::<String, _>(3).expect("detail"))
                .collect();
            let plan = plan.join(" | ");
            assert!(plan.contains("USING INDEX charges_to_list"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "sorted in memory: {plan}");
        }
    }
}
