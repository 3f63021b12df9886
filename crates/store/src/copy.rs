//! The table-by-table shape of a database copy (`chargegate db copy`), shared by both
//! backends: which tables, in which order, which columns, how a page is selected and how
//! a chunk is inserted. The backends only run these statements in their transactions.

use chargegate_core::dump::{
    AcknowledgementRecord, CHUNK_ROWS, ChargeRecord, DecisionRecord, DumpChunk, HistoryRecord,
    LoginAttemptRecord, OperatorRecord, TokenRow, UserRecord,
};
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::rows::Columns;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Table {
    Operators,
    Users,
    LoginAttempts,
    Tokens,
    Charges,
    Decisions,
    Acknowledgements,
    History,
}

impl Table {
    /// Every table, parents before children.
    pub(crate) const ALL: [Table; 8] = [
        Table::Operators,
        Table::Users,
        Table::LoginAttempts,
        Table::Tokens,
        Table::Charges,
        Table::Decisions,
        Table::Acknowledgements,
        Table::History,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Operators => "operators",
            Table::Users => "users",
            Table::LoginAttempts => "login_attempts",
            Table::Tokens => "tokens",
            Table::Charges => "charges",
            Table::Decisions => "decisions",
            Table::Acknowledgements => "acknowledgements",
            Table::History => "charge_history",
        }
    }

    /// The columns, in record field order. The first is the table's key.
    fn columns(self) -> &'static str {
        match self {
            Table::Operators => "id, code, name, local_currency, created_at",
            Table::Users => "id, operator_id, username, password_hash, enabled, created_at",
            Table::LoginAttempts => "organisation, username, attempts, locked_until",
            Table::Tokens => "hash, user_id, issued_at, expires_at, revoked_at",
            Table::Charges => {
                "id, number, operator_id, customer_id, netflix_customer_id, amount_minor, \
                 currency, local_amount_minor, local_currency, paid_through_date, status, \
                 initial_status, received_on, set_as_approved_on, set_as_declined_on, \
                 set_as_bad_request_on, set_as_rejected_on, acknowledged_status, \
                 acknowledged_on, acknowledged_reference_number"
            }
            Table::Decisions => {
                "charge_id, operator_id, method, reference_number, user_id, decided_on, request_id"
            }
            Table::Acknowledgements => {
                "id, charge_id, operator_id, status, reference_number, user_id, \
                 acknowledged_on, request_id"
            }
            Table::History => {
                "id, charge_id, event, from_status, to_status, at, user_id, request_id, \
                 reference_number"
            }
        }
    }

    /// The integer key pages are walked by; `None` for the two tables keyed otherwise,
    /// which are small (failed-login counters, tokens of the last week) and read whole.
    pub(crate) fn integer_key(self) -> Option<&'static str> {
        match self {
            Table::LoginAttempts | Table::Tokens => None,
            Table::Decisions => Some("charge_id"),
            _ => Some("id"),
        }
    }

    /// Tables whose ids come from an identity sequence (PostgreSQL must move it past
    /// the copied ids).
    pub(crate) fn has_identity(self) -> bool {
        matches!(
            self,
            Table::Operators
                | Table::Users
                | Table::Charges
                | Table::Acknowledgements
                | Table::History
        )
    }

    /// One page: rows with a key above `after`, in key order (or the whole table). The
    /// key is an integer written into the text, so no parameter is needed.
    pub(crate) fn select_page(self, after: i64) -> String {
        let base = format!("SELECT {} FROM {}", self.columns(), self.name());
        match self.integer_key() {
            Some(key) => format!("{base} WHERE {key} > {after} ORDER BY {key} LIMIT {CHUNK_ROWS}"),
            // Whole table; ordered by its key so repeated copies read alike.
            None if self == Table::Tokens => format!("{base} ORDER BY hash"),
            None => format!("{base} ORDER BY organisation, username"),
        }
    }

    /// The rows of one page as a chunk.
    pub(crate) fn read(self, rows: &[impl Columns]) -> Result<DumpChunk, sqlx::Error> {
        fn all<R: Columns, T>(
            rows: &[R],
            f: impl Fn(&R) -> Result<T, sqlx::Error>,
        ) -> Result<Vec<T>, sqlx::Error> {
            rows.iter().map(f).collect()
        }
        Ok(match self {
            Table::Operators => DumpChunk::Operators(all(rows, |r| {
                Ok(OperatorRecord {
                    id: r.int(0)?,
                    code: r.text(1)?,
                    name: r.text(2)?,
                    local_currency: r.text(3)?,
                    created_at: r.int(4)?,
                })
            })?),
            Table::Users => DumpChunk::Users(all(rows, |r| {
                Ok(UserRecord {
                    id: r.int(0)?,
                    operator_id: r.int(1)?,
                    username: r.text(2)?,
                    password_hash: r.text(3)?,
                    enabled: r.flag(4)?,
                    created_at: r.int(5)?,
                })
            })?),
            Table::LoginAttempts => DumpChunk::LoginAttempts(all(rows, |r| {
                Ok(LoginAttemptRecord {
                    organisation: r.text(0)?,
                    username: r.text(1)?,
                    attempts: r.int(2)?,
                    locked_until: r.opt_int(3)?,
                })
            })?),
            Table::Tokens => DumpChunk::Tokens(all(rows, |r| {
                Ok(TokenRow {
                    hash: r.bytes(0)?,
                    user_id: r.int(1)?,
                    issued_at: r.int(2)?,
                    expires_at: r.int(3)?,
                    revoked_at: r.opt_int(4)?,
                })
            })?),
            Table::Charges => DumpChunk::Charges(all(rows, |r| {
                Ok(ChargeRecord {
                    id: r.int(0)?,
                    number: r.text(1)?,
                    operator_id: r.int(2)?,
                    customer_id: r.text(3)?,
                    netflix_customer_id: r.opt_text(4)?,
                    amount_minor: r.int(5)?,
                    currency: r.text(6)?,
                    local_amount_minor: r.int(7)?,
                    local_currency: r.text(8)?,
                    paid_through_date: r.text(9)?,
                    status: r.text(10)?,
                    initial_status: r.text(11)?,
                    received_on: r.int(12)?,
                    set_as_approved_on: r.opt_int(13)?,
                    set_as_declined_on: r.opt_int(14)?,
                    set_as_bad_request_on: r.opt_int(15)?,
                    set_as_rejected_on: r.opt_int(16)?,
                    acknowledged_status: r.opt_text(17)?,
                    acknowledged_on: r.opt_int(18)?,
                    acknowledged_reference_number: r.opt_text(19)?,
                })
            })?),
            Table::Decisions => DumpChunk::Decisions(all(rows, |r| {
                Ok(DecisionRecord {
                    charge_id: r.int(0)?,
                    operator_id: r.int(1)?,
                    method: r.text(2)?,
                    reference_number: r.opt_text(3)?,
                    user_id: r.int(4)?,
                    decided_on: r.int(5)?,
                    request_id: r.text(6)?,
                })
            })?),
            Table::Acknowledgements => DumpChunk::Acknowledgements(all(rows, |r| {
                Ok(AcknowledgementRecord {
                    id: r.int(0)?,
                    charge_id: r.int(1)?,
                    operator_id: r.int(2)?,
                    status: r.text(3)?,
                    reference_number: r.opt_text(4)?,
                    user_id: r.int(5)?,
                    acknowledged_on: r.int(6)?,
                    request_id: r.text(7)?,
                })
            })?),
            Table::History => DumpChunk::History(all(rows, |r| {
                Ok(HistoryRecord {
                    id: r.int(0)?,
                    charge_id: r.int(1)?,
                    event: r.text(2)?,
                    from_status: r.opt_text(3)?,
                    to_status: r.text(4)?,
                    at: r.int(5)?,
                    user_id: r.opt_int(6)?,
                    request_id: r.opt_text(7)?,
                    reference_number: r.opt_text(8)?,
                })
            })?),
        })
    }

    /// The key of the last row of a page, where the next page starts.
    pub(crate) fn last_key(self, rows: &[impl Columns]) -> Result<Option<i64>, sqlx::Error> {
        match (self.integer_key(), rows.last()) {
            (Some(_), Some(last)) => last.int(0).map(Some),
            _ => Ok(None),
        }
    }
}

