//! The Netflix charge and its life cycle.

use std::fmt;

use crate::clock::{Date, Timestamp};
use crate::money::Money;
use crate::text::{ChargeNumber, CustomerId};

/// Where a charge is in its life. `Pending` is the only open state; the other four are
/// final ("processed").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChargeStatus {
    Pending,
    Approved,
    Declined,
    BadRequest,
    Rejected,
}

impl ChargeStatus {
    pub const ALL: [ChargeStatus; 5] = [
        ChargeStatus::Pending,
        ChargeStatus::Approved,
        ChargeStatus::Declined,
        ChargeStatus::BadRequest,
        ChargeStatus::Rejected,
    ];

    /// The wire and database spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChargeStatus::Pending => "PENDING",
            ChargeStatus::Approved => "APPROVED",
            ChargeStatus::Declined => "DECLINED",
            ChargeStatus::BadRequest => "BAD_REQUEST",
            ChargeStatus::Rejected => "REJECTED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_final(&self) -> bool {
        !matches!(self, ChargeStatus::Pending)
    }

    pub fn group(&self) -> StatusGroup {
        if self.is_final() {
            StatusGroup::Processed
        } else {
            StatusGroup::NotProcessed
        }
    }
}

impl fmt::Display for ChargeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The two groups `charges/list` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusGroup {
    /// `PENDING` charges.
    NotProcessed,
    /// The four final states.
    Processed,
}

impl StatusGroup {
    pub fn as_str(&self) -> &'static str {
        match self {
            StatusGroup::NotProcessed => "NOT_PROCESSED",
            StatusGroup::Processed => "PROCESSED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NOT_PROCESSED" => Some(StatusGroup::NotProcessed),
            "PROCESSED" => Some(StatusGroup::Processed),
            _ => None,
        }
    }
}

/// A charge as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub number: ChargeNumber,
    pub customer: CustomerId,
    pub amount: Money,
    pub local_amount: Money,
    pub paid_through_date: Date,
    pub status: ChargeStatus,
    pub received_on: Timestamp,
    pub set_as_approved_on: Option<Timestamp>,
    pub set_as_declined_on: Option<Timestamp>,
    pub set_as_bad_request_on: Option<Timestamp>,
    pub set_as_rejected_on: Option<Timestamp>,
}

/// The thirteen fields of a charge, in the order the contract lists them; `fields_set`
/// selects among these names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChargeField {
    Number,
    BillingSystemCustomerIdentifier,
    Amount,
    Currency,
    LocalCurrencyAmount,
    LocalCurrency,
    PaidThroughDate,
    ChargeStatus,
    ReceivedOn,
    SetAsApprovedOn,
    SetAsDeclinedOn,
    SetAsBadRequestOn,
    SetAsRejectedRequestOn,
}

impl ChargeField {
    pub const ALL: [ChargeField; 13] = [
        ChargeField::Number,
        ChargeField::BillingSystemCustomerIdentifier,
        ChargeField::Amount,
        ChargeField::Currency,
        ChargeField::LocalCurrencyAmount,
        ChargeField::LocalCurrency,
        ChargeField::PaidThroughDate,
        ChargeField::ChargeStatus,
        ChargeField::ReceivedOn,
        ChargeField::SetAsApprovedOn,
        ChargeField::SetAsDeclinedOn,
        ChargeField::SetAsBadRequestOn,
        ChargeField::SetAsRejectedRequestOn,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            ChargeField::Number => "number",
            ChargeField::BillingSystemCustomerIdentifier => "billing_system_customer_identifier",
            ChargeField::Amount => "amount",
            ChargeField::Currency => "currency",
            ChargeField::LocalCurrencyAmount => "local_currency_amount",
            ChargeField::LocalCurrency => "local_currency",
            ChargeField::PaidThroughDate => "paid_through_date",
            ChargeField::ChargeStatus => "charge_status",
            ChargeField::ReceivedOn => "received_on",
            ChargeField::SetAsApprovedOn => "set_as_approved_on",
            ChargeField::SetAsDeclinedOn => "set_as_declined_on",
            ChargeField::SetAsBadRequestOn => "set_as_bad_request_on",
            // CRM.COM's spelling, extra `_request` included.
            ChargeField::SetAsRejectedRequestOn => "set_as_rejected_request_on",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_wire_spelling() {
        for st in ChargeStatus::ALL {
            assert_eq!(ChargeStatus::parse(st.as_str()), Some(st));
        }
        assert_eq!(ChargeStatus::parse("pending"), None);
    }

    #[test]
    fn only_pending_is_open() {
        let open: Vec<_> = ChargeStatus::ALL
            .into_iter()
            .filter(|s| !s.is_final())
            .collect();
        assert_eq!(open, vec![ChargeStatus::Pending]);
    }

    #[test]
    fn field_names_round_trip_and_keep_crm_com_spelling() {
        for f in ChargeField::ALL {
            assert_eq!(ChargeField::parse(f.name()), Some(f));
        }
        assert_eq!(
            ChargeField::parse("set_as_rejected_request_on"),
            Some(ChargeField::SetAsRejectedRequestOn)
        );
        assert_eq!(ChargeField::parse("set_as_rejected_on"), None);
    }
}
