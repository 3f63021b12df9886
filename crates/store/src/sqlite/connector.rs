//! The connector API on SQLite: each write is one unit of work on the writer thread (one
//! transaction, `BEGIN IMMEDIATE`, group-committed); reads run on reader connections.
//! The one writer commits in order, so an outbox id is also a commit position.

use async_trait::async_trait;
use chargegate_core::apikey::{KeyHash, RevokeOutcome};
use chargegate_core::charge::ChargeStatus;
use chargegate_core::clock::Timestamp;
use chargegate_core::connector::{
    Activation, ActivationOutcome, Connector, ConnectorAdmin, ConnectorCaller, ConnectorKeyInfo,
    IntakeOutcome, IntakeRequest, IntakeSnapshot, ItemFailure, NetflixStateReport, NewConnectorKey,
    OutboxBacklog, OutboxEvent, PromotionUpsert, VerdictCharge, VerdictOutcome, VerdictRequest,
    VerdictSnapshot, plan_intake, plan_promotions, plan_verdicts,
};
use chargegate_core::money::Currency;
use chargegate_core::store::{StoreError, StoreResult};
use chargegate_core::text::ChargeNumber;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use super::cancel::{Canceller, cancel_through_charge};
use crate::connector_rows::{ConnectorKeyRow, OUTBOX_COLUMNS, OutboxRow, StoredRow};
use crate::error::{corrupt, from_sqlite};
use crate::rows;
use crate::subscription_rows::operator_code;

fn intake(conn: &Connection, request: &IntakeRequest) -> StoreResult<Vec<IntakeOutcome>> {
    let actor = &request.actor;
    let (ids, pais) = request.keys();
    let mut snapshot = IntakeSnapshot::default();
    {
        let mut stored = conn
            .prepare_cached(
                "SELECT netflix_charge_id, number, customer_id, amount_minor, currency, \
                        local_amount_minor, local_currency, paid_through_date, received_on \
                 FROM charges WHERE operator_id = ?1 AND netflix_charge_id = ?2",
            )
            .map_err(from_sqlite)?;
        for id in ids {
            let row = stored
                .query_row(params![actor.operator_id, id], |r| {
                    Ok(StoredRow {
                        netflix_charge_id: r.get(0)?,
                        number: r.get(1)?,
                        customer: r.get(2)?,
                        amount_minor: r.get(3)?,
                        currency: r.get(4)?,
                        local_amount_minor: r.get(5)?,
                        local_currency: r.get(6)?,
                        paid_through_date: r.get(7)?,
                        received_on: r.get(8)?,
                    })
                })
                .optional()
                .map_err(from_sqlite)?;
            if let Some(row) = row {
                let (id, charge) = row.into_stored()?;
                snapshot.stored.insert(id, charge);
            }
        }
        let mut linked = conn
            .prepare_cached(
                "SELECT customer_id FROM subscriptions WHERE operator_id = ?1 \
                   AND netflix_customer_id = ?2 AND life_cycle_state <> 'CANCELLED'",
            )
            .map_err(from_sqlite)?;
        for pai in pais {
            let customer = linked
                .query_row(params![actor.operator_id, pai], |r| r.get::<_, String>(0))
                .optional()
                .map_err(from_sqlite)?;
            if let Some(customer) = customer {
                snapshot
                    .linked
                    .insert(pai.to_owned(), rows::customer(customer)?);
            }
        }
    }
    snapshot.max_generated = max_generated(conn)?;
    let (outcomes, new_rows) = plan_intake(&request.items, &snapshot, actor.at)
        .ok_or_else(|| StoreError::Internal("charge numbers are exhausted".into()))?;
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO charges (number, operator_id, customer_id, netflix_customer_id, \
                                  amount_minor, currency, local_amount_minor, local_currency, \
                                  paid_through_date, status, initial_status, received_on, \
                                  netflix_charge_id, subscription_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'PENDING', 'PENDING', ?10, ?11, \
                     (SELECT id FROM subscriptions WHERE operator_id = ?2 AND customer_id = ?3 \
                        AND life_cycle_state <> 'CANCELLED'))",
        )
        .map_err(from_sqlite)?;
    let mut history = conn
        .prepare_cached(
            "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
                                         request_id, connector_key_id) \
             VALUES (?1, 'intake', NULL, 'PENDING', ?2, ?3, ?4)",
        )
        .map_err(from_sqlite)?;
    for row in &new_rows {
        insert
            .execute(params![
                row.number.as_str(),
                actor.operator_id,
                row.customer.as_str(),
                row.netflix_customer,
                row.amount.minor(),
                row.amount.currency().code(),
                row.local_amount.minor(),
                row.local_amount.currency().code(),
                row.paid_through_date.to_string(),
                row.received_on.unix(),
                row.netflix_charge_id,
            ])
            .map_err(from_sqlite)?;
        history
            .execute(params![
                conn.last_insert_rowid(),
                actor.at.unix(),
                actor.request_id,
                actor.key_id
            ])
            .map_err(from_sqlite)?;
    }
    Ok(outcomes)
}

