//! Subscriptions, promotions and web API keys on PostgreSQL. Each write is one
//! transaction; a create that loses a race for a customer's one live subscription (a
//! unique violation) starts over and then renews the winner's subscription.

use std::collections::HashMap;

use async_trait::async_trait;
use chargegate_core::apikey::{ApiKeyInfo, KeyHash, KeyLogin, NewApiKey, RevokeOutcome};
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::EventType;
use chargegate_core::store::{StoreError, StoreResult};
use chargegate_core::subscription::{
    Actor, CreateOutcome, CreatePlan, LifeCycleState, LiveSubscription, NewPromotion,
    NewSubscription, Promotion, ShowOutcome, ShowQuery, StateChange, StateRequest, Subscriptions,
    SubscriptionsAdmin, plan_create,
};
use chargegate_core::text::OperatorCode;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::{Failure, PostgresStore, commit_or_unknown, retried, sql_err};
use crate::subscription_rows::{
    KeyRow, PromotionRow, SubscriptionRow, operator_code, price, subscription_number,
};

const HISTORY_SQL: &str = "INSERT INTO subscription_history (subscription_id, event, \
     from_state, to_state, at, user_id, key_id, request_id, promotion_id) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

#[allow(clippy::too_many_arguments)]
async fn history(
    conn: &mut PgConnection,
    subscription_id: i64,
    event: &str,
    from: Option<&str>,
    to: &str,
    at: Timestamp,
    actor: &Actor,
    promotion_id: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(HISTORY_SQL)
        .bind(subscription_id)
        .bind(event)
        .bind(from)
        .bind(to)
        .bind(at.unix())
        .bind(actor.user_id)
        .bind(actor.key_id)
        .bind(&actor.request_id)
        .bind(promotion_id)
        .execute(&mut *conn)
        .await
        .map(|_| ())
}

/// Queues a subscription's change for the Netflix side with the states it has now (right
/// after the change, in the change's own transaction, the row locked).
pub(super) async fn subscription_event(
    conn: &mut PgConnection,
    subscription_id: i64,
    kind: EventType,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox (operator_id, type, occurred_at, subscription_id, life_cycle_state, \
                             netflix_state, netflix_customer_id) \
         SELECT operator_id, $2, $3, id, life_cycle_state, netflix_state, netflix_customer_id \
         FROM subscriptions WHERE id = $1",
    )
    .bind(subscription_id)
    .bind(kind.as_str())
    .bind(at)
    .execute(&mut *conn)
    .await
    .map(|_| ())
}

async fn try_create(
    store: &PostgresStore,
    new: &NewSubscription,
) -> Result<CreateOutcome, Failure> {
    let mut tx = store.pool.begin().await?;
    let live = sqlx::query(
        "SELECT id, number, netflix_customer_id IS NOT NULL AS linked, life_cycle_state \
         FROM subscriptions \
         WHERE operator_id = $1 AND customer_id = $2 AND life_cycle_state <> 'CANCELLED' \
         FOR UPDATE",
    )
    .bind(new.operator_id)
    .bind(new.customer.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let live = match live {
        Some(r) => Some((
            r.try_get::<i64, _>("id")?,
            r.try_get::<String, _>("number")?,
            r.try_get::<bool, _>("linked")?,
            r.try_get::<String, _>("life_cycle_state")?,
        )),
        None => None,
    };
    let promotion = match &new.promotion {
        None => None,
        Some(code) => {
            let found: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM promotions WHERE operator_id = $1 AND code = $2 \
                   AND effective_from <= $3 AND (expires_on IS NULL OR expires_on > $3)",
            )
            .bind(new.operator_id)
            .bind(code.as_str())
            .bind(new.at.unix())
            .fetch_optional(&mut *tx)
            .await?;
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
            sqlx::query(
                "UPDATE subscriptions SET netflix_token_hash = $2, netflix_token_expires_at = $3 \
                 WHERE id = $1",
            )
            .bind(subscription_id)
            .bind(&new.token_hash.0[..])
            .bind(new.token_expires_at.unix())
            .execute(&mut *tx)
            .await?;
            history(
                &mut tx,
                subscription_id,
                "token_renewed",
                Some(&state),
                &state,
                new.at,
                &new.actor,
                None,
            )
            .await?;
            (subscription_id, state, CreateOutcome::Renewed { number })
        }
        _ => {
            let d = &new.details;
            let id: i64 = sqlx::query_scalar(
                "WITH n AS (SELECT nextval(pg_get_serial_sequence('subscriptions', 'id')) AS id) \
                 INSERT INTO subscriptions (id, number, operator_id, customer_id, \
                        life_cycle_state, netflix_state, channel, customer_first_name, \
                        customer_last_name, customer_address, customer_email, customer_phone, \
                        netflix_token_hash, netflix_token_expires_at, created_at) \
                 SELECT n.id, 'S' || lpad(n.id::text, 8, '0'), $1, $2, 'EFFECTIVE', \
                        'NOT_EFFECTIVE', $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM n \
                 RETURNING id",
            )
            .bind(new.operator_id)
            .bind(new.customer.as_str())
            .bind(new.channel.map(|c| c.as_str()))
            .bind(&d.first_name)
            .bind(&d.last_name)
            .bind(&d.address)
            .bind(&d.email)
            .bind(&d.phone)
            .bind(&new.token_hash.0[..])
            .bind(new.token_expires_at.unix())
            .bind(new.at.unix())
            .fetch_one(&mut *tx)
            .await?;
            history(
                &mut tx,
                id,
                "created",
                None,
                "EFFECTIVE",
                new.at,
                &new.actor,
                None,
            )
            .await?;
            subscription_event(&mut tx, id, EventType::SubscriptionCreated, new.at.unix()).await?;
            (
                id,
                "EFFECTIVE".to_owned(),
                CreateOutcome::Created {
                    number: subscription_number(id),
                },
            )
        }
    };
    if let Some(promotion_id) = promotion {
        let redeemed = sqlx::query(
            "INSERT INTO subscription_promotions (subscription_id, promotion_id, redeemed_at) \
             VALUES ($1, $2, $3) ON CONFLICT (subscription_id, promotion_id) DO NOTHING",
        )
        .bind(id)
        .bind(promotion_id)
        .bind(new.at.unix())
        .execute(&mut *tx)
        .await?;
        if redeemed.rows_affected() > 0 {
            history(
                &mut tx,
                id,
                "promotion_redeemed",
                Some(&state),
                &state,
                new.at,
                &new.actor,
                Some(promotion_id),
            )
            .await?;
        }
    }
    commit_or_unknown(tx).await?;
    Ok(outcome)
}

