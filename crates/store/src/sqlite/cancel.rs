//! Cancelling a subscription through one of its charges (a decline, or Netflix's verdict)
//! and queueing a subscription's change for the Netflix side: parts of other units of work,
//! shared by the batch, the connector and the subscription writes.

use chargegate_core::batch::Batch;
use chargegate_core::connector::EventType;
use chargegate_core::store::StoreResult;
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::from_sqlite;

/// Who cancels a subscription through one of its charges: a user's decline, or the
/// connector's verdict.
pub(super) struct Canceller<'a> {
    pub at: i64,
    pub user_id: Option<i64>,
    pub key_id: Option<i64>,
    pub connector_key_id: Option<i64>,
    pub request_id: &'a str,
    /// A person decided in the console.
    pub via_console: bool,
}

/// Cancels the live subscription charge `charge_id` belongs to, if any, with its history
/// row and its outbox event: part of a decline's unit of work.
pub(super) fn cancel_for_charge(
    conn: &Connection,
    charge_id: i64,
    batch: &Batch,
) -> StoreResult<()> {
    cancel_through_charge(
        conn,
        charge_id,
        &Canceller {
            at: batch.at.unix(),
            user_id: Some(batch.user_id),
            key_id: batch.key_id,
            connector_key_id: None,
            request_id: &batch.request_id,
            via_console: batch.via_console,
        },
    )
}

pub(super) fn cancel_through_charge(
    conn: &Connection,
    charge_id: i64,
    who: &Canceller<'_>,
) -> StoreResult<()> {
    let live = conn
        .prepare_cached(
            "SELECT s.id, s.life_cycle_state FROM charges c \
             JOIN subscriptions s ON s.id = c.subscription_id \
             WHERE c.id = ?1 AND s.life_cycle_state <> 'CANCELLED'",
        )
        .and_then(|mut s| {
            s.query_row([charge_id], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .optional()
        })
        .map_err(from_sqlite)?;
    let Some((subscription_id, state)) = live else {
        return Ok(());
    };
    conn.prepare_cached(
        "INSERT INTO subscription_history (subscription_id, event, from_state, to_state, at, \
                                           user_id, key_id, request_id, charge_id, \
                                           connector_key_id, via_console) \
         VALUES (?1, 'cancelled', ?2, 'CANCELLED', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            subscription_id,
            state,
            who.at,
            who.user_id,
            who.key_id,
            who.request_id,
            charge_id,
            who.connector_key_id,
            who.via_console
        ])
    })
    .map_err(from_sqlite)?;
    conn.prepare_cached(
        "UPDATE subscriptions SET life_cycle_state = 'CANCELLED', cancelled_at = ?2, \
                netflix_token_hash = NULL, netflix_token_expires_at = NULL \
         WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![subscription_id, who.at]))
    .map_err(from_sqlite)?;
    subscription_event(
        conn,
        subscription_id,
        EventType::SubscriptionCancelled,
        who.at,
    )
}

/// Queues a subscription's change for the Netflix side, with the states it has now (right
/// after the change, in the change's own transaction).
pub(super) fn subscription_event(
    conn: &Connection,
    subscription_id: i64,
    kind: EventType,
    at: i64,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO outbox (operator_id, type, occurred_at, subscription_id, life_cycle_state, \
                             netflix_state, netflix_customer_id) \
         SELECT operator_id, ?2, ?3, id, life_cycle_state, netflix_state, netflix_customer_id \
         FROM subscriptions WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![subscription_id, kind.as_str(), at]))
    .map(|_| ())
    .map_err(from_sqlite)
}