/// The highest charge number of the generated shape (`I` and eight digits).
fn max_generated(conn: &Connection) -> StoreResult<Option<u32>> {
    let max: Option<String> = conn
        .prepare_cached(
            "SELECT max(number) FROM charges \
             WHERE number GLOB 'I[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]'",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(from_sqlite)?;
    Ok(max
        .and_then(|n| ChargeNumber::parse(n).ok())
        .and_then(|n| n.generated_sequence()))
}

fn verdict_charge(r: &Row<'_>) -> rusqlite::Result<(i64, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn into_verdict_charge((id, number, status): (i64, String, String)) -> StoreResult<VerdictCharge> {
    Ok(VerdictCharge {
        id,
        number: rows::number(number)?,
        status: rows::status(&status)?,
    })
}

fn record_verdicts(
    conn: &Connection,
    request: &VerdictRequest,
) -> StoreResult<Vec<VerdictOutcome>> {
    let actor = &request.actor;
    let (ids, numbers) = request.keys();
    let mut snapshot = VerdictSnapshot::default();
    {
        let mut by_id = conn
            .prepare_cached(
                "SELECT id, number, status FROM charges \
                 WHERE operator_id = ?1 AND netflix_charge_id = ?2",
            )
            .map_err(from_sqlite)?;
        for id in ids {
            if let Some(row) = by_id
                .query_row(params![actor.operator_id, id], verdict_charge)
                .optional()
                .map_err(from_sqlite)?
            {
                snapshot
                    .by_netflix_id
                    .insert(id.to_owned(), into_verdict_charge(row)?);
            }
        }
        let mut by_number = conn
            .prepare_cached(
                "SELECT id, number, status FROM charges WHERE operator_id = ?1 AND number = ?2",
            )
            .map_err(from_sqlite)?;
        for number in numbers {
            if let Some(row) = by_number
                .query_row(params![actor.operator_id, number], verdict_charge)
                .optional()
                .map_err(from_sqlite)?
            {
                let charge = into_verdict_charge(row)?;
                snapshot.by_number.insert(charge.number.clone(), charge);
            }
        }
    }
    let (outcomes, changes) = plan_verdicts(&request.items, &snapshot);
    let at = actor.at.unix();
    for change in &changes {
        let sql = match change.status {
            ChargeStatus::BadRequest => {
                "UPDATE charges SET status = 'BAD_REQUEST', set_as_bad_request_on = ?2 \
                 WHERE id = ?1 AND status = 'PENDING'"
            }
            _ => {
                "UPDATE charges SET status = 'REJECTED', set_as_rejected_on = ?2 \
                 WHERE id = ?1 AND status = 'PENDING'"
            }
        };
        let changed = conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params![change.charge_id, at]))
            .map_err(from_sqlite)?;
        if changed != 1 {
            return Err(StoreError::Internal(format!(
                "verdict: charge {} was not PENDING any more; rolled back",
                change.charge_id
            )));
        }
        conn.prepare_cached(
            "INSERT INTO charge_history (charge_id, event, from_status, to_status, at, \
                                         request_id, connector_key_id, reason) \
             VALUES (?1, 'verdict', 'PENDING', ?2, ?3, ?4, ?5, ?6)",
        )
        .and_then(|mut s| {
            s.execute(params![
                change.charge_id,
                change.status.as_str(),
                at,
                actor.request_id,
                actor.key_id,
                change.reason
            ])
        })
        .map_err(from_sqlite)?;
        cancel_through_charge(
            conn,
            change.charge_id,
            &Canceller {
                at,
                user_id: None,
                key_id: None,
                connector_key_id: Some(actor.key_id),
                request_id: &actor.request_id,
                via_console: false,
            },
        )?;
    }
    Ok(outcomes)
}

