//! The connector API on PostgreSQL. Each write is one transaction, retried whole when it
//! loses a race (a unique violation, a serialization failure, a deadlock), as batches are.
//!
//! Intake numbers its charges after the highest number in use, so it takes the same
//! transaction-scoped advisory lock as imports: two intakes never pick the same numbers.
//! Two intakes of one `netflix_charge_identifier` meet at its unique index; the loser
//! starts over and then finds the charge stored, an idempotent repeat.

use async_trait::async_trait;
use chargegate_core::apikey::{KeyHash, RevokeOutcome};
use chargegate_core::charge::ChargeStatus;
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::{
    Activation, ActivationOutcome, Connector, ConnectorAdmin, ConnectorCaller, ConnectorKeyInfo,
    EventType, IntakeOutcome, IntakeRequest, IntakeSnapshot, ItemFailure, NetflixStateReport,
    NewConnectorKey, OutboxBacklog, OutboxEvent, PromotionUpsert, VerdictCharge, VerdictOutcome,
    VerdictRequest, VerdictSnapshot, plan_intake, plan_promotions, plan_verdicts,
};
use chargegate_core::money::Currency;
use chargegate_core::store::{StoreError, StoreResult};
use chargegate_core::text::ChargeNumber;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgRow};

use super::subscriptions::subscription_event;
use super::{Failure, IMPORT_LOCK_KEY, PostgresStore, commit_or_unknown, retried, sql_err};
use crate::connector_rows::{ConnectorKeyRow, OUTBOX_COLUMNS, OutboxRow, StoredRow};
use crate::error::corrupt;
use crate::rows;
use crate::subscription_rows::operator_code;

/// Serialises activations that link one PAI, so two cannot link it to two subscriptions.
const ACTIVATION_LOCK_KEY: i32 = 0x6163_7476; // "actv"

