//! The statements both backends run for batches and imports, built once for either
//! database with `QueryBuilder` (which writes each backend's placeholders). The backends
//! own the transactions around them: how a write transaction begins, how rows are locked,
//! when to retry. Statements that only one backend runs live in that backend.

use chargegate_core::batch::{Batch, ChargeState, Method, Snapshot, Verdict};
use chargegate_core::import::ResolvedCharge;
use chargegate_core::text::ReferenceNumber;
use sqlx::{Database, Encode, QueryBuilder, Type};

use crate::rows::{INTAKE_COLUMNS, STATE_COLUMNS, stamp_column};

/// Rows per multi-row INSERT during an import: 16 parameters a row, far below SQLite's
/// 32766 and PostgreSQL's 65535 parameters per statement.
pub(crate) const IMPORT_CHUNK: usize = 500;

/// One item to write: the charge as it was read, and the item's reference.
pub(crate) struct Applied<'a> {
    pub state: &'a ChargeState,
    pub reference: Option<&'a str>,
}

/// The items of a batch judged [`Verdict::Apply`], with what was read of their charges.
pub(crate) fn applied<'a>(
    batch: &'a Batch,
    snapshot: &'a Snapshot,
    verdicts: &[Verdict],
) -> Vec<Applied<'a>> {
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

/// The three writes of a batch, in order. `update` is conditional on the state that was
/// judged; the caller checks it changed exactly `expected` rows, else applies nothing.
pub(crate) struct BatchWrites<'a, DB: Database> {
    pub update: QueryBuilder<'a, DB>,
    pub expected: u64,
    pub record: QueryBuilder<'a, DB>,
    pub history: QueryBuilder<'a, DB>,
}

/// Builds statements for one database. The bounds say which Rust values each database
/// must accept as parameters; both SQLite and PostgreSQL do.
pub(crate) struct Statements<DB>(std::marker::PhantomData<DB>);

