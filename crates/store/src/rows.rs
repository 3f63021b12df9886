//! Turning stored columns back into domain values, shared by both backends. Every stored
//! value went through a domain parser on the way in, so a failure here means the database
//! was changed behind chargegate's back; it is reported, never papered over.

use chargegate_core::batch::{Acknowledgement, ChargeState, Decision, Method};
use chargegate_core::charge::{Charge, ChargeStatus};
use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{
    AttemptPermit, LoginPolicy, LoginUser, Operator, StoreResult, StoredIntake, TokenRecord,
};
use chargegate_core::text::{ChargeNumber, CustomerId, OperatorCode, ReferenceNumber};

use crate::error::corrupt;

/// Typed access to a result row's columns by position, for both backends' rows, so each
/// row shape below is read by one function.
pub(crate) trait Columns {
    fn int(&self, i: usize) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, sqlx::Error>;
    fn text(&self, i: usize) -> Result<String, sqlx::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
    fn flag(&self, i: usize) -> Result<bool, sqlx::Error>;
    fn bytes(&self, i: usize) -> Result<Vec<u8>, sqlx::Error>;
}

macro_rules! columns_for {
    ($row:ty) => {
        impl Columns for $row {
            fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
                sqlx::Row::try_get(self, i)
            }
            fn opt_int(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
                sqlx::Row::try_get(self, i)
            }
            fn text(&self, i: usize) -> Result<String, sqlx::Error> {
                sqlx::Row::try_get(self, i)
            }
            fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
                sqlx::Row::try_get(self, i)
            }
            fn flag(&self, i: usize) -> Result<bool, sqlx::Error> {
                sqlx::Row::try_get(self, i)
            }
            fn bytes(&self, i: usize) -> Result<Vec<u8>, sqlx::Error> {
                sqlx::Row::try_get(self, i)
            }
        }
    };
}
columns_for!(sqlx::sqlite::SqliteRow);
columns_for!(sqlx::postgres::PgRow);

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
    pub(crate) fn read(r: &impl Columns) -> Result<Self, sqlx::Error> {
        Ok(ChargeRow {
            number: r.text(0)?,
            customer: r.text(1)?,
            amount_minor: r.int(2)?,
            currency: r.text(3)?,
            local_amount_minor: r.int(4)?,
            local_currency: r.text(5)?,
            paid_through_date: r.text(6)?,
            status: r.text(7)?,
            received_on: r.int(8)?,
            set_as_approved_on: r.opt_int(9)?,
            set_as_declined_on: r.opt_int(10)?,
            set_as_bad_request_on: r.opt_int(11)?,
            set_as_rejected_on: r.opt_int(12)?,
        })
    }

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
    pub(crate) fn read(r: &impl Columns) -> Result<Self, sqlx::Error> {
        Ok(StateRow {
            id: r.int(0)?,
            number: r.text(1)?,
            customer: r.text(2)?,
            status: r.text(3)?,
            decision_method: r.opt_text(4)?,
            decision_reference: r.opt_text(5)?,
            acknowledged_status: r.opt_text(6)?,
            acknowledged_reference: r.opt_text(7)?,
        })
    }

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
    pub(crate) fn read(r: &impl Columns) -> Result<Self, sqlx::Error> {
        Ok(IntakeRow {
            number: r.text(0)?,
            operator_id: r.int(1)?,
            customer: r.text(2)?,
            netflix_customer: r.opt_text(3)?,
            amount_minor: r.int(4)?,
            currency: r.text(5)?,
            local_amount_minor: r.int(6)?,
            local_currency: r.text(7)?,
            paid_through_date: r.text(8)?,
            received_on: r.int(9)?,
            initial_status: r.text(10)?,
        })
    }

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

/// Columns of `operators` as [`operator`] reads them.
pub(crate) const OPERATOR_COLUMNS: &str = "id, code, name, local_currency";

pub(crate) fn operator(r: &impl Columns) -> StoreResult<Operator> {
    let read = || -> Result<(i64, String, String, String), sqlx::Error> {
        Ok((r.int(0)?, r.text(1)?, r.text(2)?, r.text(3)?))
    };
    let (id, code, name, currency) = read().map_err(crate::error::from_sqlx)?;
    Ok(Operator {
        id,
        code: OperatorCode::parse(code).map_err(corrupt)?,
        name,
        local_currency: Currency::parse(&currency).map_err(corrupt)?,
    })
}

/// Columns of a token lookup as [`token_record`] reads them (`t` tokens, `u` users, `o`
/// operators).
pub(crate) const TOKEN_COLUMNS: &str =
    "t.user_id, u.operator_id, o.code, t.expires_at, t.revoked_at IS NOT NULL, u.enabled";

pub(crate) fn token_record(r: &impl Columns) -> StoreResult<TokenRecord> {
    let read = || -> Result<_, sqlx::Error> {
        Ok((
            r.int(0)?,
            r.int(1)?,
            r.text(2)?,
            r.int(3)?,
            r.flag(4)?,
            r.flag(5)?,
        ))
    };
    let (user_id, operator_id, code, expires_at, revoked, user_enabled) =
        read().map_err(crate::error::from_sqlx)?;
    Ok(TokenRecord {
        user_id,
        operator_id,
        operator_code: OperatorCode::parse(code).map_err(corrupt)?,
        expires_at: timestamp(expires_at)?,
        revoked,
        user_enabled,
    })
}

pub(crate) const LOGIN_USER_COLUMNS: &str = "u.id, u.operator_id, u.password_hash, u.enabled";

pub(crate) fn login_user(r: &impl Columns) -> StoreResult<LoginUser> {
    let read = || -> Result<_, sqlx::Error> {
        Ok(LoginUser {
            user_id: r.int(0)?,
            operator_id: r.int(1)?,
            password_hash: r.text(2)?,
            enabled: r.flag(3)?,
        })
    };
    read().map_err(crate::error::from_sqlx)
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

/// Tokens this long past their expiry are deleted: until then a client still hears
/// EXPIRED_TOKEN rather than INVALID_TOKEN.
pub(crate) const TOKEN_RETENTION_SECONDS: i64 = 7 * 24 * 3600;

/// A `reference_number, number` pair of a used-references query.
pub(crate) fn used_reference(r: &impl Columns) -> StoreResult<(ReferenceNumber, ChargeNumber)> {
    let read = || -> Result<_, sqlx::Error> { Ok((r.text(0)?, r.text(1)?)) };
    let (reference, charge) = read().map_err(crate::error::from_sqlx)?;
    Ok((
        ReferenceNumber::parse(reference).map_err(corrupt)?,
        number(charge)?,
    ))
}

/// The `id, status` an import's INSERT returns.
pub(crate) fn id_and_status(r: &impl Columns) -> Result<(i64, String), sqlx::Error> {
    Ok((r.int(0)?, r.text(1)?))
}
