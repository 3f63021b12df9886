//! A batch call in four round trips, the token check included: `BEGIN ISOLATION LEVEL
//! REPEATABLE READ`; one statement that reads the token, locks and reads the charges and
//! looks up the references; one statement that writes the plan; `COMMIT`.
//!
//! Repeatable read is what lets one statement both lock and read: every row it returns
//! comes from one snapshot, and a charge changed by a transaction that committed after
//! that snapshot is not silently re-read but fails the statement with a serialization
//! error (40001), after which the whole attempt starts over and sees the change. Under
//! read committed, a lock that waited would return the charge's new row next to its
//! decision as it was before the wait.
//!
//! Every lookup is an index probe per item (`= ANY` on a unique index, `LATERAL … LIMIT
//! 1` on the whole reference index, the decision by its primary key), so the plan cannot
//! degrade into reading every decision of the operator on a database without statistics.

use chargegate_core::batch::{Batch, Method, Snapshot, Verdict};
use chargegate_core::store::{Admission, Authorized, StoreResult, TokenBatch};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{BEGIN_DECISIONS, Failure, PostgresStore, Retries, caller, write_plan};
use crate::rows::{self, StateRow};

/// The caller, the locked charges and the used references, for accept and decline:
/// `$1` token hash, `$2` charge numbers, `$3` references, `$4` the method. One row per
/// locked charge (or one with a null charge when none is), each repeating the caller and
/// the used references; no row when the token is unknown.
macro_rules! lock_and_read {
    ($used:literal) => {
        concat!(
            "WITH caller AS (SELECT t.user_id, u.operator_id, o.code, t.expires_at, \
                  t.revoked_at IS NOT NULL AS revoked, u.enabled, t.key_id \
                  FROM tokens t JOIN users u ON u.id = t.user_id \
                  JOIN operators o ON o.id = u.operator_id WHERE t.hash = $1), \
             locked AS (SELECT c.id, c.number, c.customer_id, c.status, \
                  c.acknowledged_status, c.acknowledged_reference_number FROM charges c \
                  WHERE c.operator_id = (SELECT operator_id FROM caller) \
                    AND c.number = ANY($2::text[]) \
                  ORDER BY c.id FOR UPDATE), \
             used AS (SELECT array_agg(x.reference_number) AS used_references, \
                  array_agg(x.number) AS used_on \
                  FROM caller CROSS JOIN unnest($3::text[]) AS r(reference) \
                  CROSS JOIN LATERAL (",
            $used,
            ") x) \
             SELECT caller.user_id, caller.operator_id, caller.code, caller.expires_at, \
                  caller.revoked, caller.enabled, caller.key_id, used.used_references, \
                  used.used_on, \
                  l.id, l.number, l.customer_id, l.status, l.acknowledged_status, \
                  l.acknowledged_reference_number, d.method AS decision_method, \
                  d.reference_number AS decision_reference \
             FROM caller CROSS JOIN used LEFT JOIN locked l ON true \
             LEFT JOIN LATERAL (SELECT method, reference_number FROM decisions \
                  WHERE charge_id = l.id) d ON true"
        )
    };
}

/// [`lock_and_read!`] for accept and decline: references are looked up among the
/// operator's decisions of the method.
pub const LOCK_AND_READ_DECISIONS: &str = lock_and_read!(
    "SELECT dr.reference_number, dc.number FROM decisions dr \
     JOIN charges dc ON dc.id = dr.charge_id \
     WHERE dr.operator_id = caller.operator_id AND dr.method = $4 \
       AND dr.reference_number = r.reference LIMIT 1"
);

/// [`lock_and_read!`] for acknowledge: references are looked up among the operator's
/// acknowledgements (no `$4`).
pub const LOCK_AND_READ_ACKNOWLEDGEMENTS: &str = lock_and_read!(
    "SELECT ar.reference_number, ac.number FROM acknowledgements ar \
     JOIN charges ac ON ac.id = ar.charge_id \
     WHERE ar.operator_id = caller.operator_id AND ar.reference_number = r.reference LIMIT 1"
);

