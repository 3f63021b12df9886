//! The batch methods (`accept`, `decline`, `acknowledge`) and their per-item rules.
//!
//! A call carries up to 50 items. The HTTP edge applies rule 1 (is the item well formed?)
//! while parsing; [`judge`] applies the rest, in the contract's order, to every item
//! against a [`Snapshot`] of the stored charges that the store read inside its write
//! transaction. The store then writes exactly the items judged [`Verdict::Apply`].
//! Because `judge` is pure and shared, SQLite and PostgreSQL cannot disagree on a rule.
//!
//! An item's verdict depends only on the snapshot and the items *before* it, never on
//! later ones: that is what "the first rule that matches wins, in request order" means,
//! and the property tests hold `judge` to it.

use std::collections::HashMap;
use std::fmt;

use crate::charge::ChargeStatus;
use crate::clock::Timestamp;
use crate::text::{ChargeNumber, CustomerId, ReferenceNumber};

pub use crate::limits::MAX_ITEMS;

/// The three batch methods. They differ only in the data below; one mechanism runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Accept,
    Decline,
    Acknowledge,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Accept, Method::Decline, Method::Acknowledge];

    /// The method's name in paths, history rows and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Method::Accept => "accept",
            Method::Decline => "decline",
            Method::Acknowledge => "acknowledge",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The request field holding the items.
    pub fn set_name(&self) -> &'static str {
        match self {
            Method::Accept => "accepted_charges_set",
            Method::Decline => "declined_charges_set",
            Method::Acknowledge => "acknowledged_charges_set",
        }
    }

    /// The status a successful item moves the charge to; `None` for acknowledge, which
    /// records that the operator has seen the charge and changes no status.
    pub fn target_status(&self) -> Option<ChargeStatus> {
        match self {
            Method::Accept => Some(ChargeStatus::Approved),
            Method::Decline => Some(ChargeStatus::Declined),
            Method::Acknowledge => None,
        }
    }

    /// "an accept", "a decline", "an acknowledgement": for messages.
    fn with_article(self) -> &'static str {
        match self {
            Method::Accept => "an accept",
            Method::Decline => "a decline",
            Method::Acknowledge => "an acknowledgement",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The per-item `error_code`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemErrorCode {
    InvalidParameter,
    DuplicateInRequest,
    ChargeNotFound,
    CustomerMismatch,
    ChargeAlreadyProcessed,
    DuplicateReferenceNumber,
}

impl ItemErrorCode {
    pub const ALL: [ItemErrorCode; 6] = [
        ItemErrorCode::InvalidParameter,
        ItemErrorCode::DuplicateInRequest,
        ItemErrorCode::ChargeNotFound,
        ItemErrorCode::CustomerMismatch,
        ItemErrorCode::ChargeAlreadyProcessed,
        ItemErrorCode::DuplicateReferenceNumber,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ItemErrorCode::InvalidParameter => "INVALID_PARAMETER",
            ItemErrorCode::DuplicateInRequest => "DUPLICATE_IN_REQUEST",
            ItemErrorCode::ChargeNotFound => "CHARGE_NOT_FOUND",
            ItemErrorCode::CustomerMismatch => "CUSTOMER_MISMATCH",
            ItemErrorCode::ChargeAlreadyProcessed => "CHARGE_ALREADY_PROCESSED",
            ItemErrorCode::DuplicateReferenceNumber => "DUPLICATE_REFERENCE_NUMBER",
        }
    }
}

/// Why one item failed: its code and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub code: ItemErrorCode,
    pub description: String,
}

impl ItemError {
    pub fn new(code: ItemErrorCode, description: impl Into<String>) -> Self {
        ItemError {
            code,
            description: description.into(),
        }
    }
}

/// A well-formed item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRequest {
    pub number: ChargeNumber,
    pub customer: CustomerId,
    pub reference: Option<ReferenceNumber>,
}

/// One item as it arrived, after the edge applied rule 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInput {
    /// `number` as the client sent it, when it was a string; echoed in failures and used
    /// by rule 2 even when another field of the item is invalid.
    pub number: Option<String>,
    /// `reference_number` as sent, when it was a string; echoed and used by rule 3.
    pub reference_number: Option<String>,
    /// The parsed item, or why rule 1 refused it.
    pub parsed: Result<ItemRequest, ItemError>,
}

