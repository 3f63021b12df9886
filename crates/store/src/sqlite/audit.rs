//! The audit trail on SQLite: `charges/show` and the reconciliation feed. Both are reads
//! on reader connections; they never queue behind the writer.
//!
//! The feed's position is the history row's id. SQLite has one writer at a time (in a
//! process, the writer thread; across processes, `BEGIN IMMEDIATE`), so transactions
//! commit one after another, and a row's id (the largest id plus one, at the time it is
//! written) is greater than every id committed before it. Rows are never deleted
//! (`charge_history` is append-only), so an id is never handed out again once committed.
//! A reader sees a prefix of that order: paging by id never skips or repeats a row.

use async_trait::async_trait;
use chargegate_core::audit::{AuditStore, ChargeRecord, FeedPage, FeedQuery};
use chargegate_core::store::StoreResult;
use chargegate_core::text::ChargeNumber;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::audit_rows::{FeedRow, HistoryRow, IS_STATUS_CHANGE, RecordRow};
use crate::error::from_sqlite;
use crate::rows::ChargeRow;

const RECORD_SQL: &str = "SELECT c.id, o.code, c.number, c.customer_id, c.amount_minor, \
        c.currency, c.local_amount_minor, c.local_currency, c.paid_through_date, c.status, \
        c.received_on, c.set_as_approved_on, c.set_as_declined_on, c.set_as_bad_request_on, \
        c.set_as_rejected_on, c.netflix_customer_id, c.acknowledged_status, \
        d.reference_number AS decision_reference, s.number AS subscription_number \
     FROM charges c JOIN operators o ON o.id = c.operator_id \
     LEFT JOIN decisions d ON d.charge_id = c.id \
     LEFT JOIN subscriptions s ON s.id = c.subscription_id \
     WHERE c.number = ?1 AND (?2 IS NULL OR c.operator_id = ?2)";

const HISTORY_SQL: &str = "SELECT h.at, h.event, h.from_status, h.to_status, u.username, \
        h.request_id, h.reference_number, k.prefix AS key_prefix, h.via_console, h.reason \
     FROM charge_history h LEFT JOIN users u ON u.id = h.user_id \
     LEFT JOIN api_keys k ON k.id = h.key_id \
     WHERE h.charge_id = ?1 ORDER BY h.id";

/// `CROSS JOIN` fixes the join order in SQLite: the history is the outer loop, walked by
/// its key from the cursor, whatever the statistics say (see
/// `the_feed_keeps_its_plan_near_the_end_of_an_analysed_history`).
fn feed_sql() -> String {
    format!(
        "SELECT h.id, c.number, c.customer_id, h.at, h.event, h.from_status, h.to_status, \
                u.username, h.request_id, h.reference_number, c.amount_minor, c.currency, \
                k.prefix, h.via_console \
         FROM charge_history h CROSS JOIN charges c ON c.id = h.charge_id \
         LEFT JOIN users u ON u.id = h.user_id LEFT JOIN api_keys k ON k.id = h.key_id \
         WHERE h.id > ?1 AND c.operator_id = ?2 AND h.at >= ?3 AND h.at < ?4 \
           AND {IS_STATUS_CHANGE} \
         ORDER BY h.id LIMIT ?5"
    )
}

fn history_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HistoryRow> {
    Ok(HistoryRow {
        at: r.get("at")?,
        event: r.get("event")?,
        from_status: r.get("from_status")?,
        to_status: r.get("to_status")?,
        username: r.get("username")?,
        request_id: r.get("request_id")?,
        reference_number: r.get("reference_number")?,
        key_prefix: r.get("key_prefix")?,
        via_console: r.get("via_console")?,
        reason: r.get("reason")?,
    })
}

