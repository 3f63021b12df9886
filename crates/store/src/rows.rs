//! Turning stored columns back into domain values, shared by both backends. Each backend
//! reads its rows by column name into the plain structs here; the conversions to domain
//! types live here once. Every stored value went through a domain parser on the way in,
//! so a failure here means the database was changed behind chargegate's back; it is
//! reported, never papered over.

use chargegate_core::batch::{Acknowledgement, ChargeState, Decision, Method};
use chargegate_core::charge::{Charge, ChargeStatus};
use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{
    AttemptPermit, LoginPolicy, Operator, StoreResult, StoredIntake, TokenRecord, TokenSecret,
};
use chargegate_core::text::{ChargeNumber, CustomerId, OperatorCode, ReferenceNumber};

use crate::error::corrupt;

pub(crate) fn status(s: &str) -> StoreResult<ChargeStatus> {
    ChargeStatus::parse(s).ok_or_else(|| corrupt(format_args!("charge status {s:?}")))
}

pub(crate) fn timestamp(secs: i64) -> StoreResult<Timestamp> {
    Timestamp::from_unix(secs).map_err(corrupt)
}

pub(crate) fn token_secret(
    generation: i64,
    secret: &[u8],
    created_at: i64,
) -> StoreResult<TokenSecret> {
    Ok(TokenSecret {
        generation,
        secret: secret
            .try_into()
            .map_err(|_| corrupt(format_args!("token secret {generation} is not 32 bytes")))?,
        created_at: timestamp(created_at)?,
    })
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

/// The columns of a charge as `charges/list` shows it. Short text columns are borrowed
/// from the result row: they are parsed into values, never kept as text.
pub(crate) struct ChargeRow<'a> {
    pub number: String,
    pub customer: String,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub local_amount_minor: i64,
    pub local_currency: &'a str,
    pub paid_through_date: &'a str,
    pub status: &'a str,
    pub received_on: i64,
    pub set_as_approved_on: Option<i64>,
    pub set_as_declined_on: Option<i64>,
    pub set_as_bad_request_on: Option<i64>,
    pub set_as_rejected_on: Option<i64>,
}

impl ChargeRow<'_> {
    pub(crate) fn into_charge(self) -> StoreResult<Charge> {
        Ok(Charge {
            number: number(self.number)?,
            customer: customer(self.customer)?,
            amount: money(self.amount_minor, self.currency)?,
            local_amount: money(self.local_amount_minor, self.local_currency)?,
            paid_through_date: date(self.paid_through_date)?,
            status: status(self.status)?,
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

/// Decides a login attempt from the counters `begin_login_attempt` returned.
pub(crate) fn permit(
    attempts: i64,
    locked_until: Option<i64>,
    now: Timestamp,
    policy: LoginPolicy,
) -> StoreResult<AttemptPermit> {
    match locked_until {
        Some(until) if until > now.unix() => Ok(AttemptPermit::LockedOut {
            until: timestamp(until)?,
        }),
        _ if attempts > i64::from(policy.max_failures) => Ok(AttemptPermit::LockedOut {
            until: now.plus_seconds(policy.lockout_seconds),
        }),
        _ => Ok(AttemptPermit::Allowed),
    }
}

/// An operator from its stored columns.
pub(crate) fn operator(
    id: i64,
    code: String,
    name: String,
    local_currency: &str,
) -> StoreResult<Operator> {
    Ok(Operator {
        id,
        code: OperatorCode::parse(code).map_err(corrupt)?,
        name,
        local_currency: Currency::parse(local_currency).map_err(corrupt)?,
    })
}

/// A token lookup's columns.
pub(crate) struct TokenRow {
    pub user_id: i64,
    pub operator_id: i64,
    pub operator_code: String,
    pub expires_at: i64,
    pub revoked: bool,
    pub user_enabled: bool,
    pub key_id: Option<i64>,
}

impl TokenRow {
    pub(crate) fn into_record(self) -> StoreResult<TokenRecord> {
        Ok(TokenRecord {
            user_id: self.user_id,
            operator_id: self.operator_id,
            operator_code: OperatorCode::parse(self.operator_code).map_err(corrupt)?,
            expires_at: timestamp(self.expires_at)?,
            revoked: self.revoked,
            user_enabled: self.user_enabled,
            key_id: self.key_id,
        })
    }
}

/// Tokens this long past their expiry are deleted: until then a client still hears
/// EXPIRED_TOKEN rather than INVALID_TOKEN.
pub(crate) const TOKEN_RETENTION_SECONDS: i64 = 7 * 24 * 3600;
