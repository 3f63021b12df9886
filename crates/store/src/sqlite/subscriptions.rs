//! Subscriptions, promotions and web API keys on SQLite. Writes are one unit of work each
//! on the writer thread (so one transaction, `BEGIN IMMEDIATE`); reads run on reader
//! connections.

use async_trait::async_trait;
use chargegate_core::apikey::{ApiKeyInfo, KeyHash, KeyLogin, NewApiKey, RevokeOutcome};
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::EventType;
use chargegate_core::store::{StoreError, StoreResult};
use chargegate_core::subscription::{
    Actor, CreateOutcome, CreatePlan, LiveSubscription, NewPromotion, NewSubscription, Promotion,
    ShowOutcome, ShowQuery, StateChange, StateRequest, Subscription, Subscriptions,
    SubscriptionsAdmin, plan_create,
};
use chargegate_core::text::OperatorCode;
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use super::cancel::subscription_event;
use crate::error::from_sqlite;
use crate::subscription_rows::{
    KeyRow, PromotionRow, SubscriptionRow, operator_code, price, subscription_number,
};

#[allow(clippy::too_many_arguments)]
fn history(
    conn: &Connection,
    subscription_id: i64,
    event: &str,
    from: Option<&str>,
    to: &str,
    at: Timestamp,
    actor: &Actor,
    promotion_id: Option<i64>,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO subscription_history (subscription_id, event, from_state, to_state, at, \
                                           user_id, key_id, request_id, promotion_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            subscription_id,
            event,
            from,
            to,
            at.unix(),
            actor.user_id,
            actor.key_id,
            actor.request_id,
            promotion_id
        ])
    })
    .map(|_| ())
    .map_err(from_sqlite)
}

fn create(conn: &Connection, new: &NewSubscription) -> StoreResult<CreateOutcome> {
    let live = conn
        .prepare_cached(
            "SELECT id, number, netflix_customer_id IS NOT NULL AS linked, life_cycle_state \
             FROM subscriptions \
             WHERE operator_id = ?1 AND customer_id = ?2 AND life_cycle_state <> 'CANCELLED'",
        )
        .and_then(|mut s| {
            s.query_row(params![new.operator_id, new.customer.as_str()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .optional()
        })
        .map_err(from_sqlite)?;
    let promotion = match &new.promotion {
        None => None,
        Some(code) => {
            let found = conn
                .prepare_cached(
                    "SELECT id FROM promotions WHERE operator_id = ?1 AND code = ?2 \
                       AND effective_from <= ?3 AND (expires_on IS NULL OR expires_on > ?3)",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![new.operator_id, code.as_str(), new.at.unix()],
                        |r| r.get::<_, i64>(0),
                    )
                    .optional()
                })
                .map_err(from_sqlite)?;
            match found {
                Some(id) => Some(id),
                None => return Ok(CreateOutcome::UnknownPromotion),
            }
        }
    };
    let plan = plan_create(live.as_ref().map(|(id, _, linked, _)| LiveSubscription {
        id: *id,
        linked: *linked,
    }));
    let (id, state, outcome) = match (plan, live) {
        (CreatePlan::Exists, _) => return Ok(CreateOutcome::Exists),
        (CreatePlan::Renew { subscription_id }, Some((_, number, _, state))) => {
            conn.prepare_cached(
                "UPDATE subscriptions SET netflix_token_hash = ?2, netflix_token_expires_at = ?3 \
                 WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.execute(params![
                    subscription_id,
                    &new.token_hash.0[..],
                    new.token_expires_at.unix()
                ])
            })
            .map_err(from_sqlite)?;
            history(
                conn,
                subscription_id,
                "token_renewed",
                Some(&state),
                &state,
                new.at,
                &new.actor,
                None,
            )?;
            (subscription_id, state, CreateOutcome::Renewed { number })
        }
        _ => {
            let id: i64 = conn
                .query_row(
                    "SELECT COALESCE(max(id), 0) + 1 FROM subscriptions",
                    [],
                    |r| r.get(0),
                )
                .map_err(from_sqlite)?;
            let number = subscription_number(id);
            let d = &new.details;
            conn.prepare_cached(
                "INSERT INTO subscriptions (id, number, operator_id, customer_id, \
                        life_cycle_state, netflix_state, channel, customer_first_name, \
                        customer_last_name, customer_address, customer_email, customer_phone, \
                        netflix_token_hash, netflix_token_expires_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, 'EFFECTIVE', 'NOT_EFFECTIVE', ?5, ?6, ?7, ?8, ?9, ?10, \
                         ?11, ?12, ?13)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    id,
                    number,
                    new.operator_id,
                    new.customer.as_str(),
                    new.channel.map(|c| c.as_str()),
                    d.first_name,
                    d.last_name,
                    d.address,
                    d.email,
                    d.phone,
                    &new.token_hash.0[..],
                    new.token_expires_at.unix(),
                    new.at.unix()
                ])
            })
            .map_err(from_sqlite)?;
            history(
                conn,
                id,
                "created",
                None,
                "EFFECTIVE",
                new.at,
                &new.actor,
                None,
            )?;
            subscription_event(conn, id, EventType::SubscriptionCreated, new.at.unix())?;
            (
                id,
                "EFFECTIVE".to_owned(),
                CreateOutcome::Created { number },
            )
        }
    };
    if let Some(promotion_id) = promotion {
        let redeemed = conn
            .prepare_cached(
                "INSERT INTO subscription_promotions (subscription_id, promotion_id, redeemed_at) \
                 VALUES (?1, ?2, ?3) ON CONFLICT (subscription_id, promotion_id) DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![id, promotion_id, new.at.unix()]))
            .map_err(from_sqlite)?;
        if redeemed > 0 {
            history(
                conn,
                id,
                "promotion_redeemed",
                Some(&state),
                &state,
                new.at,
                &new.actor,
                Some(promotion_id),
            )?;
        }
    }
    Ok(outcome)
}