fn activate(conn: &Connection, request: &Activation) -> StoreResult<ActivationOutcome> {
    let actor = &request.actor;
    let found = conn
        .prepare_cached(
            "SELECT id, life_cycle_state, netflix_token_expires_at FROM subscriptions \
             WHERE operator_id = ?1 AND netflix_token_hash = ?2 \
               AND life_cycle_state <> 'CANCELLED'",
        )
        .and_then(|mut s| {
            s.query_row(params![actor.operator_id, &request.token.0[..]], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .optional()
        })
        .map_err(from_sqlite)?;
    let Some((id, state, expires)) = found else {
        return Ok(ActivationOutcome::BadToken);
    };
    if expires.is_none_or(|e| e <= actor.at.unix()) {
        return Ok(ActivationOutcome::BadToken);
    }
    let taken: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE operator_id = ?1 \
               AND netflix_customer_id = ?2 AND life_cycle_state <> 'CANCELLED' AND id <> ?3)",
        )
        .and_then(|mut s| {
            s.query_row(
                params![actor.operator_id, request.netflix_customer, id],
                |r| r.get(0),
            )
        })
        .map_err(from_sqlite)?;
    if taken {
        return Ok(ActivationOutcome::PaiTaken);
    }
    conn.prepare_cached(
        "UPDATE subscriptions SET netflix_customer_id = ?2, netflix_state = 'EFFECTIVE', \
                netflix_token_hash = NULL, netflix_token_expires_at = NULL WHERE id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, request.netflix_customer]))
    .map_err(from_sqlite)?;
    connector_history(conn, id, "activated", &state, request)?;
    Ok(ActivationOutcome::Linked)
}

fn connector_history(
    conn: &Connection,
    subscription_id: i64,
    event: &str,
    state: &str,
    request: &impl HasActor,
) -> StoreResult<()> {
    let actor = request.actor();
    conn.prepare_cached(
        "INSERT INTO subscription_history (subscription_id, event, from_state, to_state, at, \
                                           request_id, connector_key_id) \
         VALUES (?1, ?2, ?3, ?3, ?4, ?5, ?6)",
    )
    .and_then(|mut s| {
        s.execute(params![
            subscription_id,
            event,
            state,
            actor.at.unix(),
            actor.request_id,
            actor.key_id
        ])
    })
    .map(|_| ())
    .map_err(from_sqlite)
}

trait HasActor {
    fn actor(&self) -> &chargegate_core::connector::ConnectorActor;
}
impl HasActor for Activation {
    fn actor(&self) -> &chargegate_core::connector::ConnectorActor {
        &self.actor
    }
}
impl HasActor for NetflixStateReport {
    fn actor(&self) -> &chargegate_core::connector::ConnectorActor {
        &self.actor
    }
}

fn report_state(conn: &Connection, request: &NetflixStateReport) -> StoreResult<bool> {
    let actor = &request.actor;
    let found = conn
        .prepare_cached(
            "SELECT id, life_cycle_state, netflix_state FROM subscriptions \
             WHERE operator_id = ?1 AND netflix_customer_id = ?2 \
               AND life_cycle_state <> 'CANCELLED'",
        )
        .and_then(|mut s| {
            s.query_row(params![actor.operator_id, request.netflix_customer], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .optional()
        })
        .map_err(from_sqlite)?;
    let Some((id, state, netflix_state)) = found else {
        return Ok(false);
    };
    if netflix_state != request.state.as_str() {
        conn.prepare_cached("UPDATE subscriptions SET netflix_state = ?2 WHERE id = ?1")
            .and_then(|mut s| s.execute(params![id, request.state.as_str()]))
            .map_err(from_sqlite)?;
        connector_history(conn, id, "netflix_state", &state, request)?;
    }
    Ok(true)
}

fn upsert_promotions(
    conn: &Connection,
    request: &PromotionUpsert,
) -> StoreResult<Vec<Option<ItemFailure>>> {
    let (outcomes, writes) = plan_promotions(&request.items);
    let mut upsert = conn
        .prepare_cached(
            "INSERT INTO promotions (operator_id, code, name, description, effective_from, \
                                     expires_on, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (operator_id, code) DO UPDATE SET name = excluded.name, \
                 description = excluded.description, effective_from = excluded.effective_from, \
                 expires_on = excluded.expires_on",
        )
        .map_err(from_sqlite)?;
    for p in writes {
        upsert
            .execute(params![
                request.actor.operator_id,
                p.code.as_str(),
                p.name,
                p.description,
                p.effective_from.unix(),
                p.expires_on.map(|t| t.unix()),
                request.actor.at.unix()
            ])
            .map_err(from_sqlite)?;
    }
    Ok(outcomes)
}

fn outbox_row(r: &Row<'_>) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        operator: r.get(2)?,
        occurred_at: r.get(3)?,
        reference_number: r.get(4)?,
        number: r.get(5)?,
        customer: r.get(6)?,
        amount_minor: r.get(7)?,
        currency: r.get(8)?,
        local_amount_minor: r.get(9)?,
        local_currency: r.get(10)?,
        paid_through_date: r.get(11)?,
        status: r.get(12)?,
        received_on: r.get(13)?,
        stamps: [r.get(14)?, r.get(15)?, r.get(16)?, r.get(17)?],
        netflix_charge_id: r.get(18)?,
        subscription_number: r.get(19)?,
        subscription_customer: r.get(20)?,
        netflix_customer: r.get(21)?,
        life_cycle_state: r.get(22)?,
        netflix_state: r.get(23)?,
        created_at: r.get(24)?,
        channel: r.get(25)?,
        details: [r.get(26)?, r.get(27)?, r.get(28)?, r.get(29)?, r.get(30)?],
    })
}