async fn try_intake(
    store: &PostgresStore,
    request: &IntakeRequest,
) -> Result<Vec<IntakeOutcome>, Failure> {
    let actor = &request.actor;
    let (ids, pais) = request.keys();
    let mut tx = store.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(IMPORT_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    let mut snapshot = IntakeSnapshot::default();
    let stored = sqlx::query(
        "SELECT netflix_charge_id, number, customer_id, amount_minor, currency, \
                local_amount_minor, local_currency, paid_through_date, received_on \
         FROM charges WHERE operator_id = $1 AND netflix_charge_id = ANY($2::text[])",
    )
    .bind(actor.operator_id)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    for r in &stored {
        let (id, charge) = StoredRow {
            netflix_charge_id: r.try_get(0)?,
            number: r.try_get(1)?,
            customer: r.try_get(2)?,
            amount_minor: r.try_get(3)?,
            currency: r.try_get(4)?,
            local_amount_minor: r.try_get(5)?,
            local_currency: r.try_get(6)?,
            paid_through_date: r.try_get(7)?,
            received_on: r.try_get(8)?,
        }
        .into_stored()?;
        snapshot.stored.insert(id, charge);
    }
    let linked = sqlx::query(
        "SELECT netflix_customer_id, customer_id FROM subscriptions WHERE operator_id = $1 \
           AND netflix_customer_id = ANY($2::text[]) AND life_cycle_state <> 'CANCELLED'",
    )
    .bind(actor.operator_id)
    .bind(&pais)
    .fetch_all(&mut *tx)
    .await?;
    for r in &linked {
        let pai: String = r.try_get(0)?;
        snapshot.linked.insert(pai, rows::customer(r.try_get(1)?)?);
    }
    // Backwards along the unique index from the top of the generated range to the first
    // number of the generated shape: no scan of every charge on each call.
    let max: Option<String> = sqlx::query_scalar(
        "SELECT number FROM charges \
         WHERE number BETWEEN 'I00000000' AND 'I99999999' AND number ~ '^I[0-9]{8}$' \
         ORDER BY number DESC LIMIT 1",
    )
    .fetch_optional(&mut *tx)
    .await?;
    snapshot.max_generated = max
        .and_then(|n| ChargeNumber::parse(n).ok())
        .and_then(|n| n.generated_sequence());
    let (outcomes, new_rows) =
        plan_intake(&request.items, &snapshot, actor.at).ok_or_else(|| {
            Failure::Final(StoreError::Internal("charge numbers are exhausted".into()))
        })?;
    if !new_rows.is_empty() {
        let text = |f: &dyn Fn(&chargegate_core::connector::IntakeRow) -> Option<String>| {
            new_rows.iter().map(f).collect::<Vec<_>>()
        };
        let int = |f: &dyn Fn(&chargegate_core::connector::IntakeRow) -> i64| {
            new_rows.iter().map(f).collect::<Vec<_>>()
        };
        sqlx::query(
            "WITH given AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
                  $5::bigint[], $6::text[], $7::bigint[], $8::text[], $9::text[], $10::bigint[]) \
                  WITH ORDINALITY AS u(number, netflix_charge_id, customer_id, \
                       netflix_customer_id, amount_minor, currency, local_amount_minor, \
                       local_currency, paid_through_date, received_on, ordinality)), \
             inserted AS (INSERT INTO charges (number, operator_id, customer_id, \
                  netflix_customer_id, amount_minor, currency, local_amount_minor, \
                  local_currency, paid_through_date, status, initial_status, received_on, \
                  netflix_charge_id, subscription_id) \
                  SELECT g.number, $11, g.customer_id, g.netflix_customer_id, g.amount_minor, \
                         g.currency, g.local_amount_minor, g.local_currency, \
                         g.paid_through_date, 'PENDING', 'PENDING', g.received_on, \
                         g.netflix_charge_id, \
                         (SELECT s.id FROM subscriptions s WHERE s.operator_id = $11 \
                            AND s.customer_id = g.customer_id \
                            AND s.life_cycle_state <> 'CANCELLED') \
                  FROM given g ORDER BY g.ordinality RETURNING id) \
             INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
                  request_id, connector_key_id) \
             SELECT id, 'intake', NULL, 'PENDING', $12, $13, $14 FROM inserted ORDER BY id",
        )
        .bind(text(&|r| Some(r.number.as_str().to_owned())))
        .bind(text(&|r| Some(r.netflix_charge_id.clone())))
        .bind(text(&|r| Some(r.customer.as_str().to_owned())))
        .bind(text(&|r| r.netflix_customer.clone()))
        .bind(int(&|r| r.amount.minor()))
        .bind(text(&|r| Some(r.amount.currency().code().to_owned())))
        .bind(int(&|r| r.local_amount.minor()))
        .bind(text(&|r| Some(r.local_amount.currency().code().to_owned())))
        .bind(text(&|r| Some(r.paid_through_date.to_string())))
        .bind(int(&|r| r.received_on.unix()))
        .bind(actor.operator_id)
        .bind(actor.at.unix())
        .bind(&actor.request_id)
        .bind(actor.key_id)
        .execute(&mut *tx)
        .await?;
    }
    commit_or_unknown(tx).await?;
    Ok(outcomes)
}

fn verdict_charge(r: &PgRow) -> Result<(Option<String>, VerdictCharge), Failure> {
    let number: String = r.try_get("number")?;
    let status: String = r.try_get("status")?;
    Ok((
        r.try_get("netflix_charge_id")?,
        VerdictCharge {
            id: r.try_get("id")?,
            number: rows::number(number)?,
            status: rows::status(&status)?,
        },
    ))
}