async fn try_set_state(
    store: &PostgresStore,
    request: &StateRequest,
) -> Result<StateChange, Failure> {
    let mut tx = store.pool.begin().await?;
    let live = sqlx::query(
        "SELECT id, life_cycle_state FROM subscriptions \
         WHERE operator_id = $1 AND customer_id = $2 AND life_cycle_state <> 'CANCELLED' \
         FOR UPDATE",
    )
    .bind(request.operator_id)
    .bind(request.customer.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = live else {
        return Ok(StateChange::NotFound);
    };
    let id: i64 = row.try_get("id")?;
    let state: String = row.try_get("life_cycle_state")?;
    let target = request.target.as_str();
    if state == target {
        return Ok(StateChange::Unchanged);
    }
    sqlx::query("UPDATE subscriptions SET life_cycle_state = $2 WHERE id = $1")
        .bind(id)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    let (event, kind) = match request.target {
        LifeCycleState::NotEffective => ("suspended", EventType::SubscriptionSuspended),
        _ => ("unsuspended", EventType::SubscriptionUnsuspended),
    };
    history(
        &mut tx,
        id,
        event,
        Some(&state),
        target,
        request.at,
        &request.actor,
        None,
    )
    .await?;
    subscription_event(&mut tx, id, kind, request.at.unix()).await?;
    commit_or_unknown(tx).await?;
    Ok(StateChange::Changed)
}

fn promotion_row(r: &PgRow) -> Result<PromotionRow, sqlx::Error> {
    Ok(PromotionRow {
        code: r.try_get("code")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        effective_from: r.try_get("effective_from")?,
        expires_on: r.try_get("expires_on")?,
    })
}

#[async_trait]
impl Subscriptions for PostgresStore {
    async fn key_login(&self, hash: &KeyHash) -> StoreResult<Option<KeyLogin>> {
        let row = sqlx::query(
            "SELECT k.id, k.user_id, u.operator_id, k.revoked_at IS NOT NULL AS revoked, \
                    u.enabled, u.username, o.code \
             FROM api_keys k JOIN users u ON u.id = k.user_id \
             JOIN operators o ON o.id = u.operator_id WHERE k.hash = $1",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_err)?;
        row.map(|r| {
            Ok(KeyLogin {
                key_id: r.try_get("id")?,
                user_id: r.try_get("user_id")?,
                operator_id: r.try_get("operator_id")?,
                revoked: r.try_get("revoked")?,
                user_enabled: r.try_get("enabled")?,
                username: r.try_get("username")?,
                operator_code: r.try_get("code")?,
            })
        })
        .transpose()
        .map_err(sql_err)
    }

    async fn create_subscription(&self, new: &NewSubscription) -> StoreResult<CreateOutcome> {
        retried("subscriptions/create", || try_create(self, new)).await
    }

    async fn show_subscriptions(&self, query: &ShowQuery) -> StoreResult<ShowOutcome> {
        let customer: String = match (&query.customer, &query.netflix_customer) {
            (Some(customer), Some(pai)) => {
                let same: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE operator_id = $1 \
                       AND customer_id = $2 AND netflix_customer_id = $3)",
                )
                .bind(query.operator_id)
                .bind(customer.as_str())
                .bind(pai)
                .fetch_one(&self.pool)
                .await
                .map_err(sql_err)?;
                if !same {
                    return Ok(ShowOutcome::Mismatch);
                }
                customer.as_str().to_owned()
            }
            (Some(customer), None) => customer.as_str().to_owned(),
            (None, Some(pai)) => {
                let found: Option<String> = sqlx::query_scalar(
                    "SELECT customer_id FROM subscriptions \
                     WHERE operator_id = $1 AND netflix_customer_id = $2 \
                     ORDER BY life_cycle_state = 'CANCELLED', created_at DESC, id DESC LIMIT 1",
                )
                .bind(query.operator_id)
                .bind(pai)
                .fetch_optional(&self.pool)
                .await
                .map_err(sql_err)?;
                match found {
                    Some(c) => c,
                    None => return Ok(ShowOutcome::Found(Vec::new())),
                }
            }
            (None, None) => return Ok(ShowOutcome::Found(Vec::new())),
        };
        let rows = sqlx::query(
            "SELECT id, number, customer_id, netflix_customer_id, life_cycle_state, \
                    netflix_state, created_at, cancelled_at \
             FROM subscriptions WHERE operator_id = $1 AND customer_id = $2 \
             ORDER BY life_cycle_state = 'CANCELLED', created_at DESC, id DESC",
        )
        .bind(query.operator_id)
        .bind(&customer)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        let mut found = Vec::with_capacity(rows.len());
        let mut ids = Vec::with_capacity(rows.len());
        for r in &rows {
            let row = (|| -> Result<SubscriptionRow, sqlx::Error> {
                Ok(SubscriptionRow {
                    id: r.try_get("id")?,
                    number: r.try_get("number")?,
                    customer: r.try_get("customer_id")?,
                    netflix_customer: r.try_get("netflix_customer_id")?,
                    state: r.try_get("life_cycle_state")?,
                    netflix_state: r.try_get("netflix_state")?,
                    created_at: r.try_get("created_at")?,
                    cancelled_at: r.try_get("cancelled_at")?,
                })
            })()
            .map_err(sql_err)?;
            let (id, subscription) = row.into_subscription()?;
            ids.push(id);
            found.push(subscription);
        }
        if ids.is_empty() {
            return Ok(ShowOutcome::Found(found));
        }
        let position: HashMap<i64, usize> =
            ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let prices = sqlx::query(
            "SELECT subscription_id, amount_minor, currency, max(received_on) AS newest \
             FROM charges WHERE subscription_id = ANY($1) AND received_on >= $2 \
             GROUP BY subscription_id, amount_minor, currency \
             ORDER BY subscription_id, newest DESC, currency, amount_minor",
        )
        .bind(&ids)
        .bind(query.since.unix())
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        for r in &prices {
            let (id, minor, currency) = (|| -> Result<(i64, i64, String), sqlx::Error> {
                Ok((
                    r.try_get("subscription_id")?,
                    r.try_get("amount_minor")?,
                    r.try_get("currency")?,
                ))
            })()
            .map_err(sql_err)?;
            if let Some(s) = position.get(&id).and_then(|i| found.get_mut(*i)) {
                s.prices.push(price(minor, &currency)?);
            }
        }
        let promotions = sqlx::query(
            "SELECT sp.subscription_id, p.code, p.name, p.description, p.effective_from, \
                    p.expires_on \
             FROM subscription_promotions sp JOIN promotions p ON p.id = sp.promotion_id \
             WHERE sp.subscription_id = ANY($1) AND sp.redeemed_at >= $2 \
             ORDER BY sp.subscription_id, sp.redeemed_at DESC, p.code",
        )
        .bind(&ids)
        .bind(query.since.unix())
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        for r in &promotions {
            let id: i64 = r.try_get("subscription_id").map_err(sql_err)?;
            let promotion = promotion_row(r).map_err(sql_err)?.into_promotion()?;
            if let Some(s) = position.get(&id).and_then(|i| found.get_mut(*i)) {
                s.promotions.push(promotion);
            }
        }
        Ok(ShowOutcome::Found(found))
    }

    async fn set_subscription_state(&self, request: &StateRequest) -> StoreResult<StateChange> {
        retried("subscriptions/suspend", || try_set_state(self, request)).await
    }

    async fn effective_promotions(
        &self,
        operator_id: i64,
        now: Timestamp,
    ) -> StoreResult<Vec<Promotion>> {
        let rows = sqlx::query(
            "SELECT code, name, description, effective_from, expires_on FROM promotions \
             WHERE operator_id = $1 AND effective_from <= $2 \
               AND (expires_on IS NULL OR expires_on > $2) \
             ORDER BY effective_from, code",
        )
        .bind(operator_id)
        .bind(now.unix())
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        rows.iter()
            .map(|r| promotion_row(r).map_err(sql_err)?.into_promotion())
            .collect()
    }
}