impl ItemInput {
    pub fn valid(req: ItemRequest) -> Self {
        ItemInput {
            number: Some(req.number.as_str().to_owned()),
            reference_number: req.reference.as_ref().map(|r| r.as_str().to_owned()),
            parsed: Ok(req),
        }
    }
}

/// The accept or decline that decided a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub method: Method,
    pub reference: Option<ReferenceNumber>,
}

/// The latest acknowledgement of a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The status the charge had when it was acknowledged.
    pub status: ChargeStatus,
    pub reference: Option<ReferenceNumber>,
}

/// What the rules need to know of one stored charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeState {
    /// The store's own key for the charge, handed back with the verdicts.
    pub id: i64,
    pub customer: CustomerId,
    pub status: ChargeStatus,
    pub decision: Option<Decision>,
    pub acknowledgement: Option<Acknowledgement>,
}

/// The stored facts a batch is judged against, read inside the write transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The caller's operator's charges among the numbers the batch names. Other
    /// operators' charges are never loaded, so they look exactly like missing ones.
    pub charges: HashMap<ChargeNumber, ChargeState>,
    /// References the batch names that this operator already used in the method's
    /// namespace (its accepts, its declines, or its acknowledgements), with the charge
    /// each was used on.
    pub used_references: HashMap<ReferenceNumber, ChargeNumber>,
}

/// The outcome of one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Apply the method to the charge with this store id.
    Apply {
        charge_id: i64,
    },
    /// Already done with a matching reference: an idempotent retry, success, no change.
    AlreadyDone,
    Failed(ItemError),
}

impl Verdict {
    pub fn is_success(&self) -> bool {
        !matches!(self, Verdict::Failed(_))
    }

    /// `ok` or the error code: the outcome label metrics count.
    pub fn outcome_label(&self) -> &'static str {
        match self {
            Verdict::Failed(e) => e.code.as_str(),
            _ => "ok",
        }
    }
}

/// One batch call, as the store receives it.
#[derive(Debug, Clone)]
pub struct Batch {
    pub method: Method,
    pub operator_id: i64,
    pub user_id: i64,
    /// The web API key the caller's token came from, written into the decision and
    /// history rows.
    pub key_id: Option<i64>,
    /// The request id, written into the history rows.
    pub request_id: String,
    /// The request's time, stamped on every change it makes.
    pub at: Timestamp,
    pub items: Vec<ItemInput>,
    /// Whether a person decided in the operator console (not through the API); the
    /// history rows say so, and name the actor `console:<username>`.
    pub via_console: bool,
}

impl Batch {
    /// The distinct charge numbers of the well-formed items: what the store must read.
    pub fn numbers(&self) -> Vec<&ChargeNumber> {
        let mut v: Vec<&ChargeNumber> = self.requests().map(|r| &r.number).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The distinct reference numbers of the well-formed items.
    pub fn references(&self) -> Vec<&ReferenceNumber> {
        let mut v: Vec<&ReferenceNumber> = self
            .requests()
            .filter_map(|r| r.reference.as_ref())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn requests(&self) -> impl Iterator<Item = &ItemRequest> {
        self.items.iter().filter_map(|i| i.parsed.as_ref().ok())
    }

    /// Applies the rules to every item against the snapshot.
    pub fn judge(&self, snapshot: &Snapshot) -> Vec<Verdict> {
        judge(self.method, &self.items, snapshot)
    }

    /// Judges the batch and plans its writes: the verdicts to answer, and one change per
    /// item judged [`Verdict::Apply`], in request order. The backends only execute the
    /// plan; *what* a batch writes is decided here, once, for both.
    pub fn decide(&self, snapshot: &Snapshot) -> (Vec<Verdict>, Vec<ChargeChange>) {
        let verdicts = self.judge(snapshot);
        let changes = self
            .items
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Apply { .. }))
            .filter_map(|(item, _)| item.parsed.as_ref().ok())
            .filter_map(|req| {
                let charge = snapshot.charges.get(&req.number)?;
                Some(ChargeChange {
                    charge_id: charge.id,
                    from: charge.status,
                    to: self.method.target_status().unwrap_or(charge.status),
                    reference: req.reference.clone(),
                })
            })
            .collect();
        (verdicts, changes)
    }
}

/// One write of a judged batch. For accept and decline: the charge moves `from` → `to`,
/// a decision row and a history row are added. For acknowledge (`to == from`): the
/// charge's latest acknowledgement is set, an acknowledgement row and a history row are
/// added. Every write is conditional on the charge still being in `from`; a backend that
/// finds it otherwise applies nothing of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeChange {
    pub charge_id: i64,
    pub from: ChargeStatus,
    pub to: ChargeStatus,
    pub reference: Option<ReferenceNumber>,
}

