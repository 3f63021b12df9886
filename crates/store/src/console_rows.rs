//! The console's stored columns back into domain values, shared by both backends (as
//! `audit_rows` does for the audit trail). The SQL lives here too where it is the same
//! text on both: only the placeholders differ, and each backend spells them its way.

use chargegate_core::console::{SessionRecord, SubscriptionEvent, SubscriptionHit};
use chargegate_core::store::StoreResult;
use chargegate_core::subscription::{LifeCycleState, NetflixState};
use chargegate_core::text::{OperatorCode, Username};

use crate::error::corrupt;
use crate::rows::{customer, timestamp};

/// A session's columns, joined with its user and operator.
pub(crate) struct SessionRow {
    pub user_id: i64,
    pub username: String,
    pub operator_id: i64,
    pub operator_code: String,
    pub operator_name: String,
    pub enabled: bool,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

impl SessionRow {
    pub(crate) fn into_record(self) -> StoreResult<SessionRecord> {
        Ok(SessionRecord {
            user_id: self.user_id,
            username: Username::parse(self.username).map_err(corrupt)?,
            operator_id: self.operator_id,
            operator_code: OperatorCode::parse(self.operator_code).map_err(corrupt)?,
            operator_name: self.operator_name,
            user_enabled: self.enabled,
            last_seen_at: timestamp(self.last_seen_at)?,
            expires_at: timestamp(self.expires_at)?,
        })
    }
}

/// A subscription's columns as the console's search lists it.
pub(crate) struct HitRow {
    pub id: i64,
    pub number: String,
    pub customer: String,
    pub netflix_customer: Option<String>,
    pub state: String,
    pub netflix_state: String,
    pub created_at: i64,
}

impl HitRow {
    pub(crate) fn into_hit(self) -> StoreResult<SubscriptionHit> {
        Ok(SubscriptionHit {
            number: self.number,
            customer: customer(self.customer)?,
            netflix_customer: self.netflix_customer,
            state: LifeCycleState::parse(&self.state)
                .ok_or_else(|| corrupt(format_args!("life cycle state {:?}", self.state)))?,
            netflix_state: NetflixState::parse(&self.netflix_state)
                .ok_or_else(|| corrupt(format_args!("netflix state {:?}", self.netflix_state)))?,
            created_on: timestamp(self.created_at)?,
        })
    }
}

/// A subscription history row's columns.
pub(crate) struct EventRow {
    pub at: i64,
    pub event: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    pub username: Option<String>,
    pub charge_number: Option<String>,
    pub via_console: bool,
}

impl EventRow {
    pub(crate) fn into_event(self) -> StoreResult<SubscriptionEvent> {
        Ok(SubscriptionEvent {
            at: timestamp(self.at)?,
            event: self.event,
            from_state: self.from_state,
            to_state: self.to_state,
            username: self.username,
            charge_number: self.charge_number,
            via_console: self.via_console,
        })
    }
}

/// The columns of a charge, for the console's charge table.
pub(crate) const CHARGE_COLUMNS: &str = "number, customer_id, amount_minor, currency, \
     local_amount_minor, local_currency, paid_through_date, status, received_on, \
     set_as_approved_on, set_as_declined_on, set_as_bad_request_on, set_as_rejected_on";

/// The columns of a subscription, for [`HitRow`].
pub(crate) const HIT_COLUMNS: &str = "id, number, customer_id, netflix_customer_id, \
     life_cycle_state, netflix_state, created_at";