fn outbox(
    conn: &Connection,
    operator_id: Option<i64>,
    limit: u32,
) -> StoreResult<Vec<OutboxEvent>> {
    let rows = if let Some(operator) = operator_id {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} WHERE o.operator_id = ?1 AND o.delivered_at IS NULL \
                 ORDER BY o.id LIMIT ?2"
            ))
            .map_err(from_sqlite)?;
        stmt.query_map(params![operator, i64::from(limit)], outbox_row)
            .map_err(from_sqlite)?
            .collect::<Result<Vec<_>, _>>()
    } else {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {OUTBOX_COLUMNS} WHERE o.delivered_at IS NULL ORDER BY o.id LIMIT ?1"
            ))
            .map_err(from_sqlite)?;
        stmt.query_map(params![i64::from(limit)], outbox_row)
            .map_err(from_sqlite)?
            .collect::<Result<Vec<_>, _>>()
    }
    .map_err(from_sqlite)?;
    rows.into_iter().map(OutboxRow::into_event).collect()
}

fn ack(conn: &Connection, operator_id: Option<i64>, ids: &[i64], at: i64) -> StoreResult<u64> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE outbox SET delivered_at = ?3 WHERE id = ?1 AND delivered_at IS NULL \
               AND (?2 IS NULL OR operator_id = ?2)",
        )
        .map_err(from_sqlite)?;
    let mut changed = 0;
    for id in ids {
        changed += stmt
            .execute(params![id, operator_id, at])
            .map_err(from_sqlite)? as u64;
    }
    Ok(changed)
}