impl<'a, DB: Database> Statements<DB>
where
    i64: Encode<'a, DB> + Type<DB>,
    Option<i64>: Encode<'a, DB> + Type<DB>,
    &'a str: Encode<'a, DB> + Type<DB>,
    Option<&'a str>: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
{
    fn in_list<T>(q: &mut QueryBuilder<'a, DB>, values: impl IntoIterator<Item = T>)
    where
        T: Encode<'a, DB> + Type<DB> + 'a,
    {
        q.push(" IN (");
        let mut list = q.separated(", ");
        for v in values {
            list.push_bind(v);
        }
        list.push_unseparated(")");
    }

    /// The caller's operator's charges among those the batch names, with their decision
    /// and acknowledgement. Other operators' charges are never read.
    pub(crate) fn charge_states(batch: &'a Batch) -> QueryBuilder<'a, DB> {
        let mut q = QueryBuilder::new(format!(
            "SELECT {STATE_COLUMNS} FROM charges c LEFT JOIN decisions d ON d.charge_id = c.id \
             WHERE c.operator_id = "
        ));
        q.push_bind(batch.operator_id).push(" AND c.number");
        Self::in_list(&mut q, batch.numbers().into_iter().map(|n| n.as_str()));
        q
    }

    /// Locks the batch's charges in id order (a consistent order, so concurrent batches
    /// cannot deadlock). PostgreSQL only: SQLite's write lock covers the whole database.
    pub(crate) fn lock_charges(batch: &'a Batch) -> QueryBuilder<'a, DB> {
        let mut q = QueryBuilder::new("SELECT id FROM charges WHERE operator_id = ");
        q.push_bind(batch.operator_id).push(" AND number");
        Self::in_list(&mut q, batch.numbers().into_iter().map(|n| n.as_str()));
        q.push(" ORDER BY id FOR UPDATE");
        q
    }

    /// The batch's references already used in the method's namespace, with the number of
    /// the charge each was used on.
    pub(crate) fn used_references(batch: &'a Batch) -> QueryBuilder<'a, DB> {
        let mut q = match batch.method {
            Method::Acknowledge => {
                let mut q = QueryBuilder::new(
                    "SELECT a.reference_number, c.number FROM acknowledgements a \
                     JOIN charges c ON c.id = a.charge_id WHERE a.operator_id = ",
                );
                q.push_bind(batch.operator_id)
                    .push(" AND a.reference_number");
                q
            }
            Method::Accept | Method::Decline => {
                let mut q = QueryBuilder::new(
                    "SELECT d.reference_number, c.number FROM decisions d \
                     JOIN charges c ON c.id = d.charge_id WHERE d.operator_id = ",
                );
                q.push_bind(batch.operator_id)
                    .push(" AND d.method = ")
                    .push_bind(batch.method.as_str())
                    .push(" AND d.reference_number");
                q
            }
        };
        Self::in_list(&mut q, batch.references().into_iter().map(|r| r.as_str()));
        q
    }

    /// The writes for the applied items of a batch (which must not be empty).
    pub(crate) fn batch_writes(batch: &'a Batch, items: &'a [Applied<'a>]) -> BatchWrites<'a, DB> {
        let at = batch.at.unix();
        let ids = || items.iter().map(|a| a.state.id);
        let (update, record) = match batch.method.target_status() {
            Some(target) => {
                let mut update = QueryBuilder::new("UPDATE charges SET status = ");
                update.push_bind(target.as_str());
                if let Some(stamp) = stamp_column(target) {
                    update.push(format!(", {stamp} = ")).push_bind(at);
                }
                update.push(" WHERE status = 'PENDING' AND id");
                Self::in_list(&mut update, ids());

                let mut record = QueryBuilder::new(
                    "INSERT INTO decisions (charge_id, operator_id, method, reference_number, \
                     user_id, decided_on, request_id) ",
                );
                record.push_values(items, |mut row, a| {
                    row.push_bind(a.state.id)
                        .push_bind(batch.operator_id)
                        .push_bind(batch.method.as_str())
                        .push_bind(a.reference)
                        .push_bind(batch.user_id)
                        .push_bind(at)
                        .push_bind(batch.request_id.as_str());
                });
                (update, record)
            }
            None => {
                // Per-row values through CASE, which both databases understand; the last
                // condition makes the write conditional on the status that was judged.
                let mut update = QueryBuilder::new(
                    "UPDATE charges SET acknowledged_status = status, acknowledged_on = ",
                );
                update
                    .push_bind(at)
                    .push(", acknowledged_reference_number = CASE id");
                for a in items {
                    update
                        .push(" WHEN ")
                        .push_bind(a.state.id)
                        .push(" THEN ")
                        .push_bind(a.reference);
                }
                update.push(" END WHERE id");
                Self::in_list(&mut update, ids());
                update.push(" AND status = CASE id");
                for a in items {
                    update
                        .push(" WHEN ")
                        .push_bind(a.state.id)
                        .push(" THEN ")
                        .push_bind(a.state.status.as_str());
                }
                update.push(" END");

                let mut record = QueryBuilder::new(
                    "INSERT INTO acknowledgements (charge_id, operator_id, status, \
                     reference_number, user_id, acknowledged_on, request_id) ",
                );
                record.push_values(items, |mut row, a| {
                    row.push_bind(a.state.id)
                        .push_bind(batch.operator_id)
                        .push_bind(a.state.status.as_str())
                        .push_bind(a.reference)
                        .push_bind(batch.user_id)
                        .push_bind(at)
                        .push_bind(batch.request_id.as_str());
                });
                (update, record)
            }
        };

        let mut history = QueryBuilder::new(
            "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
             user_id, request_id, reference_number) ",
        );
        let to = batch.method.target_status();
        history.push_values(items, |mut row, a| {
            row.push_bind(a.state.id)
                .push_bind(batch.method.as_str())
                .push_bind(a.state.status.as_str())
                .push_bind(to.unwrap_or(a.state.status).as_str())
                .push_bind(at)
                .push_bind(batch.user_id)
                .push_bind(batch.request_id.as_str())
                .push_bind(a.reference);
        });

        BatchWrites {
            update,
            expected: items.len() as u64,
            record,
            history,
        }
    }

    /// Intake data of stored charges with these numbers (any operator: numbers are
    /// unique across the server).
    pub(crate) fn stored_intakes(numbers: &'a [&'a str]) -> QueryBuilder<'a, DB> {
        let mut q = QueryBuilder::new(format!("SELECT {INTAKE_COLUMNS} FROM charges WHERE number"));
        Self::in_list(&mut q, numbers.iter().copied());
        q
    }

    /// Inserts imported charges, returning each new `id, status`.
    pub(crate) fn insert_charges(rows: &'a [ResolvedCharge]) -> QueryBuilder<'a, DB> {
        let mut q = QueryBuilder::new(
            "INSERT INTO charges (number, operator_id, customer_id, netflix_customer_id, \
             amount_minor, currency, local_amount_minor, local_currency, paid_through_date, \
             status, initial_status, received_on, set_as_approved_on, set_as_declined_on, \
             set_as_bad_request_on, set_as_rejected_on) ",
        );
        q.push_values(rows, |mut row, c| {
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
        q
    }

    /// The `import` history rows of freshly inserted charges (`id, status` pairs).
    pub(crate) fn import_history(inserted: &'a [(i64, String)], at: i64) -> QueryBuilder<'a, DB> {
        let mut q = QueryBuilder::new(
            "INSERT INTO charge_history (charge_id, event, from_status, to_status, at) ",
        );
        q.push_values(inserted, |mut row, (id, status)| {
            row.push_bind(*id)
                .push_bind("import")
                .push_bind(None::<&str>)
                .push_bind(status.as_str())
                .push_bind(at);
        });
        q
    }
}

/// The body of `Store::import_charges` once a backend has opened its write transaction
/// `$tx`: read the stored charges the import names and the highest generated number
/// (`$max_generated_sql`), plan, write in chunks, commit.
///
/// A macro rather than a generic function: with the database as a type parameter, sqlx's
/// argument types are invariant in their lifetime, which rules out running parameterised
/// queries generically; expanded for a concrete database, the same code compiles.
macro_rules! import_charges_in {
    ($db:ty, $tx:ident, $charges:expr, $now:expr, $progress:expr, $max_generated_sql:expr) => {{
        use $crate::error::from_sqlx;
        use $crate::sql::{IMPORT_CHUNK, Statements};
        let (charges, now, progress) = ($charges, $now, $progress);
        let given: Vec<&str> = charges
            .iter()
            .filter_map(|c: &NewCharge| c.number.as_ref().map(|n| n.as_str()))
            .collect();
        let mut stored = std::collections::HashMap::new();
        for chunk in given.chunks(IMPORT_CHUNK) {
            for row in Statements::<$db>::stored_intakes(chunk)
                .build()
                .fetch_all(&mut *$tx)
                .await
                .map_err(from_sqlx)?
            {
                let (number, intake) = $crate::rows::IntakeRow::read(&row)
                    .map_err(from_sqlx)?
                    .into_intake()?;
                stored.insert(number, intake);
            }
        }
        let max_generated: Option<String> = sqlx::query_scalar($max_generated_sql)
            .fetch_one(&mut *$tx)
            .await
            .map_err(from_sqlx)?;

        let plan = chargegate_core::import::plan(charges, &stored, max_generated.as_deref(), now);
        if !plan.conflicts.is_empty() {
            $tx.rollback().await.map_err(from_sqlx)?;
            return Ok(ImportOutcome::Refused(plan.conflicts));
        }
        let mut done = plan.skipped as u64;
        for chunk in plan.rows.chunks(IMPORT_CHUNK) {
            let inserted = Statements::<$db>::insert_charges(chunk)
                .build()
                .fetch_all(&mut *$tx)
                .await
                .map_err(from_sqlx)?
                .iter()
                .map($crate::rows::id_and_status)
                .collect::<Result<Vec<_>, _>>()
                .map_err(from_sqlx)?;
            Statements::<$db>::import_history(&inserted, now.unix())
                .build()
                .execute(&mut *$tx)
                .await
                .map_err(from_sqlx)?;
            done += chunk.len() as u64;
            progress(done);
        }
        $tx.commit().await.map_err(from_sqlx)?;
        Ok(ImportOutcome::Imported(
            chargegate_core::store::ImportSummary {
                added: plan.rows.len() as u64,
                skipped: plan.skipped as u64,
            },
        ))
    }};
}
pub(crate) use import_charges_in;