/// Cancels the live subscription of a charge, with its history row and event.
async fn cancel_through_charge(
    conn: &mut PgConnection,
    charge_id: i64,
    at: i64,
    request_id: &str,
    connector_key_id: i64,
) -> Result<(), Failure> {
    let live = sqlx::query(
        "SELECT s.id, s.life_cycle_state FROM charges c \
         JOIN subscriptions s ON s.id = c.subscription_id \
         WHERE c.id = $1 AND s.life_cycle_state <> 'CANCELLED' FOR UPDATE OF s",
    )
    .bind(charge_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(live) = live else {
        return Ok(());
    };
    let id: i64 = live.try_get(0)?;
    let state: String = live.try_get(1)?;
    sqlx::query(
        "INSERT INTO subscription_history (subscription_id, event, from_state, to_state, at, \
                                           request_id, charge_id, connector_key_id) \
         VALUES ($1, 'cancelled', $2, 'CANCELLED', $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(&state)
    .bind(at)
    .bind(request_id)
    .bind(charge_id)
    .bind(connector_key_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE subscriptions SET life_cycle_state = 'CANCELLED', cancelled_at = $2, \
                netflix_token_hash = NULL, netflix_token_expires_at = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    subscription_event(conn, id, EventType::SubscriptionCancelled, at).await?;
    Ok(())
}

async fn try_verdicts(
    store: &PostgresStore,
    request: &VerdictRequest,
) -> Result<Vec<VerdictOutcome>, Failure> {
    let actor = &request.actor;
    let (ids, numbers) = request.keys();
    let mut tx = store.pool.begin().await?;
    // Locked in id order, so two calls cannot deadlock; read committed re-reads a row
    // that another transaction changed while this one waited for it.
    let found = sqlx::query(
        "SELECT id, number, status, netflix_charge_id FROM charges \
         WHERE operator_id = $1 \
           AND (netflix_charge_id = ANY($2::text[]) OR number = ANY($3::text[])) \
         ORDER BY id FOR UPDATE",
    )
    .bind(actor.operator_id)
    .bind(&ids)
    .bind(&numbers)
    .fetch_all(&mut *tx)
    .await?;
    let mut snapshot = VerdictSnapshot::default();
    for r in &found {
        let (netflix_id, charge) = verdict_charge(r)?;
        if let Some(id) = netflix_id.filter(|id| ids.contains(&id.as_str())) {
            snapshot.by_netflix_id.insert(id, charge.clone());
        }
        if numbers.contains(&charge.number.as_str()) {
            snapshot.by_number.insert(charge.number.clone(), charge);
        }
    }
    let (outcomes, changes) = plan_verdicts(&request.items, &snapshot);
    let at = actor.at.unix();
    for change in &changes {
        let sql = match change.status {
            ChargeStatus::BadRequest => {
                "UPDATE charges SET status = 'BAD_REQUEST', set_as_bad_request_on = $2 \
                 WHERE id = $1 AND status = 'PENDING'"
            }
            _ => {
                "UPDATE charges SET status = 'REJECTED', set_as_rejected_on = $2 \
                 WHERE id = $1 AND status = 'PENDING'"
            }
        };
        let changed = sqlx::query(sql)
            .bind(change.charge_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() != 1 {
            return Err(Failure::Retry(format!(
                "charge {} was not PENDING any more",
                change.charge_id
            )));
        }
        sqlx::query(
            "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
                                         request_id, connector_key_id, reason) \
             VALUES ($1, 'verdict', 'PENDING', $2, $3, $4, $5, $6)",
        )
        .bind(change.charge_id)
        .bind(change.status.as_str())
        .bind(at)
        .bind(&actor.request_id)
        .bind(actor.key_id)
        .bind(&change.reason)
        .execute(&mut *tx)
        .await?;
        cancel_through_charge(
            &mut tx,
            change.charge_id,
            at,
            &actor.request_id,
            actor.key_id,
        )
        .await?;
    }
    commit_or_unknown(tx).await?;
    Ok(outcomes)
}

async fn connector_history(
    conn: &mut PgConnection,
    subscription_id: i64,
    event: &str,
    state: &str,
    actor: &chargegate_core::connector::ConnectorActor,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscription_history (subscription_id, event, from_state, to_state, at, \
                                           request_id, connector_key_id) \
         VALUES ($1, $2, $3, $3, $4, $5, $6)",
    )
    .bind(subscription_id)
    .bind(event)
    .bind(state)
    .bind(actor.at.unix())
    .bind(&actor.request_id)
    .bind(actor.key_id)
    .execute(&mut *conn)
    .await
    .map(|_| ())
}

async fn try_activate(
    store: &PostgresStore,
    request: &Activation,
) -> Result<ActivationOutcome, Failure> {
    let actor = &request.actor;
    let mut tx = store.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(ACTIVATION_LOCK_KEY)
        .bind(&request.netflix_customer)
        .execute(&mut *tx)
        .await?;
    let found = sqlx::query(
        "SELECT id, life_cycle_state, netflix_token_expires_at FROM subscriptions \
         WHERE operator_id = $1 AND netflix_token_hash = $2 \
           AND life_cycle_state <> 'CANCELLED' FOR UPDATE",
    )
    .bind(actor.operator_id)
    .bind(&request.token.0[..])
    .fetch_optional(&mut *tx)
    .await?;
    let Some(found) = found else {
        return Ok(ActivationOutcome::BadToken);
    };
    let id: i64 = found.try_get(0)?;
    let state: String = found.try_get(1)?;
    let expires: Option<i64> = found.try_get(2)?;
    if expires.is_none_or(|e| e <= actor.at.unix()) {
        return Ok(ActivationOutcome::BadToken);
    }
    let taken: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE operator_id = $1 \
           AND netflix_customer_id = $2 AND life_cycle_state <> 'CANCELLED' AND id <> $3)",
    )
    .bind(actor.operator_id)
    .bind(&request.netflix_customer)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    if taken {
        return Ok(ActivationOutcome::PaiTaken);
    }
    sqlx::query(
        "UPDATE subscriptions SET netflix_customer_id = $2, netflix_state = 'EFFECTIVE', \
                netflix_token_hash = NULL, netflix_token_expires_at = NULL WHERE id = $1",
    )
    .bind(id)
    .bind(&request.netflix_customer)
    .execute(&mut *tx)
    .await?;
    connector_history(&mut tx, id, "activated", &state, actor).await?;
    commit_or_unknown(tx).await?;
    Ok(ActivationOutcome::Linked)
}