impl PostgresStore {
    pub(super) async fn token_batch(
        &self,
        request: TokenBatch,
        admit: Admission<'_>,
    ) -> StoreResult<Authorized> {
        let token = request.token;
        // The caller's ids are filled in once the token is read.
        let mut batch = Batch {
            method: request.method,
            operator_id: 0,
            user_id: 0,
            key_id: None,
            via_console: false,
            request_id: request.request_id,
            at: request.at,
            items: request.items,
        };
        let mut retries = Retries::new(batch.method.as_str());
        while retries.another().await {
            match self.try_token_batch(&token.0, &mut batch, admit).await {
                Ok(Attempt::Unknown) => return Ok(Authorized::UnknownToken),
                Ok(Attempt::Refused(caller)) => return Ok(Authorized::Refused(caller)),
                Ok(Attempt::Applied(caller, verdicts)) => {
                    return Ok(Authorized::Applied {
                        caller,
                        batch,
                        verdicts,
                    });
                }
                Err(failure) => {
                    if let Some(e) = retries.failed(failure) {
                        return Err(e);
                    }
                }
            }
        }
        Err(retries.exhausted())
    }

    async fn try_token_batch(
        &self,
        token: &[u8; 32],
        batch: &mut Batch,
        admit: Admission<'_>,
    ) -> Result<Attempt, Failure> {
        let mut tx = self.pool.begin_with(BEGIN_DECISIONS).await?;
        let numbers: Vec<&str> = batch
            .numbers()
            .into_iter()
            .map(chargegate_core::ChargeNumber::as_str)
            .collect();
        let references: Vec<&str> = batch
            .references()
            .into_iter()
            .map(chargegate_core::ReferenceNumber::as_str)
            .collect();
        let sql = match batch.method {
            Method::Acknowledge => LOCK_AND_READ_ACKNOWLEDGEMENTS,
            Method::Accept | Method::Decline => LOCK_AND_READ_DECISIONS,
        };
        let mut query = sqlx::query(sql)
            .bind(&token[..])
            .bind(&numbers)
            .bind(&references);
        if batch.method != Method::Acknowledge {
            query = query.bind(batch.method.as_str());
        }
        let rows = query.fetch_all(&mut *tx).await?;
        drop((numbers, references));
        // No row: no such token. The transaction is dropped, which rolls it back.
        let Some(first) = rows.first() else {
            return Ok(Attempt::Unknown);
        };
        let caller = caller(first)?.into_record()?;
        if !admit(&caller) {
            return Ok(Attempt::Refused(caller));
        }
        batch.operator_id = caller.operator_id;
        batch.user_id = caller.user_id;
        batch.key_id = caller.key_id;
        let snapshot = snapshot(&rows)?;
        let (verdicts, changes) = batch.decide(&snapshot);
        write_plan(&mut tx, batch, &changes).await?;
        self.commit(tx, batch, &changes).await?;
        Ok(Attempt::Applied(caller, verdicts))
    }
}

enum Attempt {
    Unknown,
    Refused(chargegate_core::store::TokenRecord),
    Applied(chargegate_core::store::TokenRecord, Vec<Verdict>),
}

/// The charges and used references of the statement's rows.
fn snapshot(rows: &[PgRow]) -> Result<Snapshot, Failure> {
    let mut snapshot = Snapshot::default();
    for r in rows {
        let Some(id) = r.try_get::<Option<i64>, _>("id")? else {
            continue;
        };
        let row = StateRow {
            id,
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
    if let Some(first) = rows.first() {
        let used: Option<Vec<String>> = first.try_get("used_references")?;
        let on: Option<Vec<String>> = first.try_get("used_on")?;
        for (reference, number) in used
            .unwrap_or_default()
            .into_iter()
            .zip(on.unwrap_or_default())
        {
            if let Some(reference) = rows::reference(Some(reference))? {
                snapshot
                    .used_references
                    .insert(reference, rows::number(number)?);
            }
        }
    }
    Ok(snapshot)
}