fn set_state(conn: &Connection, request: &StateRequest) -> StoreResult<StateChange> {
    let live = conn
        .prepare_cached(
            "SELECT id, life_cycle_state FROM subscriptions \
             WHERE operator_id = ?1 AND customer_id = ?2 AND life_cycle_state <> 'CANCELLED'",
        )
        .and_then(|mut s| {
            s.query_row(
                params![request.operator_id, request.customer.as_str()],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )
            .optional()
        })
        .map_err(from_sqlite)?;
    let Some((id, state)) = live else {
        return Ok(StateChange::NotFound);
    };
    let target = request.target.as_str();
    if state == target {
        return Ok(StateChange::Unchanged);
    }
    conn.prepare_cached("UPDATE subscriptions SET life_cycle_state = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, target]))
        .map_err(from_sqlite)?;
    let (event, kind) = match request.target {
        chargegate_core::subscription::LifeCycleState::NotEffective => {
            ("suspended", EventType::SubscriptionSuspended)
        }
        _ => ("unsuspended", EventType::SubscriptionUnsuspended),
    };
    history(
        conn,
        id,
        event,
        Some(&state),
        target,
        request.at,
        &request.actor,
        None,
    )?;
    subscription_event(conn, id, kind, request.at.unix())?;
    Ok(StateChange::Changed)
}

fn show(conn: &Connection, query: &ShowQuery) -> StoreResult<ShowOutcome> {
    let customer: String = match (&query.customer, &query.netflix_customer) {
        (Some(customer), Some(pai)) => {
            let same: bool = conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE operator_id = ?1 \
                       AND customer_id = ?2 AND netflix_customer_id = ?3)",
                )
                .and_then(|mut s| {
                    s.query_row(params![query.operator_id, customer.as_str(), pai], |r| {
                        r.get(0)
                    })
                })
                .map_err(from_sqlite)?;
            if !same {
                return Ok(ShowOutcome::Mismatch);
            }
            customer.as_str().to_owned()
        }
        (Some(customer), None) => customer.as_str().to_owned(),
        (None, Some(pai)) => {
            let found = conn
                .prepare_cached(
                    "SELECT customer_id FROM subscriptions \
                     WHERE operator_id = ?1 AND netflix_customer_id = ?2 \
                     ORDER BY life_cycle_state = 'CANCELLED', created_at DESC, id DESC LIMIT 1",
                )
                .and_then(|mut s| {
                    s.query_row(params![query.operator_id, pai], |r| r.get::<_, String>(0))
                        .optional()
                })
                .map_err(from_sqlite)?;
            match found {
                Some(c) => c,
                None => return Ok(ShowOutcome::Found(Vec::new())),
            }
        }
        (None, None) => return Ok(ShowOutcome::Found(Vec::new())),
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, number, customer_id, netflix_customer_id, life_cycle_state, \
                    netflix_state, created_at, cancelled_at \
             FROM subscriptions WHERE operator_id = ?1 AND customer_id = ?2 \
             ORDER BY life_cycle_state = 'CANCELLED', created_at DESC, id DESC",
        )
        .map_err(from_sqlite)?;
    let rows = stmt
        .query_map(params![query.operator_id, customer], |r| {
            Ok(SubscriptionRow {
                id: r.get("id")?,
                number: r.get("number")?,
                customer: r.get("customer_id")?,
                netflix_customer: r.get("netflix_customer_id")?,
                state: r.get("life_cycle_state")?,
                netflix_state: r.get("netflix_state")?,
                created_at: r.get("created_at")?,
                cancelled_at: r.get("cancelled_at")?,
            })
        })
        .map_err(from_sqlite)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(from_sqlite)?;
    let mut prices = conn
        .prepare_cached(
            "SELECT amount_minor, currency, max(received_on) AS newest FROM charges \
             WHERE subscription_id = ?1 AND received_on >= ?2 \
             GROUP BY amount_minor, currency ORDER BY newest DESC, currency, amount_minor",
        )
        .map_err(from_sqlite)?;
    let mut promotions = conn
        .prepare_cached(
            "SELECT p.code, p.name, p.description, p.effective_from, p.expires_on \
             FROM subscription_promotions sp JOIN promotions p ON p.id = sp.promotion_id \
             WHERE sp.subscription_id = ?1 AND sp.redeemed_at >= ?2 \
             ORDER BY sp.redeemed_at DESC, p.code",
        )
        .map_err(from_sqlite)?;
    let mut found: Vec<Subscription> = Vec::with_capacity(rows.len());
    for row in rows {
        let (id, mut subscription) = row.into_subscription()?;
        let since = query.since.unix();
        for p in prices
            .query_map(params![id, since], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(from_sqlite)?
        {
            let (minor, currency) = p.map_err(from_sqlite)?;
            subscription.prices.push(price(minor, &currency)?);
        }
        for p in promotions
            .query_map(params![id, since], promotion_row)
            .map_err(from_sqlite)?
        {
            subscription
                .promotions
                .push(p.map_err(from_sqlite)?.into_promotion()?);
        }
        found.push(subscription);
    }
    Ok(ShowOutcome::Found(found))
}