async fn try_report_state(
    store: &PostgresStore,
    request: &NetflixStateReport,
) -> Result<bool, Failure> {
    let actor = &request.actor;
    let mut tx = store.pool.begin().await?;
    let found = sqlx::query(
        "SELECT id, life_cycle_state, netflix_state FROM subscriptions \
         WHERE operator_id = $1 AND netflix_customer_id = $2 \
           AND life_cycle_state <> 'CANCELLED' FOR UPDATE",
    )
    .bind(actor.operator_id)
    .bind(&request.netflix_customer)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(found) = found else {
        return Ok(false);
    };
    let id: i64 = found.try_get(0)?;
    let state: String = found.try_get(1)?;
    let netflix_state: String = found.try_get(2)?;
    if netflix_state != request.state.as_str() {
        sqlx::query("UPDATE subscriptions SET netflix_state = $2 WHERE id = $1")
            .bind(id)
            .bind(request.state.as_str())
            .execute(&mut *tx)
            .await?;
        connector_history(&mut tx, id, "netflix_state", &state, actor).await?;
    }
    commit_or_unknown(tx).await?;
    Ok(true)
}

async fn try_promotions(
    store: &PostgresStore,
    request: &PromotionUpsert,
) -> Result<Vec<Option<ItemFailure>>, Failure> {
    let (outcomes, writes) = plan_promotions(&request.items);
    let mut tx = store.pool.begin().await?;
    for p in writes {
        sqlx::query(
            "INSERT INTO promotions (operator_id, code, name, description, effective_from, \
                                     expires_on, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (operator_id, code) DO UPDATE SET name = excluded.name, \
                 description = excluded.description, effective_from = excluded.effective_from, \
                 expires_on = excluded.expires_on",
        )
        .bind(request.actor.operator_id)
        .bind(p.code.as_str())
        .bind(&p.name)
        .bind(&p.description)
        .bind(p.effective_from.unix())
        .bind(p.expires_on.map(|t| t.unix()))
        .bind(request.actor.at.unix())
        .execute(&mut *tx)
        .await?;
    }
    commit_or_unknown(tx).await?;
    Ok(outcomes)
}

