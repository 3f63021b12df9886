//! Turning stored columns back into domain values, shared by both backends. Every stored
//! value went through a domain parser on the way in, so a failure here means the database
//! was changed behind chargegate's back; it is reported, never papered over.

use chargegate_core::batch::{Acknowledgement, ChargeState, Decision, Method};
use chargegate_core::charge::{Charge, ChargeStatus};
use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{StoreResult, StoredIntake};
use chargegate_core::text::{ChargeNumber, CustomerId, ReferenceNumber};

use crate::error::corrupt;

pub(crate) fn status(s: &str) -> StoreResult<ChargeStatus> {
    ChargeStatus::parse(s).ok_or_else(|| corrupt(format_args!("charge status {s:?}")))
}

pub(crate) fn timestamp(secs: i64) -> StoreResult<Timestamp> {
    Timestamp::from_unix(secs).map_err(corrupt)
}

pub(crate) fn opt_timestamp(secs: Option<i64>) -> StoreResult<Option<Timestamp>> {
    secs.map(timestamp).transpose()
}

pub(crate) fn money(minor: i64, currency: &str) -> StoreResult<Money> {
    Ok(Money::from_minor(
        minor,
        Currency::parse(currency).map_err(corrupt)?,
    ))
}

pub(crate) fn number(s: String) -> StoreResult<ChargeNumber> {
    ChargeNumber::parse(s).map_err(corrupt)
}

pub(crate) fn customer(s: String) -> StoreResult<CustomerId> {
    CustomerId::parse(s).map_err(corrupt)
}

pub(crate) fn reference(s: Option<String>) -> StoreResult<Option<ReferenceNumber>> {
    s.map(ReferenceNumber::parse).transpose().map_err(corrupt)
}

pub(crate) fn date(s: &str) -> StoreResult<Date> {
    Date::parse(s).map_err(corrupt)
}

/// The columns of a charge as `charges/list` shows it, in [`CHARGE_COLUMNS`] order.
pub(crate) struct ChargeRow {
    pub number: String,
    pub customer: String,
    pub amount_minor: i64,
    pub currency: String,
    pub local_amount_minor: i64,
    pub local_currency: String,
    pub paid_through_date: String,
    pub status: String,
    pub received_on: i64,
    pub set_as_approved_on: Option<i64>,
    pub set_as_declined_on: Option<i64>,
    pub set_as_bad_request_on: Option<i64>,
    pub set_as_rejected_on: Option<i64>,
}

pub(crate) const CHARGE_COLUMNS: &str = "number, customer_id, amount_minor, currency, \
     local_amount_minor, local_currency, paid_through_date, status, received_on, \
     set_as_approved_on, set_as_declined_on, set_as_bad_request_on, set_as_rejected_on";

impl ChargeRow {
    pub(crate) fn into_charge(self) -> StoreResult<Charge> {
        Ok(Charge {
            number: number(self.number)?,
            customer: customer(self.customer)?,
            amount: money(self.amount_minor, &self.currency)?,
            local_amount: money(self.local_amount_minor, &self.local_currency)?,
            paid_through_date: date(&self.paid_through_date)?,
            status: status(&self.status)?,
            received_on: timestamp(self.received_on)?,
            set_as_approved_on: opt_timestamp(self.set_as_approved_on)?,
            set_as_declined_on: opt_timestamp(self.set_as_declined_on)?,
            set_as_bad_request_on: opt_timestamp(self.set_as_bad_request_on)?,
            set_as_rejected_on: opt_timestamp(self.set_as_rejected_on)?,
        })
    }
}

/// What a batch reads of one charge, in [`STATE_COLUMNS`] order.
pub(crate) struct StateRow {
    pub id: i64,
    pub number: String,
    pub customer: String,
    pub status: String,
    pub decision_method: Option<String>,
    pub decision_reference: Option<String>,
    pub acknowledged_status: Option<String>,
    pub acknowledged_reference: Option<String>,
}

/// Columns of `charges c LEFT JOIN decisions d ON d.charge_id = c.id`.
pub(crate) const STATE_COLUMNS: &str = "c.id, c.number, c.customer_id, c.status, d.method, \
     d.reference_number, c.acknowledged_status, c.acknowledged_reference_number";

impl StateRow {
    pub(crate) fn into_state(self) -> StoreResult<(ChargeNumber, ChargeState)> {
        let decision = match self.decision_method {
            Some(m) => Some(Decision {
                method: Method::parse(&m).ok_or_else(|| corrupt(format_args!("method {m:?}")))?,
                reference: reference(self.decision_reference)?,
            }),
            None => None,
        };
        let acknowledgement = match self.acknowledged_status {
            Some(s) => Some(Acknowledgement {
                status: status(&s)?,
                reference: reference(self.acknowledged_reference)?,
            }),
            None => None,
        };
        Ok((
            number(self.number)?,
            ChargeState {
                id: self.id,
                customer: customer(self.customer)?,
                status: status(&self.status)?,
                decision,
                acknowledgement,
            },
        ))
    }
}

/// A stored charge's intake data, in [`INTAKE_COLUMNS`] order.
pub(crate) struct IntakeRow {
    pub number: String,
    pub operator_id: i64,
    pub customer: String,
    pub netflix_customer: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub local_amount_minor: i64,
    pub local_currency: String,
    pub paid_through_date: String,
    pub received_on: i64,
    pub initial_status: String,
}

pub(crate) const INTAKE_COLUMNS: &str = "number, operator_id, customer_id, netflix_customer_id, \
     amount_minor, currency, local_amount_minor, local_currency, paid_through_date, \
     received_on, initial_status";

impl IntakeRow {
    pub(crate) fn into_intake(self) -> StoreResult<(String, StoredIntake)> {
        Ok((
            self.number,
            StoredIntake {
                operator_id: self.operator_id,
                customer: customer(self.customer)?,
                netflix_customer: self.netflix_customer,
                amount: money(self.amount_minor, &self.currency)?,
                local_amount: money(self.local_amount_minor, &self.local_currency)?,
                paid_through_date: date(&self.paid_through_date)?,
                received_on: timestamp(self.received_on)?,
                initial_status: status(&self.initial_status)?,
            },
        ))
    }
}

/// The column that records when a charge entered `status`, if it is a final one.
pub(crate) fn stamp_column(status: ChargeStatus) -> Option<&'static str> {
    match status {
        ChargeStatus::Pending => None,
        ChargeStatus::Approved => Some("set_as_approved_on"),
        ChargeStatus::Declined => Some("set_as_declined_on"),
        ChargeStatus::BadRequest => Some("set_as_bad_request_on"),
        ChargeStatus::Rejected => Some("set_as_rejected_on"),
    }
}