#[async_trait]
impl SubscriptionsAdmin for PostgresStore {
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (operator_id, user_id, prefix, hash, name, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.operator_id)
        .bind(key.user_id)
        .bind(&key.prefix)
        .bind(&key.hash.0[..])
        .bind(&key.name)
        .bind(key.created_at.unix())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(sql_err)
    }

    async fn api_keys(&self, operator_id: Option<i64>) -> StoreResult<Vec<ApiKeyInfo>> {
        let rows = sqlx::query(
            "SELECT k.prefix, o.code, u.username, k.name, k.created_at, k.revoked_at \
             FROM api_keys k JOIN users u ON u.id = k.user_id \
             JOIN operators o ON o.id = k.operator_id \
             WHERE $1::bigint IS NULL OR k.operator_id = $1 ORDER BY k.id",
        )
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        rows.iter()
            .map(|r| {
                (|| -> Result<KeyRow, sqlx::Error> {
                    Ok(KeyRow {
                        prefix: r.try_get("prefix")?,
                        operator: r.try_get("code")?,
                        username: r.try_get("username")?,
                        name: r.try_get("name")?,
                        created_at: r.try_get("created_at")?,
                        revoked_at: r.try_get("revoked_at")?,
                    })
                })()
                .map_err(sql_err)?
                .into_info()
            })
            .collect()
    }

    async fn revoke_api_key(&self, prefix: &str, now: Timestamp) -> StoreResult<RevokeOutcome> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        let keys: Vec<(i64, Option<i64>)> =
            sqlx::query_as("SELECT id, revoked_at FROM api_keys WHERE prefix = $1 FOR UPDATE")
                .bind(prefix)
                .fetch_all(&mut *tx)
                .await
                .map_err(sql_err)?;
        let (id, revoked_at) = match keys.as_slice() {
            [] => return Ok(RevokeOutcome::NotFound),
            [one] => *one,
            many => return Ok(RevokeOutcome::Ambiguous(many.len())),
        };
        if revoked_at.is_some() {
            return Ok(RevokeOutcome::AlreadyRevoked);
        }
        sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now.unix())
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        let tokens = sqlx::query(
            "UPDATE tokens SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now.unix())
        .execute(&mut *tx)
        .await
        .map_err(sql_err)?;
        tx.commit().await.map_err(sql_err)?;
        Ok(RevokeOutcome::Revoked {
            tokens: tokens.rows_affected(),
        })
    }

    async fn create_promotion(&self, new: &NewPromotion) -> StoreResult<()> {
        let p = &new.promotion;
        sqlx::query(
            "INSERT INTO promotions (operator_id, code, name, description, effective_from, \
                                     expires_on, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new.operator_id)
        .bind(p.code.as_str())
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.effective_from.unix())
        .bind(p.expires_on.map(|t| t.unix()))
        .bind(new.created_at.unix())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| match sql_err(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("promotion {} already exists", p.code))
            }
            other => other,
        })
    }

    async fn promotions(
        &self,
        operator_id: Option<i64>,
    ) -> StoreResult<Vec<(OperatorCode, Promotion)>> {
        let rows = sqlx::query(
            "SELECT o.code AS operator, p.code, p.name, p.description, p.effective_from, \
                    p.expires_on \
             FROM promotions p JOIN operators o ON o.id = p.operator_id \
             WHERE $1::bigint IS NULL OR p.operator_id = $1 \
             ORDER BY o.code, p.effective_from, p.code",
        )
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        rows.iter()
            .map(|r| {
                let operator: String = r.try_get("operator").map_err(sql_err)?;
                Ok((
                    operator_code(operator)?,
                    promotion_row(r).map_err(sql_err)?.into_promotion()?,
                ))
            })
            .collect()
    }
}