/// One multi-row INSERT for a chunk (`None` for an empty chunk or `End`), and the table it
/// fills.
pub(crate) fn insert<'a, DB: Database>(chunk: &'a DumpChunk) -> Option<QueryBuilder<'a, DB>>
where
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    bool: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    let (table, rows) = chunk.describe();
    if rows == 0 {
        return None;
    }
    let spec = Table::ALL.into_iter().find(|t| t.name() == table)?;
    let mut q = QueryBuilder::new(format!("INSERT INTO {} ({}) ", table, spec.columns()));
    match chunk {
        DumpChunk::Operators(rows) => q.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.code.as_str())
                .push_bind(r.name.as_str())
                .push_bind(r.local_currency.as_str())
                .push_bind(r.created_at);
        }),
        DumpChunk::Users(rows) => q.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.operator_id)
                .push_bind(r.username.as_str())
                .push_bind(r.password_hash.as_str())
                .push_bind(r.enabled)
                .push_bind(r.created_at);
        }),
        DumpChunk::LoginAttempts(rows) => q.push_values(rows, |mut b, r| {
            b.push_bind(r.organisation.as_str())
                .push_bind(r.username.as_str())
                .push_bind(r.attempts)
                .push_bind(r.locked_until);
        }),
        DumpChunk::Tokens(rows) => q.push_values(rows, |mut b, r| {
            b.push_bind(r.hash.as_slice())
                .push_bind(r.user_id)
                .push_bind(r.issued_at)
                .push_bind(r.expires_at)
                .push_bind(r.revoked_at);
        }),
        DumpChunk::Charges(rows) => q.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.number.as_str())
                .push_bind(r.operator_id)
                .push_bind(r.customer_id.as_str())
                .push_bind(r.netflix_customer_id.as_deref())
                .push_bind(r.amount_minor)
                .push_bind(r.currency.as_str())
                .push_bind(r.local_amount_minor)
                .push_bind(r.local_currency.as_str())
                .push_bind(r.paid_through_date.as_str())
                .push_bind(r.status.as_str())
                .push_bind(r.initial_status.as_str())
                .push_bind(r.received_on)
                .push_bind(r.set_as_approved_on)
                .push_bind(r.set_as_declined_on)
                .push_bind(r.set_as_bad_request_on)
                .push_bind(r.set_as_rejected_on)
                .push_bind(r.acknowledged_status.as_deref())
                .push_bind(r.acknowledged_on)
                .push_bind(r.acknowledged_reference_number.as_deref());
        }),
        DumpChunk::Decisions(rows) => q.push_values(rows, |mut b, r| {
            b.push_bind(r.charge_id)
                .push_bind(r.operator_id)
                .push_bind(r.method.as_str())
                .push_bind(r.reference_number.as_deref())
                .push_bind(r.user_id)
                .push_bind(r.decided_on)
                .push_bind(r.request_id.as_str());
        }),
        DumpChunk::Acknowledgements(rows) => q.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.charge_id)
                .push_bind(r.operator_id)
                .push_bind(r.status.as_str())
                .push_bind(r.reference_number.as_deref())
                .push_bind(r.user_id)
                .push_bind(r.acknowledged_on)
                .push_bind(r.request_id.as_str());
        }),
        DumpChunk::History(rows) => q.push_values(rows, |mut b, r| {
            b.push_bind(r.id)
                .push_bind(r.charge_id)
                .push_bind(r.event.as_str())
                .push_bind(r.from_status.as_deref())
                .push_bind(r.to_status.as_str())
                .push_bind(r.at)
                .push_bind(r.user_id)
                .push_bind(r.request_id.as_deref())
                .push_bind(r.reference_number.as_deref());
        }),
        DumpChunk::End => return None,
    };
    Some(q)
}