/// Judges every item of a call, in request order. Rules 2–9 of the contract (rule 1 ran at
/// the edge and arrives as `ItemInput::parsed = Err`).
pub fn judge(method: Method, items: &[ItemInput], snapshot: &Snapshot) -> Vec<Verdict> {
    let set = method.set_name();
    // First position at which each number / reference appeared, for rules 2 and 3.
    let mut seen_numbers: HashMap<&str, usize> = HashMap::new();
    let mut seen_references: HashMap<&str, usize> = HashMap::new();
    let mut verdicts = Vec::with_capacity(items.len());

    for (index, item) in items.iter().enumerate() {
        let earlier_number = item
            .number
            .as_deref()
            .and_then(|n| seen_numbers.get(n).copied());
        let earlier_reference = item
            .reference_number
            .as_deref()
            .and_then(|r| seen_references.get(r).copied());
        if let Some(n) = item.number.as_deref() {
            seen_numbers.entry(n).or_insert(index);
        }
        if let Some(r) = item.reference_number.as_deref() {
            seen_references.entry(r).or_insert(index);
        }

        let verdict = match &item.parsed {
            // Rule 1.
            Err(e) => Verdict::Failed(e.clone()),
            Ok(req) => {
                if let Some(first) = earlier_number {
                    // Rule 2.
                    Verdict::Failed(ItemError::new(
                        ItemErrorCode::DuplicateInRequest,
                        format!(
                            "charge {} already appears earlier in this request, at {set}[{first}]",
                            req.number
                        ),
                    ))
                } else if let (Some(first), Some(r)) = (earlier_reference, &req.reference) {
                    // Rule 3.
                    Verdict::Failed(ItemError::new(
                        ItemErrorCode::DuplicateReferenceNumber,
                        format!(
                            "reference number {r} already appears earlier in this request, at {set}[{first}]"
                        ),
                    ))
                } else {
                    judge_against_store(method, req, snapshot)
                }
            }
        };
        verdicts.push(verdict);
    }
    verdicts
}

/// Rules 4–9 for one well-formed item that is the first of its number and reference.
fn judge_against_store(method: Method, req: &ItemRequest, snapshot: &Snapshot) -> Verdict {
    let failed = |code, text: String| Verdict::Failed(ItemError::new(code, text));
    let number = &req.number;

    // Rule 4.
    let Some(charge) = snapshot.charges.get(number) else {
        return failed(
            ItemErrorCode::ChargeNotFound,
            format!("no charge {number} for this operator"),
        );
    };
    // Rule 5.
    if charge.customer != req.customer {
        return failed(
            ItemErrorCode::CustomerMismatch,
            format!(
                "charge {number} does not belong to customer {}",
                req.customer
            ),
        );
    }
    // An item without a reference matches any; with one, it must equal the stored one
    // (absent stored reference included: `Some(r) != None`).
    let reference_matches =
        |stored: &Option<ReferenceNumber>| req.reference.is_none() || req.reference == *stored;

    if let Some(target) = method.target_status() {
        // Rule 6: an idempotent retry of the decision that was made.
        let same_decision = charge.status == target
            && charge
                .decision
                .as_ref()
                .is_some_and(|d| d.method == method && reference_matches(&d.reference));
        if same_decision {
            return Verdict::AlreadyDone;
        }
        // Rule 7.
        if charge.status != ChargeStatus::Pending {
            return failed(
                ItemErrorCode::ChargeAlreadyProcessed,
                format!("charge {number} is already {}", charge.status),
            );
        }
    } else {
        // Acknowledged in its current status already, with an equal or no reference.
        let same_ack = charge
            .acknowledgement
            .as_ref()
            .is_some_and(|a| a.status == charge.status && reference_matches(&a.reference));
        if same_ack {
            return Verdict::AlreadyDone;
        }
    }
    // Rule 8.
    if let Some(r) = &req.reference
        && let Some(used_on) = snapshot.used_references.get(r)
    {
        return failed(
            ItemErrorCode::DuplicateReferenceNumber,
            format!(
                "reference number {r} was already used on {} of charge {used_on}",
                method.with_article()
            ),
        );
    }
    // Rule 9.
    Verdict::Apply {
        charge_id: charge.id,
    }
}

#[cfg(test)]
mod tests;
