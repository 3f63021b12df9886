//! The connector's stored columns back into domain values, and the SQL both backends share
//! word for word (placeholders aside).

use chargegate_core::charge::Charge;
use chargegate_core::connector::{
    ConnectorKeyInfo, EventSubject, EventSubscription, EventType, OutboxEvent, StoredNetflixCharge,
};
use chargegate_core::store::StoreResult;
use chargegate_core::subscription::{CustomerDetails, LifeCycleState, NetflixState};

use crate::error::corrupt;
use crate::rows::{self, ChargeRow};
use crate::subscription_rows::operator_code;

/// The columns of an outbox read, in this order (both backends select exactly these).
pub(crate) const OUTBOX_COLUMNS: &str = "o.id, o.type, op.code AS operator, o.occurred_at, \
        o.reference_number, c.number, c.customer_id, c.amount_minor, c.currency, \
        c.local_amount_minor, c.local_currency, c.paid_through_date, c.status, c.received_on, \
        c.set_as_approved_on, c.set_as_declined_on, c.set_as_bad_request_on, \
        c.set_as_rejected_on, c.netflix_charge_id, s.number AS subscription_number, \
        s.customer_id AS subscription_customer, o.netflix_customer_id, o.life_cycle_state, \
        o.netflix_state, s.created_at, s.channel, s.customer_first_name, \
        s.customer_last_name, s.customer_address, s.customer_email, s.customer_phone \
     FROM outbox o JOIN operators op ON op.id = o.operator_id \
     LEFT JOIN charges c ON c.id = o.charge_id \
     LEFT JOIN subscriptions s ON s.id = o.subscription_id";

/// An outbox row with what it points at.
#[derive(Debug, Default)]
pub(crate) struct OutboxRow {
    pub id: i64,
    pub kind: String,
    pub operator: String,
    pub occurred_at: i64,
    pub reference_number: Option<String>,
    pub number: Option<String>,
    pub customer: Option<String>,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub local_amount_minor: Option<i64>,
    pub local_currency: Option<String>,
    pub paid_through_date: Option<String>,
    pub status: Option<String>,
    pub received_on: Option<i64>,
    pub stamps: [Option<i64>; 4],
    pub netflix_charge_id: Option<String>,
    pub subscription_number: Option<String>,
    pub subscription_customer: Option<String>,
    pub netflix_customer: Option<String>,
    pub life_cycle_state: Option<String>,
    pub netflix_state: Option<String>,
    pub created_at: Option<i64>,
    pub channel: Option<String>,
    pub details: [Option<String>; 5],
}

fn missing(what: &str) -> chargegate_core::StoreError {
    corrupt(format_args!("an outbox event without its {what}"))
}

impl OutboxRow {
    pub(crate) fn into_event(self) -> StoreResult<OutboxEvent> {
        let kind = EventType::parse(&self.kind)
            .ok_or_else(|| corrupt(format_args!("outbox event type {:?}", self.kind)))?;
        let occurred_on = rows::timestamp(self.occurred_at)?;
        let subject = match kind {
            EventType::ChargeApproved | EventType::ChargeDeclined => {
                let text = |v: &Option<String>, what: &str| -> StoreResult<String> {
                    v.clone().ok_or_else(|| missing(what))
                };
                let currency = text(&self.currency, "charge")?;
                let local_currency = text(&self.local_currency, "charge")?;
                let paid = text(&self.paid_through_date, "charge")?;
                let status = text(&self.status, "charge")?;
                let charge: Charge = ChargeRow {
                    number: text(&self.number, "charge")?,
                    customer: text(&self.customer, "charge")?,
                    amount_minor: self.amount_minor.ok_or_else(|| missing("charge"))?,
                    currency: &currency,
                    local_amount_minor: self.local_amount_minor.ok_or_else(|| missing("charge"))?,
                    local_currency: &local_currency,
                    paid_through_date: &paid,
                    status: &status,
                    received_on: self.received_on.ok_or_else(|| missing("charge"))?,
                    set_as_approved_on: self.stamps[0],
                    set_as_declined_on: self.stamps[1],
                    set_as_bad_request_on: self.stamps[2],
                    set_as_rejected_on: self.stamps[3],
                }
                .into_charge()?;
                EventSubject::Charge {
                    charge: Box::new(charge),
                    netflix_charge_id: self.netflix_charge_id,
                }
            }
            _ => {
                let state = self.life_cycle_state.as_deref().unwrap_or_default();
                let netflix_state = self.netflix_state.as_deref().unwrap_or_default();
                let [first_name, last_name, address, email, phone] = self.details;
                EventSubject::Subscription(Box::new(EventSubscription {
                    number: self
                        .subscription_number
                        .ok_or_else(|| missing("subscription"))?,
                    customer: rows::customer(
                        self.subscription_customer
                            .ok_or_else(|| missing("subscription"))?,
                    )?,
                    netflix_customer: self.netflix_customer,
                    state: LifeCycleState::parse(state)
                        .ok_or_else(|| corrupt(format_args!("life cycle state {state:?}")))?,
                    netflix_state: NetflixState::parse(netflix_state)
                        .ok_or_else(|| corrupt(format_args!("netflix state {netflix_state:?}")))?,
                    created_on: rows::timestamp(
                        self.created_at.ok_or_else(|| missing("subscription"))?,
                    )?,
                    // A cancelled subscription never changes again: its events after the
                    // cancellation cannot exist.
                    cancelled_on: (kind == EventType::SubscriptionCancelled).then_some(occurred_on),
                    customer_details: (kind == EventType::SubscriptionCreated).then_some((
                        CustomerDetails {
                            first_name,
                            last_name,
                            address,
                            email,
                            phone,
                        },
                        self.channel,
                    )),
                }))
            }
        };
        Ok(OutboxEvent {
            id: self.id,
            kind,
            operator: operator_code(self.operator)?,
            occurred_on,
            reference_number: self.reference_number,
            subject,
        })
    }
}

/// A charge stored under a Netflix id, as intake compares it.
pub(crate) struct StoredRow {
    pub netflix_charge_id: String,
    pub number: String,
    pub customer: String,
    pub amount_minor: i64,
    pub currency: String,
    pub local_amount_minor: i64,
    pub local_currency: String,
    pub paid_through_date: String,
    pub received_on: i64,
}

impl StoredRow {
    pub(crate) fn into_stored(self) -> StoreResult<(String, StoredNetflixCharge)> {
        Ok((
            self.netflix_charge_id,
            StoredNetflixCharge {
                number: rows::number(self.number)?,
                customer: rows::customer(self.customer)?,
                amount: rows::money(self.amount_minor, &self.currency)?,
                local_amount: rows::money(self.local_amount_minor, &self.local_currency)?,
                paid_through_date: rows::date(&self.paid_through_date)?,
                received_on: rows::timestamp(self.received_on)?,
            },
        ))
    }
}

pub(crate) struct ConnectorKeyRow {
    pub prefix: String,
    pub operator: String,
    pub name: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl ConnectorKeyRow {
    pub(crate) fn into_info(self) -> StoreResult<ConnectorKeyInfo> {
        Ok(ConnectorKeyInfo {
            prefix: self.prefix,
            operator: operator_code(self.operator)?,
            name: self.name,
            created_at: rows::timestamp(self.created_at)?,
            revoked_at: rows::opt_timestamp(self.revoked_at)?,
        })
    }
}