fn promotion_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PromotionRow> {
    Ok(PromotionRow {
        code: r.get("code")?,
        name: r.get("name")?,
        description: r.get("description")?,
        effective_from: r.get("effective_from")?,
        expires_on: r.get("expires_on")?,
    })
}

#[async_trait]
impl Subscriptions for SqliteStore {
    async fn key_login(&self, hash: &KeyHash) -> StoreResult<Option<KeyLogin>> {
        self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT k.id, k.user_id, u.operator_id, k.revoked_at IS NOT NULL AS revoked, \
                        u.enabled, u.username, o.code \
                 FROM api_keys k JOIN users u ON u.id = k.user_id \
                 JOIN operators o ON o.id = u.operator_id WHERE k.hash = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&hash.0[..]], |r| {
                    Ok(KeyLogin {
                        key_id: r.get(0)?,
                        user_id: r.get(1)?,
                        operator_id: r.get(2)?,
                        revoked: r.get(3)?,
                        user_enabled: r.get(4)?,
                        username: r.get(5)?,
                        operator_code: r.get(6)?,
                    })
                })
                .optional()
            })
            .map_err(from_sqlite)
        })
    }

    async fn create_subscription(&self, new: &NewSubscription) -> StoreResult<CreateOutcome> {
        let new = new.clone();
        self.writer.write(1, move |conn| create(conn, &new)).await
    }

    async fn show_subscriptions(&self, query: &ShowQuery) -> StoreResult<ShowOutcome> {
        self.readers.read(|conn| show(conn, query))
    }

    async fn set_subscription_state(&self, request: &StateRequest) -> StoreResult<StateChange> {
        let request = request.clone();
        self.writer
            .write(1, move |conn| set_state(conn, &request))
            .await
    }

    async fn effective_promotions(
        &self,
        operator_id: i64,
        now: Timestamp,
    ) -> StoreResult<Vec<Promotion>> {
        self.readers.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT code, name, description, effective_from, expires_on FROM promotions \
                     WHERE operator_id = ?1 AND effective_from <= ?2 \
                       AND (expires_on IS NULL OR expires_on > ?2) \
                     ORDER BY effective_from, code",
                )
                .map_err(from_sqlite)?;
            let rows = stmt
                .query_map(params![operator_id, now.unix()], promotion_row)
                .map_err(from_sqlite)?;
            rows.map(|r| r.map_err(from_sqlite)?.into_promotion())
                .collect()
        })
    }
}