#[async_trait]
impl Connector for SqliteStore {
    async fn connector_key(&self, hash: &KeyHash) -> StoreResult<Option<ConnectorCaller>> {
        let row = self.readers.read(|conn| {
            conn.prepare_cached(
                "SELECT k.id, k.operator_id, o.code, o.local_currency, \
                        k.revoked_at IS NOT NULL \
                 FROM connector_keys k JOIN operators o ON o.id = k.operator_id \
                 WHERE k.hash = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&hash.0[..]], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, bool>(4)?,
                    ))
                })
                .optional()
            })
            .map_err(from_sqlite)
        })?;
        row.map(|(key_id, operator_id, code, currency, revoked)| {
            Ok(ConnectorCaller {
                key_id,
                operator_id,
                operator_code: operator_code(code)?,
                local_currency: Currency::parse(&currency).map_err(corrupt)?,
                revoked,
            })
        })
        .transpose()
    }

    async fn intake(&self, request: &IntakeRequest) -> StoreResult<Vec<IntakeOutcome>> {
        let request = request.clone();
        self.writer
            .write(request.items.len().max(1), move |conn| {
                intake(conn, &request)
            })
            .await
    }

    async fn record_verdicts(&self, request: &VerdictRequest) -> StoreResult<Vec<VerdictOutcome>> {
        let request = request.clone();
        self.writer
            .write(request.items.len().max(1), move |conn| {
                record_verdicts(conn, &request)
            })
            .await
    }

    async fn activate(&self, request: &Activation) -> StoreResult<ActivationOutcome> {
        let request = request.clone();
        self.writer
            .write(1, move |conn| activate(conn, &request))
            .await
    }

    async fn report_netflix_state(&self, request: &NetflixStateReport) -> StoreResult<bool> {
        let request = request.clone();
        self.writer
            .write(1, move |conn| report_state(conn, &request))
            .await
    }

    async fn upsert_promotions(
        &self,
        request: &PromotionUpsert,
    ) -> StoreResult<Vec<Option<ItemFailure>>> {
        let request = request.clone();
        self.writer
            .write(request.items.len().max(1), move |conn| {
                upsert_promotions(conn, &request)
            })
            .await
    }

    async fn outbox(&self, operator_id: Option<i64>, limit: u32) -> StoreResult<Vec<OutboxEvent>> {
        self.readers.read(|conn| outbox(conn, operator_id, limit))
    }

    async fn ack_outbox(
        &self,
        operator_id: Option<i64>,
        ids: &[i64],
        at: Timestamp,
    ) -> StoreResult<u64> {
        let ids = ids.to_vec();
        self.writer
            .write(ids.len().max(1), move |conn| {
                ack(conn, operator_id, &ids, at.unix())
            })
            .await
    }

    async fn outbox_backlog(&self) -> StoreResult<OutboxBacklog> {
        self.readers.read(|conn| {
            let (waiting, oldest): (i64, Option<i64>) = conn
                .prepare_cached(
                    "SELECT count(*), (SELECT occurred_at FROM outbox WHERE delivered_at IS NULL \
                                       ORDER BY id LIMIT 1) \
                     FROM outbox WHERE delivered_at IS NULL",
                )
                .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
                .map_err(from_sqlite)?;
            Ok(OutboxBacklog {
                waiting: u64::try_from(waiting).unwrap_or(0),
                oldest: rows::opt_timestamp(oldest)?,
            })
        })
    }

    async fn take_push_lease(
        &self,
        holder: &str,
        now: Timestamp,
        until: Timestamp,
    ) -> StoreResult<bool> {
        let holder = holder.to_owned();
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "INSERT INTO outbox_lease (id, holder, until) VALUES (1, ?1, ?3) \
                     ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, \
                         until = excluded.until \
                     WHERE outbox_lease.holder = excluded.holder OR outbox_lease.until <= ?2",
                )
                .and_then(|mut s| s.execute(params![holder, now.unix(), until.unix()]))
                .map(|changed| changed > 0)
                .map_err(from_sqlite)
            })
            .await
    }
}

#[async_trait]
impl ConnectorAdmin for SqliteStore {
    async fn create_connector_key(&self, key: &NewConnectorKey) -> StoreResult<()> {
        let key = key.clone();
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "INSERT INTO connector_keys (operator_id, prefix, hash, name, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        key.operator_id,
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

    async fn connector_keys(&self, operator_id: Option<i64>) -> StoreResult<Vec<ConnectorKeyInfo>> {
        self.readers.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT k.prefix, o.code, k.name, k.created_at, k.revoked_at \
                     FROM connector_keys k JOIN operators o ON o.id = k.operator_id \
                     WHERE ?1 IS NULL OR k.operator_id = ?1 ORDER BY k.id",
                )
                .map_err(from_sqlite)?;
            let rows = stmt
                .query_map([operator_id], |r| {
                    Ok(ConnectorKeyRow {
                        prefix: r.get(0)?,
                        operator: r.get(1)?,
                        name: r.get(2)?,
                        created_at: r.get(3)?,
                        revoked_at: r.get(4)?,
                    })
                })
                .map_err(from_sqlite)?;
            rows.map(|r| r.map_err(from_sqlite)?.into_info()).collect()
        })
    }

    async fn revoke_connector_key(
        &self,
        prefix: &str,
        now: Timestamp,
    ) -> StoreResult<RevokeOutcome> {
        let prefix = prefix.to_owned();
        self.writer
            .write(1, move |conn| match super::subscriptions::revoke_by_prefix(
                conn,
                "connector_keys",
                &prefix,
                now,
            )? {
                Ok(_) => Ok(RevokeOutcome::Revoked { tokens: 0 }),
                Err(outcome) => Ok(outcome),
            })
            .await
    }
}
