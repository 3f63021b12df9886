//! The console on PostgreSQL: fixed statements; each session change is one statement.

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
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PostgresStore, sql_err};
use crate::audit_rows::{IS_STATUS_CHANGE, status_counts};
use crate::console_rows::{CHARGE_COLUMNS, EventRow, HIT_COLUMNS, HitRow, SessionRow};
use crate::rows::{self, ChargeRow};

fn charge(r: &PgRow) -> StoreResult<Charge> {
    let row = (|| -> Result<ChargeRow<'_>, sqlx::Error> {
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
    })()
    .map_err(sql_err)?;
    row.into_charge()
}

fn hit(r: &PgRow) -> Result<HitRow, sqlx::Error> {
    Ok(HitRow {
        id: r.try_get(0)?,
        number: r.try_get(1)?,
        customer: r.try_get(2)?,
        netflix_customer: r.try_get(3)?,
        state: r.try_get(4)?,
        netflix_state: r.try_get(5)?,
        created_at: r.try_get(6)?,
    })
}

type Page = (SubscriptionHit, Vec<SubscriptionEvent>);

#[async_trait]
impl ConsoleStore for PostgresStore {
    async fn create_session(&self, session: &NewSession) -> StoreResult<()> {
        // One statement: forget sessions that ran out, store this one, note the login.
        sqlx::query(
            "WITH gone AS (DELETE FROM console_sessions WHERE expires_at <= $3), \
                  seen AS (UPDATE users SET last_login_at = $3 WHERE id = $2) \
             INSERT INTO console_sessions (hash, user_id, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $3, $4)",
        )
        .bind(&session.hash.0[..])
        .bind(session.user_id)
        .bind(session.created_at.unix())
        .bind(session.expires_at.unix())
        .execute(&self.pool)
        .await
        .map_err(sql_err)?;
        Ok(())
    }

    async fn session(&self, hash: &TokenHash) -> StoreResult<Option<SessionRecord>> {
        let found = sqlx::query(
            "SELECT s.user_id, u.username, u.operator_id, o.code, o.name, u.enabled, \
                    s.last_seen_at, s.expires_at \
             FROM console_sessions s JOIN users u ON u.id = s.user_id \
             JOIN operators o ON o.id = u.operator_id WHERE s.hash = $1",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_err)?;
        let Some(r) = found else {
            return Ok(None);
        };
        let row = (|| -> Result<SessionRow, sqlx::Error> {
            Ok(SessionRow {
                user_id: r.try_get(0)?,
                username: r.try_get(1)?,
                operator_id: r.try_get(2)?,
                operator_code: r.try_get(3)?,
                operator_name: r.try_get(4)?,
                enabled: r.try_get(5)?,
                last_seen_at: r.try_get(6)?,
                expires_at: r.try_get(7)?,
            })
        })()
        .map_err(sql_err)?;
        row.into_record().map(Some)
    }

    async fn touch_session(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "UPDATE console_sessions SET last_seen_at = greatest(last_seen_at, $2) \
             WHERE hash = $1",
        )
        .bind(&hash.0[..])
        .bind(now.unix())
        .execute(&self.pool)
        .await
        .map_err(sql_err)?;
        Ok(())
    }

    async fn end_session(&self, hash: &TokenHash) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE hash = $1")
            .bind(&hash.0[..])
            .execute(&self.pool)
            .await
            .map_err(sql_err)?;
        Ok(())
    }

    async fn overview(&self, operator_id: i64, now: Timestamp) -> StoreResult<Overview> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        let counts: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM charges WHERE operator_id = $1 GROUP BY status",
        )
        .bind(operator_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_err)?;
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT min(received_on) FROM charges WHERE operator_id = $1 AND status = 'PENDING'",
        )
        .bind(operator_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(sql_err)?;
        let today = day_of(now);
        let since = (today - (OVERVIEW_DAYS - 1)) * 86_400;
        let found: Vec<(i64, String, i64)> = sqlx::query_as(&format!(
            "SELECT h.at / 86400, h.to_status, count(*) \
             FROM charge_history h JOIN charges c ON c.id = h.charge_id \
             WHERE c.operator_id = $1 AND h.at >= $2 AND {IS_STATUS_CHANGE} \
             GROUP BY 1, 2"
        ))
        .bind(operator_id)
        .bind(since)
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_err)?;
        let (waiting, oldest_event): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), min(occurred_at) FROM outbox \
             WHERE operator_id = $1 AND delivered_at IS NULL",
        )
        .bind(operator_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(sql_err)?;
        tx.commit().await.map_err(sql_err)?;
        let found = found
            .into_iter()
            .map(|(day, status, n)| {
                Ok((day, rows::status(&status)?, u64::try_from(n).unwrap_or(0)))
            })
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

    async fn search_charges(&self, q: &ChargeSearch) -> StoreResult<Vec<Charge>> {
        let found = sqlx::query(&format!(
            "SELECT {CHARGE_COLUMNS} FROM charges \
             WHERE operator_id = $1 AND ($2::boolean IS NULL OR (status = 'PENDING') = $2) \
               AND ($3::text IS NULL OR customer_id = $3) \
               AND ($4::text IS NULL OR number = $4) \
             ORDER BY received_on DESC, number DESC LIMIT $5 OFFSET $6"
        ))
        .bind(q.operator_id)
        .bind(q.group.map(|g| g == StatusGroup::NotProcessed))
        .bind(q.customer.as_ref().map(chargegate_core::CustomerId::as_str))
        .bind(q.number.as_ref().map(chargegate_core::ChargeNumber::as_str))
        .bind(i64::from(q.limit))
        .bind(i64::try_from(q.offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        found.iter().map(charge).collect()
    }

    async fn search_subscriptions(
        &self,
        operator_id: i64,
        text: &str,
        limit: u32,
    ) -> StoreResult<Vec<SubscriptionHit>> {
        let found = sqlx::query(&format!(
            "SELECT {HIT_COLUMNS} FROM subscriptions \
             WHERE operator_id = $1 \
               AND ($2 = '' OR customer_id = $2 OR netflix_customer_id = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        ))
        .bind(operator_id)
        .bind(text)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        found
            .iter()
            .map(|r| hit(r).map_err(sql_err)?.into_hit())
            .collect()
    }

    async fn subscription_page(&self, operator_id: i64, number: &str) -> StoreResult<Option<Page>> {
        let found = sqlx::query(&format!(
            "SELECT {HIT_COLUMNS} FROM subscriptions WHERE operator_id = $1 AND number = $2"
        ))
        .bind(operator_id)
        .bind(number)
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_err)?;
        let Some(found) = found else {
            return Ok(None);
        };
        let found = hit(&found).map_err(sql_err)?;
        let events = sqlx::query(
            "SELECT h.at, h.event, h.from_state, h.to_state, u.username, c.number, h.via_console \
             FROM subscription_history h LEFT JOIN users u ON u.id = h.user_id \
             LEFT JOIN charges c ON c.id = h.charge_id \
             WHERE h.subscription_id = $1 ORDER BY h.id",
        )
        .bind(found.id)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        let events = events
            .iter()
            .map(|r| {
                let row = (|| -> Result<EventRow, sqlx::Error> {
                    Ok(EventRow {
                        at: r.try_get(0)?,
                        event: r.try_get(1)?,
                        from_state: r.try_get(2)?,
                        to_state: r.try_get(3)?,
                        username: r.try_get(4)?,
                        charge_number: r.try_get(5)?,
                        via_console: r.try_get(6)?,
                    })
                })()
                .map_err(sql_err)?;
                row.into_event()
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Some((found.into_hit()?, events)))
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