fn outbox_row(r: &PgRow) -> Result<OutboxRow, sqlx::Error> {
    Ok(OutboxRow {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        operator: r.try_get(2)?,
        occurred_at: r.try_get(3)?,
        reference_number: r.try_get(4)?,
        number: r.try_get(5)?,
        customer: r.try_get(6)?,
        amount_minor: r.try_get(7)?,
        currency: r.try_get(8)?,
        local_amount_minor: r.try_get(9)?,
        local_currency: r.try_get(10)?,
        paid_through_date: r.try_get(11)?,
        status: r.try_get(12)?,
        received_on: r.try_get(13)?,
        stamps: [
            r.try_get(14)?,
            r.try_get(15)?,
            r.try_get(16)?,
            r.try_get(17)?,
        ],
        netflix_charge_id: r.try_get(18)?,
        subscription_number: r.try_get(19)?,
        subscription_customer: r.try_get(20)?,
        netflix_customer: r.try_get(21)?,
        life_cycle_state: r.try_get(22)?,
        netflix_state: r.try_get(23)?,
        created_at: r.try_get(24)?,
        channel: r.try_get(25)?,
        details: [
            r.try_get(26)?,
            r.try_get(27)?,
            r.try_get(28)?,
            r.try_get(29)?,
            r.try_get(30)?,
        ],
    })
}

#[async_trait]
impl Connector for PostgresStore {
    async fn connector_key(&self, hash: &KeyHash) -> StoreResult<Option<ConnectorCaller>> {
        let row = sqlx::query(
            "SELECT k.id, k.operator_id, o.code, o.local_currency, \
                    k.revoked_at IS NOT NULL AS revoked \
             FROM connector_keys k JOIN operators o ON o.id = k.operator_id WHERE k.hash = $1",
        )
        .bind(&hash.0[..])
        .fetch_optional(&self.pool)
        .await
        .map_err(sql_err)?;
        row.map(|r| -> StoreResult<ConnectorCaller> {
            let code: String = r.try_get(2).map_err(sql_err)?;
            let currency: String = r.try_get(3).map_err(sql_err)?;
            Ok(ConnectorCaller {
                key_id: r.try_get(0).map_err(sql_err)?,
                operator_id: r.try_get(1).map_err(sql_err)?,
                operator_code: operator_code(code)?,
                local_currency: Currency::parse(&currency).map_err(corrupt)?,
                revoked: r.try_get(4).map_err(sql_err)?,
            })
        })
        .transpose()
    }

    async fn intake(&self, request: &IntakeRequest) -> StoreResult<Vec<IntakeOutcome>> {
        retried("intake", || try_intake(self, request)).await
    }

    async fn record_verdicts(&self, request: &VerdictRequest) -> StoreResult<Vec<VerdictOutcome>> {
        retried("charges/status", || try_verdicts(self, request)).await
    }

    async fn activate(&self, request: &Activation) -> StoreResult<ActivationOutcome> {
        retried("activate", || try_activate(self, request)).await
    }

    async fn report_netflix_state(&self, request: &NetflixStateReport) -> StoreResult<bool> {
        retried("state", || try_report_state(self, request)).await
    }

    async fn upsert_promotions(
        &self,
        request: &PromotionUpsert,
    ) -> StoreResult<Vec<Option<ItemFailure>>> {
        retried("promotions", || try_promotions(self, request)).await
    }

