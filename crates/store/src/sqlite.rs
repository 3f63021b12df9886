//! The embedded default: one SQLite file, zero set-up.
//!
//! Durability first: WAL with `synchronous=FULL` (a lost decline is a billing error),
//! foreign keys on, and every write transaction opened `BEGIN IMMEDIATE` so it holds the
//! write lock from its first read: the snapshot a batch is judged on cannot change before
//! its write, whether the competitor is another task or another process. Writes go
//! through a single-connection pool (SQLite has one writer anyway; queueing in the pool is
//! fairer than spinning on `SQLITE_BUSY`), reads through a pool of their own, which WAL
//! lets run beside the writer.

use std::path::{Path, PathBuf};

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
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection};

use crate::StoreOptions;
use crate::copy::{self, IS_EMPTY_SQL};
use crate::error::from_sqlx;
use crate::migrations::{self, migrator};
use crate::rows::{
    self, CHARGE_COLUMNS, ChargeRow, LOGIN_USER_COLUMNS, OPERATOR_COLUMNS, StateRow, TOKEN_COLUMNS,
    TOKEN_RETENTION_SECONDS,
};
use crate::sql::{self, Applied, Statements};

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

type Sql = Statements<Sqlite>;

/// Reads what the rules need, inside the write transaction.
async fn read_snapshot(conn: &mut SqliteConnection, batch: &Batch) -> StoreResult<Snapshot> {
    let mut snapshot = Snapshot::default();
    if batch.numbers().is_empty() {
        return Ok(snapshot);
    }
    for row in Sql::charge_states(batch)
        .build()
        .fetch_all(&mut *conn)
        .await
        .map_err(sql_err)?
    {
        let (number, state) = StateRow::read(&row).map_err(sql_err)?.into_state()?;
        snapshot.charges.insert(number, state);
    }
    if !batch.references().is_empty() {
        for row in Sql::used_references(batch)
            .build()
            .fetch_all(&mut *conn)
            .await
            .map_err(sql_err)?
        {
            let (reference, number) = rows::used_reference(&row)?;
            snapshot.used_references.insert(reference, number);
        }
    }
    Ok(snapshot)
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
    let mut writes = Sql::batch_writes(batch, items);
    let changed = writes
        .update
        .build()
        .execute(&mut *conn)
        .await
        .map_err(sql_err)?
        .rows_affected();
    if changed != writes.expected {
        // Impossible under BEGIN IMMEDIATE; if it ever happens, apply nothing.
        return Err(StoreError::Internal(format!(
            "{} changed {changed} of {} charges; rolled back",
            batch.method, writes.expected
        )));
    }
    writes
        .record
        .build()
        .execute(&mut *conn)
        .await
        .map_err(sql_err)?;
    writes
        .history
        .build()
        .execute(&mut *conn)
        .await
        .map_err(sql_err)?;
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
        let row = sqlx::query(&format!(
            "INSERT INTO operators (code, name, local_currency, created_at) \
                 VALUES (?, ?, ?, ?) RETURNING {OPERATOR_COLUMNS}"
        ))
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
        rows::operator(&row)
    }

    async fn operator_by_code(&self, code: &OperatorCode) -> StoreResult<Option<Operator>> {
        let row =
            sqlx::query("SELECT id, code, name, local_currency FROM operators WHERE code = ?")
                .bind(code.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(sql_err)?;
        row.as_ref().map(rows::operator).transpose()
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
        let sql = format!(
            "SELECT {LOGIN_USER_COLUMNS} FROM users u JOIN operators o ON o.id = u.operator_id \
             WHERE o.code = ? AND u.username = ?"
        );
        let row = sqlx::query(&sql)
            .bind(operator.as_str())
            .bind(username.as_str())
            .fetch_optional(&self.reader)
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
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens t JOIN users u ON u.id = t.user_id \
             JOIN operators o ON o.id = u.operator_id WHERE t.hash = ?"
        );
        let row = sqlx::query(&sql)
            .bind(&hash.0[..])
            .fetch_optional(&self.reader)
            .await
            .map_err(sql_err)?;
        row.as_ref().map(rows::token_record).transpose()
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
        write_applied(&mut tx, batch, &sql::applied(batch, &snapshot, &verdicts)).await?;
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
            .map(|r| ChargeRow::read(r).map_err(sql_err)?.into_charge())
            .collect()
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        sqlx::query_scalar(IS_EMPTY_SQL)
            .fetch_one(&self.reader)
            .await
            .map_err(sql_err)
    }

    async fn export_dump(&self, sink: &mut dyn DumpSink) -> StoreResult<()> {
        // One read transaction: in WAL mode its snapshot holds across every statement, so
        // the copy is consistent even while a server keeps writing.
        let mut tx = self.reader.begin().await.map_err(sql_err)?;
        copy::export_tables::<Sqlite>(&mut tx, sink).await?;
        tx.rollback().await.map_err(sql_err)
    }

    async fn import_dump(&self, source: &mut dyn DumpSource) -> StoreResult<CopySummary> {
        let mut tx = self.begin_write().await?;
        let summary = copy::import_dump_in!(Sqlite, tx, source, self.path.display());
        tx.commit().await.map_err(sql_err)?;
        Ok(summary)
    }

    async fn import_charges(
        &self,
        charges: &[NewCharge],
        now: Timestamp,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> StoreResult<ImportOutcome> {
        let mut tx = self.begin_write().await?;
        sql::import_charges_in!(
            Sqlite,
            tx,
            charges,
            now,
            progress,
            "SELECT max(number) FROM charges \
             WHERE number GLOB 'I[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'"
        )
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

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

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
