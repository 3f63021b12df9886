//! Turning the audit trail's stored columns into domain values, shared by both backends
//! (as `rows.rs` does for the serving paths).

use chargegate_core::accounts::UserSummary;
use chargegate_core::audit::{
    Actor, ActorColumns, ChargeRecord, FeedCursor, FeedEntry, HistoryEntry, HistoryEvent,
};
use chargegate_core::charge::{Charge, ChargeStatus};
use chargegate_core::store::StoreResult;
use chargegate_core::text::{OperatorCode, Username};

use crate::error::corrupt;
use crate::rows::{self, ChargeRow};

/// A history row's columns.
pub(crate) struct HistoryRow {
    pub at: i64,
    pub event: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub username: Option<String>,
    pub request_id: Option<String>,
    pub reference_number: Option<String>,
    pub key_prefix: Option<String>,
    pub via_console: bool,
    /// Why (Netflix's verdicts); the feed does not read it.
    pub reason: Option<String>,
}

impl HistoryRow {
    pub(crate) fn into_entry(self) -> StoreResult<HistoryEntry> {
        let from = self.from_status.as_deref().map(rows::status).transpose()?;
        let to = rows::status(&self.to_status)?;
        Ok(HistoryEntry {
            at: rows::timestamp(self.at)?,
            event: HistoryEvent::of(from, to),
            from_status: from,
            to_status: to,
            actor: Actor::of(&ActorColumns {
                event: &self.event,
                username: self.username.as_deref(),
                key_prefix: self.key_prefix.as_deref(),
                via_console: self.via_console,
            }),
            request_id: self.request_id,
            reference_number: self.reference_number,
            reason: self.reason,
        })
    }
}

/// The columns `charges/show` reads beside the charge's own.
pub(crate) struct RecordRow<'a> {
    pub operator: String,
    pub charge: ChargeRow<'a>,
    pub reference_number: Option<String>,
    pub netflix_customer: Option<String>,
    pub acknowledged_status: Option<String>,
    pub subscription_number: Option<String>,
}

impl RecordRow<'_> {
    pub(crate) fn into_record(self, history: Vec<HistoryEntry>) -> StoreResult<ChargeRecord> {
        let charge: Charge = self.charge.into_charge()?;
        Ok(ChargeRecord {
            operator: OperatorCode::parse(self.operator).map_err(corrupt)?,
            charge,
            reference_number: self.reference_number,
            netflix_customer: self.netflix_customer,
            subscription_number: self.subscription_number,
            acknowledged_status: self
                .acknowledged_status
                .as_deref()
                .map(rows::status)
                .transpose()?,
            history,
        })
    }
}

/// A feed row's columns.
pub(crate) struct FeedRow {
    pub commit: i64,
    pub row: i64,
    pub number: String,
    pub customer: String,
    pub history: HistoryRow,
    pub amount_minor: i64,
    pub currency: String,
}

impl FeedRow {
    pub(crate) fn into_entry(self) -> StoreResult<FeedEntry> {
        let entry = self.history.into_entry()?;
        let from_status: ChargeStatus = entry
            .from_status
            .ok_or_else(|| corrupt("a status change without a previous status"))?;
        Ok(FeedEntry {
            position: FeedCursor {
                commit: self.commit,
                row: self.row,
            },
            number: rows::number(self.number)?,
            customer: rows::customer(self.customer)?,
            event: entry.event,
            from_status,
            to_status: entry.to_status,
            at: entry.at,
            actor: entry.actor,
            request_id: entry.request_id,
            reference_number: entry.reference_number,
            amount: rows::money(self.amount_minor, &self.currency)?,
        })
    }
}

/// A user row of `user list`.
pub(crate) struct UserRow {
    pub operator: String,
    pub username: String,
    pub enabled: bool,
    pub last_login_at: Option<i64>,
    pub attempts: Option<i64>,
    pub locked_until: Option<i64>,
}

impl UserRow {
    pub(crate) fn into_summary(self) -> StoreResult<UserSummary> {
        Ok(UserSummary {
            operator: OperatorCode::parse(self.operator).map_err(corrupt)?,
            username: Username::parse(self.username).map_err(corrupt)?,
            enabled: self.enabled,
            last_login: rows::opt_timestamp(self.last_login_at)?,
            failed_attempts: self.attempts.unwrap_or(0),
            locked_until: rows::opt_timestamp(self.locked_until)?,
        })
    }
}

/// Counts by status from `(status, count)` rows, one per status in `ChargeStatus::ALL`
/// order.
pub(crate) fn status_counts(
    found: impl IntoIterator<Item = (String, i64)>,
) -> StoreResult<Vec<(ChargeStatus, u64)>> {
    let mut counts: Vec<(ChargeStatus, u64)> = ChargeStatus::ALL.iter().map(|s| (*s, 0)).collect();
    for (status, n) in found {
        let status = rows::status(&status)?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = u64::try_from(n).unwrap_or(0);
        }
    }
    Ok(counts)
}

/// A status change: the feed's filter, written once for both backends' SQL.
pub(crate) const IS_STATUS_CHANGE: &str =
    "h.from_status IS NOT NULL AND h.from_status <> h.to_status";