#[async_trait]
impl SubscriptionsAdmin for SqliteStore {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<()> {
        let key = key.clone();
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "INSERT INTO api_keys (operator_id, user_id, prefix, hash, name, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key.operator_id,
                        key.user_id,
                        key.prefix,
                        &key.hash.0[..],
                        key.name,
                        key.created_at.unix()
                    ])
                })
                .map(|_| ())
                .map_err(from_sqlite)
            })
            .await
    }

    async fn api_keys(&self, operator_id: Option<i64>) -> StoreResult<Vec<ApiKeyInfo>> {
        self.readers.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT k.prefix, o.code, u.username, k.name, k.created_at, k.revoked_at \
                     FROM api_keys k JOIN users u ON u.id = k.user_id \
                     JOIN operators o ON o.id = k.operator_id \
                     WHERE ?1 IS NULL OR k.operator_id = ?1 ORDER BY k.id",
                )
                .map_err(from_sqlite)?;
            let rows = stmt
                .query_map([operator_id], |r| {
                    Ok(KeyRow {
                        prefix: r.get(0)?,
                        operator: r.get(1)?,
                        username: r.get(2)?,
                        name: r.get(3)?,
                        created_at: r.get(4)?,
                        revoked_at: r.get(5)?,
                    })
                })
                .map_err(from_sqlite)?;
            rows.map(|r| r.map_err(from_sqlite)?.into_info()).collect()
        })
    }

    async fn revoke_api_key(&self, prefix: &str, now: Timestamp) -> StoreResult<RevokeOutcome> {
        let prefix = prefix.to_owned();
        self.writer
            .write(1, move |conn| {
                let id = match revoke_by_prefix(conn, "api_keys", &prefix, now)? {
                    Ok(id) => id,
                    Err(outcome) => return Ok(outcome),
                };
                let tokens = conn
                    .prepare_cached(
                        "UPDATE tokens SET revoked_at = ?2 \
                         WHERE key_id = ?1 AND revoked_at IS NULL",
                    )
                    .and_then(|mut s| s.execute(params![id, now.unix()]))
                    .map_err(from_sqlite)?;
                Ok(RevokeOutcome::Revoked {
                    tokens: tokens as u64,
                })
            })
            .await
    }

    async fn create_promotion(&self, new: &NewPromotion) -> StoreResult<()> {
        let new = new.clone();
        self.writer
            .write(1, move |conn| {
                let p = &new.promotion;
                conn.prepare_cached(
                    "INSERT INTO promotions (operator_id, code, name, description, \
                                             effective_from, expires_on, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        new.operator_id,
                        p.code.as_str(),
                        p.name,
                        p.description,
                        p.effective_from.unix(),
                        p.expires_on.map(|t| t.unix()),
                        new.created_at.unix()
                    ])
                })
                .map(|_| ())
                .map_err(|e| match from_sqlite(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("promotion {} already exists", p.code))
                    }
                    other => other,
                })
            })
            .await
    }

    async fn promotions(
        &self,
        operator_id: Option<i64>,
    ) -> StoreResult<Vec<(OperatorCode, Promotion)>> {
        self.readers.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT o.code AS operator, p.code, p.name, p.description, \
                            p.effective_from, p.expires_on \
                     FROM promotions p JOIN operators o ON o.id = p.operator_id \
                     WHERE ?1 IS NULL OR p.operator_id = ?1 \
                     ORDER BY o.code, p.effective_from, p.code",
                )
                .map_err(from_sqlite)?;
            let rows = stmt
                .query_map([operator_id], |r| {
                    Ok((r.get::<_, String>("operator")?, promotion_row(r)?))
                })
                .map_err(from_sqlite)?;
            rows.map(|r| {
                let (operator, row) = r.map_err(from_sqlite)?;
                Ok((operator_code(operator)?, row.into_promotion()?))
            })
            .collect()
        })
    }
}

/// Revokes the one key of `table` (`api_keys` or `connector_keys`) with this prefix: its id
/// once revoked, or why nothing was (no such key, several share the prefix, already revoked).
pub(super) fn revoke_by_prefix(
    conn: &Connection,
    table: &'static str,
    prefix: &str,
    now: Timestamp,
) -> StoreResult<Result<i64, RevokeOutcome>> {
    let keys = conn
        .prepare_cached(&format!(
            "SELECT id, revoked_at FROM {table} WHERE prefix = ?1"
        ))
        .and_then(|mut stmt| {
            stmt.query_map([prefix], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(from_sqlite)?;
    let (id, revoked_at) = match keys.as_slice() {
        [] => return Ok(Err(RevokeOutcome::NotFound)),
        [one] => *one,
        many => return Ok(Err(RevokeOutcome::Ambiguous(many.len()))),
    };
    if revoked_at.is_some() {
        return Ok(Err(RevokeOutcome::AlreadyRevoked));
    }
    conn.prepare_cached(&format!("UPDATE {table} SET revoked_at = ?2 WHERE id = ?1"))
        .and_then(|mut s| s.execute(params![id, now.unix()]))
        .map_err(from_sqlite)?;
    Ok(Ok(id))
}