    async fn outbox(&self, operator_id: Option<i64>, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        let rows =
            match operator_id {
                Some(operator) => sqlx::query(&format!(
                    "SELECT {OUTBOX_COLUMNS} WHERE o.operator_id = $1 AND o.delivered_at IS NULL \
                     ORDER BY o.id LIMIT $2"
                ))
                .bind(operator)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await,
                None => sqlx::query(&format!(
                    "SELECT {OUTBOX_COLUMNS} WHERE o.delivered_at IS NULL ORDER BY o.id LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await,
            }
            .map_err(sql_err)?;
        rows.iter()
            .map(|r| outbox_row(r).map_err(sql_err)?.into_event())
            .collect()
    }

    async fn ack_outbox(
        &self,
        operator_id: Option<i64>,
        ids: &[i64],
        at: Timestamp,
    ) -> StoreResult<u64> {
        sqlx::query(
            "UPDATE outbox SET delivered_at = $3 WHERE id = ANY($1::bigint[]) \
               AND delivered_at IS NULL AND ($2::bigint IS NULL OR operator_id = $2)",
        )
        .bind(ids)
        .bind(operator_id)
        .bind(at.unix())
        .execute(&self.pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(sql_err)
    }

    async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog> {
        let row = sqlx::query(
            "SELECT count(*), (SELECT occurred_at FROM outbox WHERE delivered_at IS NULL \
                               ORDER BY id LIMIT 1) \
             FROM outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(sql_err)?;
        let waiting: i64 = row.try_get(0).map_err(sql_err)?;
        let oldest: Option<i64> = row.try_get(1).map_err(sql_err)?;
        Ok(OutboxBacklog {
            waiting: u64::try_from(waiting).unwrap_or(0),
            oldest: rows::opt_timestamp(oldest)?,
        })
    }

    async fn take_push_lease(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        retried("outbox lease", || async {
            let changed = sqlx::query(
                "INSERT INTO outbox_lease (id, holder, until) VALUES (1, $1, $3) \
                 ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until = excluded.until \
                 WHERE outbox_lease.holder = excluded.holder OR outbox_lease.until <= $2",
            )
            .bind(holder)
            .bind(now.unix())
            .bind(until.unix())
            .execute(&self.pool)
            .await?;
            Ok(changed.rows_affected() > 0)
        })
        .await
    }
}

#[async_trait]
impl ConnectorAdmin for PostgresStore {
    async fn create_connector_key(&self, key: &NewConnectorKey) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO connector_keys (operator_id, prefix, hash, name, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key.operator_id)
        .bind(&key.prefix)
        .bind(&key.hash.0[..])
        .bind(&key.name)
        .bind(key.created_at.unix())
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(sql_err)
    }

    async fn connector_keys(&self, operator_id: Option<i64>) -> StoreResult<Vec<ConnectorKeyInfo>> {
        let found = sqlx::query(
            "SELECT k.prefix, o.code, k.name, k.created_at, k.revoked_at \
             FROM connector_keys k JOIN operators o ON o.id = k.operator_id \
             WHERE $1::bigint IS NULL OR k.operator_id = $1 ORDER BY k.id",
        )
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        found
            .iter()
            .map(|r| {
                ConnectorKeyRow {
                    prefix: r.try_get(0).map_err(sql_err)?,
                    operator: r.try_get(1).map_err(sql_err)?,
                    name: r.try_get(2).map_err(sql_err)?,
                    created_at: r.try_get(3).map_err(sql_err)?,
                    revoked_at: r.try_get(4).map_err(sql_err)?,
                }
                .into_info()
            })
            .collect()
    }

    async fn revoke_connector_key(
        &self,
        prefix: &str,
        now: Timestamp,
    ) -> StoreResult<RevokeOutcome> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        let keys =
            sqlx::query("SELECT id, revoked_at FROM connector_keys WHERE prefix = $1 FOR UPDATE")
                .bind(prefix)
                .fetch_all(&mut *tx)
                .await
                .map_err(sql_err)?;
        let (id, revoked_at): (i64, Option<i64>) = match keys.as_slice() {
            [] => return Ok(RevokeOutcome::NotFound),
            [one] => (
                one.try_get(0).map_err(sql_err)?,
                one.try_get(1).map_err(sql_err)?,
            ),
            many => return Ok(RevokeOutcome::Ambiguous(many.len())),
        };
        if revoked_at.is_some() {
            return Ok(RevokeOutcome::AlreadyRevoked);
        }
        sqlx::query("UPDATE connector_keys SET revoked_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now.unix())
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        tx.commit().await.map_err(sql_err)?;
        Ok(RevokeOutcome::Revoked { tokens: 0 })
    }
}