fn charge_record(
    conn: &Connection,
    operator_id: Option<i64>,
    number: &str,
) -> StoreResult<Option<ChargeRecord>> {
    // One read transaction: the charge and its history from the same snapshot.
    let tx = conn.unchecked_transaction().map_err(from_sqlite)?;
    let found = tx
        .prepare_cached(RECORD_SQL)
        .and_then(|mut s| {
            s.query_row(params![number, operator_id], |r| {
                Ok((
                    r.get::<_, i64>("id")?,
                    r.get::<_, String>("code")?,
                    r.get::<_, String>("number")?,
                    r.get::<_, String>("customer_id")?,
                    r.get::<_, i64>("amount_minor")?,
                    r.get::<_, String>("currency")?,
                    r.get::<_, i64>("local_amount_minor")?,
                    r.get::<_, String>("local_currency")?,
                    r.get::<_, String>("paid_through_date")?,
                    r.get::<_, String>("status")?,
                    [
                        r.get::<_, Option<i64>>("received_on")?,
                        r.get("set_as_approved_on")?,
                        r.get("set_as_declined_on")?,
                        r.get("set_as_bad_request_on")?,
                        r.get("set_as_rejected_on")?,
                    ],
                    (
                        r.get::<_, Option<String>>("netflix_customer_id")?,
                        r.get::<_, Option<String>>("acknowledged_status")?,
                        r.get::<_, Option<String>>("decision_reference")?,
                        r.get::<_, Option<String>>("subscription_number")?,
                    ),
                ))
            })
            .optional()
        })
        .map_err(from_sqlite)?;
    let Some((
        id,
        code,
        number,
        customer,
        amount,
        currency,
        local,
        local_currency,
        paid,
        status,
        stamps,
        extra,
    )) = found
    else {
        return Ok(None);
    };
    let history = tx
        .prepare_cached(HISTORY_SQL)
        .and_then(|mut s| {
            s.query_map([id], history_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(from_sqlite)?
        .into_iter()
        .map(HistoryRow::into_entry)
        .collect::<StoreResult<Vec<_>>>()?;
    tx.commit().map_err(from_sqlite)?;
    let (netflix_customer, acknowledged_status, reference_number, subscription_number) = extra;
    RecordRow {
        operator: code,
        charge: ChargeRow {
            number,
            customer,
            amount_minor: amount,
            currency: &currency,
            local_amount_minor: local,
            local_currency: &local_currency,
            paid_through_date: &paid,
            status: &status,
            received_on: stamps[0].unwrap_or_default(),
            set_as_approved_on: stamps[1],
            set_as_declined_on: stamps[2],
            set_as_bad_request_on: stamps[3],
            set_as_rejected_on: stamps[4],
        },
        reference_number,
        netflix_customer,
        acknowledged_status,
        subscription_number,
    }
    .into_record(history)
    .map(Some)
}

fn decision_feed(conn: &Connection, query: &FeedQuery) -> StoreResult<FeedPage> {
    let mut stmt = conn.prepare_cached(&feed_sql()).map_err(from_sqlite)?;
    let rows = stmt
        .query_map(
            params![
                query.after.row,
                query.operator_id,
                query.from.unix(),
                query.to.unix(),
                i64::from(query.limit)
            ],
            // By position, in the order of `feed_sql`'s columns: a lookup by name costs
            // more than the rest of the row (the export reads millions).
            |r| {
                Ok(FeedRow {
                    commit: 0,
                    row: r.get(0)?,
                    number: r.get(1)?,
                    customer: r.get(2)?,
                    history: HistoryRow {
                        at: r.get(3)?,
                        event: r.get(4)?,
                        from_status: r.get(5)?,
                        to_status: r.get(6)?,
                        username: r.get(7)?,
                        request_id: r.get(8)?,
                        reference_number: r.get(9)?,
                        key_prefix: r.get(12)?,
                        via_console: r.get(13)?,
                        reason: None,
                    },
                    amount_minor: r.get(10)?,
                    currency: r.get(11)?,
                })
            },
        )
        .map_err(from_sqlite)?;
    let entries = rows
        .map(|row| row.map_err(from_sqlite)?.into_entry())
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(FeedPage {
        entries,
        held_back: false,
    })
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn charge_record(
        &self,
        operator_id: Option<i64>,
        number: &ChargeNumber,
    ) -> StoreResult<Option<ChargeRecord>> {
        self.readers
            .read(|conn| charge_record(conn, operator_id, number.as_str()))
    }

    async fn decision_feed(&self, query: &FeedQuery) -> StoreResult<FeedPage> {
        self.readers.read(|conn| decision_feed(conn, query))
    }
}

#[cfg(test)]
mod tests {
    use chargegate_core::AdminStore;

    use super::*;
    use crate::StoreOptions;

    #[tokio::test]
    async fn the_feed_walks_the_history_by_its_key_without_sorting() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("t.db"), &StoreOptions::default())
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let plan = store
            .readers
            .read(|conn| {
                let mut stmt = conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {}", feed_sql()))
                    .map_err(from_sqlite)?;
                let details = stmt
                    .query_map(params![0_i64, 1_i64, 0_i64, 1_i64, 10_i64], |r| {
                        r.get::<_, String>(3)
                    })
                    .map_err(from_sqlite)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(from_sqlite)?;
                Ok(details.join(" | "))
            })
            .expect("plan");
        assert!(
            plan.starts_with("SEARCH h USING INTEGER PRIMARY KEY (rowid>?)"),
            "{plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "sorted in memory: {plan}");
    }

    fn feed_plan(conn: &Connection, after: i64) -> StoreResult<String> {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", feed_sql()))
            .map_err(from_sqlite)?;
        let details = stmt
            .query_map(params![after, 1_i64, 0_i64, i64::MAX, 5000_i64], |r| {
                r.get::<_, String>(3)
            })
            .map_err(from_sqlite)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(from_sqlite)?;
        Ok(details.join(" | "))
    }

    /// SQLite is built with STAT4: after an `ANALYZE` (run by an operator, or kept in a
    /// restored copy) the planner weighs the bound cursor against the histogram, and near
    /// the end of the history it once chose to scan every charge and sort, making each page
    /// of a million-decision export cost a quarter of a second instead of a millisecond.
    #[tokio::test]
    async fn the_feed_keeps_its_plan_near_the_end_of_an_analysed_history() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.db");
        let store = SqliteStore::open(&path, &StoreOptions::default())
            .await
            .expect("open");
        store.migrate().await.expect("migrate");
        let raw = Connection::open(&path).expect("raw connection");
        raw.execute_batch(
            "INSERT INTO operators (id, code, name, local_currency, created_at) \
                 VALUES (1, 'op', 'op', 'EUR', 0); \
             INSERT INTO users (id, operator_id, username, password_hash, created_at) \
                 VALUES (1, 1, 'u', 'x', 0); \
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) \
             INSERT INTO charges (id, number, operator_id, customer_id, amount_minor, currency, \
                 local_amount_minor, local_currency, paid_through_date, status, initial_status, \
                 received_on, set_as_approved_on, set_as_declined_on) \
             SELECT i, 'A' || i, 1, 'c' || (i % 1000), 999, 'EUR', 999, 'EUR', '2026-12-31', \
                 iif(i % 2, 'DECLINED', 'APPROVED'), 'PENDING', i, iif(i % 2, NULL, i), \
                 iif(i % 2, i, NULL) FROM n; \
             INSERT INTO charge_history (charge_id, event, from_status, to_status, at, user_id, \
                 request_id, reference_number) \
             SELECT c.id, e.event, iif(e.k, 'PENDING', NULL), iif(e.k, c.status, 'PENDING'), \
                 c.id, iif(e.k, 1, NULL), iif(e.k, 'req-' || (c.id / 50), NULL), \
                 iif(e.k, 'R-' || c.id, NULL) \
             FROM charges c CROSS JOIN (SELECT 'import' AS event, 0 AS k \
                 UNION ALL SELECT 'accept', 1) e ORDER BY c.id, e.k; \
             ANALYZE;",
        )
        .expect("fill and analyse");
        let stat4: i64 = raw
            .query_row("SELECT count(*) FROM sqlite_stat4", [], |r| r.get(0))
            .expect("stat4 rows");
        assert!(
            stat4 > 0,
            "this SQLite has no STAT4 histogram to mislead it"
        );
        for after in [
            0, 200_000, 300_000, 360_000, 380_000, 390_000, 395_000, 399_000,
        ] {
            let plan = store
                .readers
                .read(move |conn| feed_plan(conn, after))
                .expect("plan");
            assert!(
                plan.starts_with("SEARCH h USING INTEGER PRIMARY KEY (rowid>?)"),
                "after {after}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "after {after}: {plan}");
        }
    }
}