/// Whether a database holds nothing a copy would overwrite.
pub(crate) const IS_EMPTY_SQL: &str = "SELECT NOT EXISTS (SELECT 1 FROM operators) \
     AND NOT EXISTS (SELECT 1 FROM users) AND NOT EXISTS (SELECT 1 FROM charges) \
     AND NOT EXISTS (SELECT 1 FROM tokens)";

/// Adds a chunk's rows to the per-table tally.
pub(crate) fn count(summary: &mut chargegate_core::dump::CopySummary, chunk: &DumpChunk) {
    let (table, rows) = chunk.describe();
    match summary.iter_mut().find(|(t, _)| *t == table) {
        Some((_, n)) => *n += rows as u64,
        None => summary.push((table, rows as u64)),
    }
}

/// Sends every table, page by page, then `End`, reading through `conn` (inside the
/// caller's read transaction, so the copy is one consistent snapshot).
pub(crate) async fn export_tables<DB>(
    conn: &mut DB::Connection,
    sink: &mut dyn chargegate_core::dump::DumpSink,
) -> chargegate_core::store::StoreResult<()>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    DB::Row: Columns,
{
    use crate::error::from_sqlx;
    for table in Table::ALL {
        let mut after = i64::MIN;
        loop {
            let sql = table.select_page(after);
            let rows = sqlx::query(&sql)
                .fetch_all(&mut *conn)
                .await
                .map_err(from_sqlx)?;
            if rows.is_empty() {
                break;
            }
            let next = table.last_key(&rows).map_err(from_sqlx)?;
            sink.send(table.read(&rows).map_err(from_sqlx)?).await?;
            match next {
                Some(key) if rows.len() == CHUNK_ROWS => after = key,
                _ => break,
            }
        }
    }
    sink.send(DumpChunk::End).await
}

/// The body of `Store::import_dump` once a backend has opened its write transaction `$tx`
/// (see [`crate::sql::import_charges_in`] for why a macro): refuse a non-empty target,
/// write every chunk until `End`, and give the tally. The caller commits.
macro_rules! import_dump_in {
    ($db:ty, $tx:ident, $source:expr, $shown:expr) => {{
        use $crate::error::from_sqlx;
        let empty: bool = sqlx::query_scalar($crate::copy::IS_EMPTY_SQL)
            .fetch_one(&mut *$tx)
            .await
            .map_err(from_sqlx)?;
        if !empty {
            return Err(StoreError::Conflict(format!(
                "the target database {} is not empty",
                $shown
            )));
        }
        let mut summary = CopySummary::new();
        loop {
            let chunk = $source.next().await.ok_or_else(|| {
                StoreError::Internal("the copy stopped before its end; nothing was written".into())
            })?;
            if chunk == DumpChunk::End {
                break;
            }
            if let Some(mut insert) = $crate::copy::insert::<$db>(&chunk) {
                insert.build().execute(&mut *$tx).await.map_err(from_sqlx)?;
            }
            $crate::copy::count(&mut summary, &chunk);
        }
        summary
    }};
}
pub(crate) use import_dump_in;
