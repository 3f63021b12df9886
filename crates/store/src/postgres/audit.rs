//! The audit trail on PostgreSQL: `charges/show` and the reconciliation feed.
//!
//! The feed cannot page by the history's identity column: ids are handed out when rows
//! are inserted, while transactions commit in another order, so a row with a smaller id
//! may become visible after a page beyond it was served. Each history row records the id
//! of the transaction that wrote it (`xid`, a column default: the write paths do not name
//! it). A page serves only rows whose transaction is older than the oldest transaction
//! still running (`pg_snapshot_xmin` of the statement's snapshot): those transactions
//! have all ended, so no row with such an xid can appear later. Rows are served in
//! `(xid, id)` order; any row committed later belongs to a transaction at or past that
//! horizon, and so sorts after everything already served.
//!
//! The price: a long write transaction anywhere in the database (an import of a million
//! charges, say) holds the horizon back until it ends; pages after it then wait
//! (`next` stays set) rather than skip.

use async_trait::async_trait;
use chargegate_core::audit::{AuditStore, ChargeRecord, FeedPage, FeedQuery};
use chargegate_core::store::StoreResult;
use chargegate_core::text::ChargeNumber;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PostgresStore, sql_err};
use crate::audit_rows::{FeedRow, HistoryRow, RecordRow};
use crate::rows::ChargeRow;

const RECORD_SQL: &str = "SELECT c.id, o.code, c.number, c.customer_id, c.amount_minor, \
        c.currency, c.local_amount_minor, c.local_currency, c.paid_through_date, c.status, \
        c.received_on, c.set_as_approved_on, c.set_as_declined_on, c.set_as_bad_request_on, \
        c.set_as_rejected_on, c.netflix_customer_id, c.acknowledged_status, \
        d.reference_number AS decision_reference, s.number AS subscription_number \
     FROM charges c JOIN operators o ON o.id = c.operator_id \
     LEFT JOIN decisions d ON d.charge_id = c.id \
     LEFT JOIN subscriptions s ON s.id = c.subscription_id \
     WHERE c.number = $1 AND ($2::bigint IS NULL OR c.operator_id = $2)";

const HISTORY_SQL: &str = "SELECT h.at, h.event, h.from_status, h.to_status, u.username, \
        h.request_id, h.reference_number, k.prefix AS key_prefix, h.via_console, h.reason \
     FROM charge_history h LEFT JOIN users u ON u.id = h.user_id \
     LEFT JOIN api_keys k ON k.id = h.key_id \
     WHERE h.charge_id = $1 ORDER BY h.id";

/// One page plus one row, without the horizon's filter: rows at or past the horizon sort
/// after every servable row, so when one shows up among these, later entries are held
/// back (and the page is cut before it). `horizon` is computed once, from the statement's
/// own snapshot.
const FEED_SQL: &str = "WITH horizon AS MATERIALIZED \
        (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin) \
     SELECT h.xid, h.id, c.number, c.customer_id, h.at, h.event, h.from_status, h.to_status, \
            u.username, h.request_id, h.reference_number, c.amount_minor, c.currency, \
            horizon.xmin, k.prefix AS key_prefix, h.via_console, NULL::text AS reason \
     FROM charge_history h JOIN charges c ON c.id = h.charge_id \
     LEFT JOIN users u ON u.id = h.user_id LEFT JOIN api_keys k ON k.id = h.key_id \
     CROSS JOIN horizon \
     WHERE (h.xid, h.id) > ($1, $2) AND c.operator_id = $3 AND h.at >= $4 AND h.at < $5 \
       AND h.from_status IS NOT NULL AND h.from_status <> h.to_status \
     ORDER BY h.xid, h.id LIMIT $6";

fn history_row(r: &PgRow) -> Result<HistoryRow, sqlx::Error> {
    Ok(HistoryRow {
        at: r.try_get("at")?,
        event: r.try_get("event")?,
        from_status: r.try_get("from_status")?,
        to_status: r.try_get("to_status")?,
        username: r.try_get("username")?,
        request_id: r.try_get("request_id")?,
        reference_number: r.try_get("reference_number")?,
        key_prefix: r.try_get("key_prefix")?,
        via_console: r.try_get("via_console")?,
        reason: r.try_get("reason")?,
    })
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn charge_record(
        &self,
        operator_id: Option<i64>,
        number: &ChargeNumber,
    ) -> StoreResult<Option<ChargeRecord>> {
        // One snapshot for the charge and its history.
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        let found = sqlx::query(RECORD_SQL)
            .bind(number.as_str())
            .bind(operator_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(sql_err)?;
        let Some(r) = found else {
            tx.rollback().await.map_err(sql_err)?;
            return Ok(None);
        };
        let id: i64 = r.try_get("id").map_err(sql_err)?;
        let history = sqlx::query(HISTORY_SQL)
            .bind(id)
            .fetch_all(&mut *tx)
            .await
            .map_err(sql_err)?;
        tx.rollback().await.map_err(sql_err)?;
        let history = history
            .iter()
            .map(|h| history_row(h).map_err(sql_err)?.into_entry())
            .collect::<StoreResult<Vec<_>>>()?;
        let record = (|| -> Result<RecordRow<'_>, sqlx::Error> {
            Ok(RecordRow {
                operator: r.try_get("code")?,
                charge: ChargeRow {
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
                },
                reference_number: r.try_get("decision_reference")?,
                netflix_customer: r.try_get("netflix_customer_id")?,
                acknowledged_status: r.try_get("acknowledged_status")?,
                subscription_number: r.try_get("subscription_number")?,
            })
        })()
        .map_err(sql_err)?;
        record.into_record(history).map(Some)
    }

    async fn decision_feed(&self, query: &FeedQuery) -> StoreResult<FeedPage> {
        let found = sqlx::query(FEED_SQL)
            .bind(query.after.commit)
            .bind(query.after.row)
            .bind(query.operator_id)
            .bind(query.from.unix())
            .bind(query.to.unix())
            .bind(i64::from(query.limit) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(sql_err)?;
        let mut entries = Vec::with_capacity(found.len());
        let mut held_back = false;
        for r in &found {
            let (xid, xmin): (i64, i64) = (
                r.try_get("xid").map_err(sql_err)?,
                r.try_get("xmin").map_err(sql_err)?,
            );
            if xid >= xmin {
                held_back = true;
                break;
            }
            if entries.len() == query.limit as usize {
                break;
            }
            let row = (|| -> Result<FeedRow, sqlx::Error> {
                Ok(FeedRow {
                    commit: xid,
                    row: r.try_get("id")?,
                    number: r.try_get("number")?,
                    customer: r.try_get("customer_id")?,
                    history: history_row(r)?,
                    amount_minor: r.try_get("amount_minor")?,
                    currency: r.try_get("currency")?,
                })
            })()
            .map_err(sql_err)?;
            entries.push(row.into_entry()?);
        }
        Ok(FeedPage { entries, held_back })
    }
}
