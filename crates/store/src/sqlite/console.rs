//! The console on SQLite: sessions are units of work on the writer thread; the pages'
//! reads run on reader connections.

use async_trait::async_trait;
use chargegate_core::accounts::{AccountAdmin, UserSummary};
use chargegate_core::apikey::ApiKeyInfo;
use chargegate_core::charge::{Charge, StatusGroup};
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::OutboxBacklog;
use chargegate_core::console::{
    ChargeSearch, ConsoleStore, NewSession, OVERVIEW_DAYS, Overview, SessionRecord,
    SubscriptionEvent, SubscriptionHit, day_of, lay_out_days,
};
use chargegate_core::store::StoreResult;
use chargegate_core::subscription::SubscriptionsAdmin;
use chargegate_core::token::TokenHash;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::audit_rows::{IS_STATUS_CHANGE, status_counts};
use crate::console_rows::{CHARGE_COLUMNS, EventRow, HIT_COLUMNS, HitRow, SessionRow};
use crate::error::from_sqlite;
use crate::rows::{self, ChargeRow};

fn charge(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoreResult<Charge>> {
    Ok(ChargeRow {
        number: r.get(0)?,
        customer: r.get(1)?,
        amount_minor: r.get(2)?,
        currency: r.get_ref(3)?.as_str()?,
        local_amount_minor: r.get(4)?,
        local_currency: r.get_ref(5)?.as_str()?,
        paid_through_date: r.get_ref(6)?.as_str()?,
        status: r.get_ref(7)?.as_str()?,
        received_on: r.get(8)?,
        set_as_approved_on: r.get(9)?,
        set_as_declined_on: r.get(10)?,
        set_as_bad_request_on: r.get(11)?,
        set_as_rejected_on: r.get(12)?,
    }
    .into_charge())
}

fn hit(r: &rusqlite::Row<'_>) -> rusqlite::Result<HitRow> {
    Ok(HitRow {
        id: r.get(0)?,
        number: r.get(1)?,
        customer: r.get(2)?,
        netflix_customer: r.get(3)?,
        state: r.get(4)?,
        netflix_state: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn overview(conn: &Connection, operator_id: i64, now: Timestamp) -> StoreResult<Overview> {
    let tx = conn.unchecked_transaction().map_err(from_sqlite)?;
    let counts = tx
        .prepare_cached(
            "SELECT status, count(*) FROM charges WHERE operator_id = ?1 GROUP BY status",
        )
        .and_then(|mut s| {
            s.query_map([operator_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<(String, i64)>>>()
        })
        .map_err(from_sqlite)?;
    let oldest: Option<i64> = tx
        .prepare_cached(
            "SELECT min(received_on) FROM charges WHERE operator_id = ?1 AND status = 'PENDING'",
        )
        .and_then(|mut s| s.query_row([operator_id], |r| r.get(0)))
        .map_err(from_sqlite)?;
    let today = day_of(now);
    let since = (today - (OVERVIEW_DAYS - 1)) * 86_400;
    let found = tx
        .prepare_cached(&format!(
            "SELECT h.at / 86400, h.to_status, count(*) \
             FROM charge_history h JOIN charges c ON c.id = h.charge_id \
             WHERE c.operator_id = ?1 AND h.at >= ?2 AND {IS_STATUS_CHANGE} \
             GROUP BY 1, 2"
        ))
        .and_then(|mut s| {
            s.query_map(params![operator_id, since], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<rusqlite::Result<Vec<(i64, String, i64)>>>()
        })
        .map_err(from_sqlite)?;
    let (waiting, oldest_event): (i64, Option<i64>) = tx
        .prepare_cached(
            "SELECT count(*), min(occurred_at) FROM outbox \
             WHERE operator_id = ?1 AND delivered_at IS NULL",
        )
        .and_then(|mut s| s.query_row([operator_id], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(from_sqlite)?;
    tx.commit().map_err(from_sqlite)?;
    let found = found
        .into_iter()
        .map(|(day, status, n)| Ok((day, rows::status(&status)?, u64::try_from(n).unwrap_or(0))))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Overview {
        counts: status_counts(counts)?,
        oldest_pending: rows::opt_timestamp(oldest)?,
        days: lay_out_days(today, &found),
        outbox: OutboxBacklog {
            waiting: u64::try_from(waiting).unwrap_or(0),
            oldest: rows::opt_timestamp(oldest_event)?,
        },
    })
}

fn search_charges(conn: &Connection, q: &ChargeSearch) -> StoreResult<Vec<Charge>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {CHARGE_COLUMNS} FROM charges \
             WHERE operator_id = ?1 AND (?2 IS NULL OR (status = 'PENDING') = ?2) \
               AND (?3 IS NULL OR customer_id = ?3) AND (?4 IS NULL OR number = ?4) \
             ORDER BY received_on DESC, number DESC LIMIT ?5 OFFSET ?6"
        ))
        .map_err(from_sqlite)?;
    let rows = stmt
        .query_map(
            params![
                q.operator_id,
                q.group.map(|g| g == StatusGroup::NotProcessed),
                q.customer.as_ref().map(chargegate_core::CustomerId::as_str),
                q.number.as_ref().map(chargegate_core::ChargeNumber::as_str),
                i64::from(q.limit),
                i64::try_from(q.offset).unwrap_or(i64::MAX),
            ],
            charge,
        )
        .map_err(from_sqlite)?;
    rows.map(|r| r.map_err(from_sqlite)?).collect()
}

fn search_subscriptions(
    conn: &Connection,
    operator_id: i64,
    text: &str,
    limit: u32,
) -> StoreResult<Vec<SubscriptionHit>> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {HIT_COLUMNS} FROM subscriptions \
             WHERE operator_id = ?1 \
               AND (?2 = '' OR customer_id = ?2 OR netflix_customer_id = ?2) \
             ORDER BY created_at DESC, id DESC LIMIT ?3"
        ))
        .map_err(from_sqlite)?;
    let rows = stmt
        .query_map(params![operator_id, text, i64::from(limit)], hit)
        .map_err(from_sqlite)?;
    rows.map(|r| r.map_err(from_sqlite)?.into_hit()).collect()
}

type Page = (SubscriptionHit, Vec<SubscriptionEvent>);

fn subscription_page(
    conn: &Connection,
    operator_id: i64,
    number: &str,
) -> StoreResult<Option<Page>> {
    let tx = conn.unchecked_transaction().map_err(from_sqlite)?;
    let found = tx
        .prepare_cached(&format!(
            "SELECT {HIT_COLUMNS} FROM subscriptions WHERE operator_id = ?1 AND number = ?2"
        ))
        .and_then(|mut s| s.query_row(params![operator_id, number], hit).optional())
        .map_err(from_sqlite)?;
    let Some(found) = found else {
        return Ok(None);
    };
    let events = tx
        .prepare_cached(
            "SELECT h.at, h.event, h.from_state, h.to_state, u.username, c.number, h.via_console \
             FROM subscription_history h LEFT JOIN users u ON u.id = h.user_id \
             LEFT JOIN charges c ON c.id = h.charge_id \
             WHERE h.subscription_id = ?1 ORDER BY h.id",
        )
        .and_then(|mut s| {
            s.query_map([found.id], |r| {
                Ok(EventRow {
                    at: r.get(0)?,
                    event: r.get(1)?,
                    from_state: r.get(2)?,
                    to_state: r.get(3)?,
                    username: r.get(4)?,
                    charge_number: r.get(5)?,
                    via_console: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(from_sqlite)?;
    tx.commit().map_err(from_sqlite)?;
    let events = events
        .into_iter()
        .map(EventRow::into_event)
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some((found.into_hit()?, events)))
}

#[async_trait]
impl ConsoleStore for SqliteStore {
    async fn create_session(&self, session: &NewSession) -> StoreResult<()> {
        let session = session.clone();
        self.writer
            .write(1, move |conn| {
                let now = session.created_at.unix();
                conn.prepare_cached("DELETE FROM console_sessions WHERE expires_at <= ?1")
                    .and_then(|mut s| s.execute([now]))
                    .map_err(from_sqlite)?;
                conn.prepare_cached(
                    "INSERT INTO console_sessions (hash, user_id, created_at, last_seen_at, \
                                                   expires_at) VALUES (?1, ?2, ?3, ?3, ?4)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        &session.hash.0[..],
                        session.user_id,
                        now,
                        session.expires_at.unix()
                    ])
                })
                .map_err(from_sqlite)?;
                conn.prepare_cached("UPDATE users SET last_login_at = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![session.user_id, now]))
                    .map_err(from_sqlite)?;
                Ok(())
            })
            .await
    }

    async fn session(&self, hash: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT s.user_id, u.username, u.operator_id, o.code, o.name, u.enabled, \
                        s.last_seen_at, s.expires_at \
                 FROM console_sessions s JOIN users u ON u.id = s.user_id \
                 JOIN operators o ON o.id = u.operator_id WHERE s.hash = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&hash.0[..]], |r| {
                    Ok(SessionRow {
                        user_id: r.get(0)?,
                        username: r.get(1)?,
                        operator_id: r.get(2)?,
                        operator_code: r.get(3)?,
                        operator_name: r.get(4)?,
                        enabled: r.get(5)?,
                        last_seen_at: r.get(6)?,
                        expires_at: r.get(7)?,
                    })
                })
                .optional()
            })
            .map_err(from_sqlite)?
            .map(SessionRow::into_record)
            .transpose()
        })
    }

    async fn touch_session(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<()> {
        let hash = *hash;
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "UPDATE console_sessions SET last_seen_at = max(last_seen_at, ?2) \
                     WHERE hash = ?1",
                )
                .and_then(|mut s| s.execute(params![&hash.0[..], now.unix()]))
                .map(drop)
                .map_err(from_sqlite)
            })
            .await
    }

    async fn end_session(&self, hash: &TokenHash) -> StoreResult<()> {
        let hash = *hash;
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached("DELETE FROM console_sessions WHERE hash = ?1")
                    .and_then(|mut s| s.execute([&hash.0[..]]))
                    .map(drop)
                    .map_err(from_sqlite)
            })
            .await
    }

    async fn overview(&self, operator_id: i64, now: Timestamp) -> StoreResult<Overview> {
        self.readers.read(|conn| overview(conn, operator_id, now))
    }

    async fn search_charges(&self, query: &ChargeSearch) -> StoreResult<Vec<Charge>> {
        self.readers.read(|conn| search_charges(conn, query))
    }

    async fn search_subscriptions(
        &self,
        operator_id: i64,
        text: &str,
        limit: u32,
    ) -> StoreResult<Vec<SubscriptionHit>> {
        self.readers
            .read(|conn| search_subscriptions(conn, operator_id, text, limit))
    }

    async fn subscription_page(&self, operator_id: i64, number: &str) -> StoreResult<Option<Page>> {
        self.readers
            .read(|conn| subscription_page(conn, operator_id, number))
    }

    async fn operator_people(
        &self,
        operator_id: i64,
    ) -> StoreResult<(Vec<UserSummary>, Vec<ApiKeyInfo>)> {
        let users = AccountAdmin::list_users(self, Some(operator_id)).await?;
        let keys = SubscriptionsAdmin::api_keys(self, Some(operator_id)).await?;
        Ok((users, keys))
    }
}
