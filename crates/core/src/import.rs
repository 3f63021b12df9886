//! Planning a charge import: numbering, defaults, and what to do with rows whose number
//! is already taken. Pure, so both backends plan identically; the store only reads the
//! stored charges it needs and writes the plan.

use std::collections::HashMap;

use crate::charge::ChargeStatus;
use crate::clock::{Date, Timestamp};
use crate::money::Money;
use crate::store::{ImportConflict, NewCharge, StoredIntake};
use crate::text::{ChargeNumber, CustomerId};

/// A charge ready to insert: every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCharge {
    pub number: ChargeNumber,
    pub operator_id: i64,
    pub customer: CustomerId,
    pub netflix_customer: Option<String>,
    pub amount: Money,
    pub local_amount: Money,
    pub paid_through_date: Date,
    pub status: ChargeStatus,
    pub received_on: Timestamp,
}

impl ResolvedCharge {
    /// `set_as_approved_on`, `set_as_declined_on`, `set_as_bad_request_on`,
    /// `set_as_rejected_request_on`: a charge born final is stamped with its `received_on`.
    pub fn stamps(&self) -> [Option<i64>; 4] {
        let at = Some(self.received_on.unix());
        let mut stamps = [None; 4];
        match self.status {
            ChargeStatus::Pending => {}
            ChargeStatus::Approved => stamps[0] = at,
            ChargeStatus::Declined => stamps[1] = at,
            ChargeStatus::BadRequest => stamps[2] = at,
            ChargeStatus::Rejected => stamps[3] = at,
        }
        stamps
    }

    fn intake(&self) -> StoredIntake {
        StoredIntake {
            operator_id: self.operator_id,
            customer: self.customer.clone(),
            netflix_customer: self.netflix_customer.clone(),
            amount: self.amount,
            local_amount: self.local_amount,
            paid_through_date: self.paid_through_date,
            received_on: self.received_on,
            initial_status: self.status,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportPlan {
    /// Charges to insert, in input order.
    pub rows: Vec<ResolvedCharge>,
    /// Rows identical to a stored charge or to an earlier row: nothing to do.
    pub skipped: usize,
    /// Rows that cannot be imported; when any, nothing may be written.
    pub conflicts: Vec<ImportConflict>,
}

/// Plans an import.
///
/// - `stored`: the stored charges among the numbers the rows give, by number.
/// - `max_generated`: the highest stored number of the generated shape (`I` + 8 digits).
///
/// Rows without a number get the next free generated numbers, above every stored and
/// every given number of that shape, so they never collide. A row whose number is stored
/// (or appeared on an earlier row) is skipped when its given cells match, else refused.
pub fn plan(
    charges: &[NewCharge],
    stored: &HashMap<String, StoredIntake>,
    max_generated: Option<&str>,
    now: Timestamp,
) -> ImportPlan {
    let highest_given = charges
        .iter()
        .filter_map(|c| c.number.as_ref()?.generated_sequence())
        .max();
    let highest_stored = max_generated
        .and_then(|n| ChargeNumber::parse(n).ok())
        .and_then(|n| n.generated_sequence());
    let mut next = highest_given
        .max(highest_stored)
        .map_or(1, |n| n.saturating_add(1));

    let mut plan = ImportPlan::default();
    // Number → (row index, position in plan.rows) of its first row.
    let mut first_rows: HashMap<&str, (usize, usize)> = HashMap::new();
    for (index, c) in charges.iter().enumerate() {
        let number = match &c.number {
            Some(n) => n.clone(),
            None => {
                if let Some(n) = ChargeNumber::generated(next) {
                    next += 1;
                    n
                } else {
                    plan.conflicts.push(ImportConflict {
                    index,
                    column: "number",
                    problem: "no generated charge number is left (I99999999 reached); give numbers explicitly".into(),
                    earlier: None,
                });
                    continue;
                }
            }
        };
        let conflict = |problem: String, earlier| ImportConflict {
            index,
            column: "number",
            problem,
            earlier,
        };
        if let Some(existing) = stored.get(number.as_str()) {
            let diff = c.differences(existing);
            if diff.is_empty() {
                plan.skipped += 1;
            } else {
                plan.conflicts.push(conflict(
                    format!(
                        "charge {number} already exists with a different {}",
                        diff.join(", ")
                    ),
                    None,
                ));
            }
            continue;
        }
        if let Some(&(earlier, pos)) = first_rows.get(number.as_str()) {
            let diff = c.differences(&plan.rows[pos].intake());
            if diff.is_empty() {
                plan.skipped += 1;
            } else {
                plan.conflicts.push(conflict(
                    format!(
                        "charge {number} is also on an earlier row, with a different {}",
                        diff.join(", ")
                    ),
                    Some(earlier),
                ));
            }
            continue;
        }
        let resolved = ResolvedCharge {
            number,
            operator_id: c.operator_id,
            customer: c.customer.clone(),
            netflix_customer: c.netflix_customer.clone(),
            amount: c.amount,
            local_amount: c.local_amount,
            paid_through_date: c.paid_through_date,
            status: c.status.unwrap_or(ChargeStatus::Pending),
            received_on: c.received_on.unwrap_or(now),
        };
        if let Some(n) = &c.number {
            first_rows.insert(n.as_str(), (index, plan.rows.len()));
        }
        plan.rows.push(resolved);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn eur(s: &str) -> Money {
        Money::parse(s, Currency::parse("EUR").expect("EUR")).expect("amount")
    }

    fn row(number: Option<&str>, amount: &str) -> NewCharge {
        NewCharge {
            operator_id: 1,
            number: number.map(|n| ChargeNumber::parse(n).expect("number")),
            customer: CustomerId::parse("pci155").expect("customer"),
            netflix_customer: None,
            amount: eur(amount),
            local_amount: eur(amount),
            paid_through_date: Date::parse("2026-12-31").expect("date"),
            received_on: None,
            status: None,
        }
    }

    fn now() -> Timestamp {
        Timestamp::parse("2026-11-26T12:00:00").expect("now")
    }

    #[test]
    fn rows_without_numbers_are_numbered_above_every_known_number() {
        let rows = [row(None, "1"), row(Some("I00000050"), "2"), row(None, "3")];
        let p = plan(&rows, &HashMap::new(), Some("I00000007"), now());
        let numbers: Vec<_> = p.rows.iter().map(|r| r.number.as_str()).collect();
        assert_eq!(numbers, ["I00000051", "I00000050", "I00000052"]);
        assert!(p.conflicts.is_empty());
    }

    #[test]
    fn defaults_are_pending_and_received_now_and_final_statuses_are_stamped() {
        let mut declined = row(Some("X1"), "1");
        declined.status = Some(ChargeStatus::Declined);
        declined.received_on = Some(Timestamp::parse("2026-01-01T00:00:00").expect("ts"));
        let p = plan(
            &[row(Some("X0"), "1"), declined],
            &HashMap::new(),
            None,
            now(),
        );
        assert_eq!(p.rows[0].status, ChargeStatus::Pending);
        assert_eq!(p.rows[0].received_on, now());
        assert_eq!(p.rows[0].stamps(), [None; 4]);
        let jan = Timestamp::parse("2026-01-01T00:00:00").expect("ts").unix();
        assert_eq!(p.rows[1].stamps(), [None, Some(jan), None, None]);
    }

    #[test]
    fn identical_rows_are_skipped_and_different_ones_refused() {
        let first = plan(&[row(Some("X1"), "9.99")], &HashMap::new(), None, now());
        let stored: HashMap<_, _> = [("X1".to_owned(), first.rows[0].intake())].into();

        let again = plan(&[row(Some("X1"), "9.99")], &stored, None, now());
        assert_eq!((again.rows.len(), again.skipped), (0, 1));
        assert!(again.conflicts.is_empty());

        let changed = plan(&[row(Some("X1"), "10.99")], &stored, None, now());
        assert_eq!(changed.conflicts.len(), 1);
        assert_eq!(changed.conflicts[0].column, "number");
        assert!(
            changed.conflicts[0].problem.contains("amount"),
            "{:?}",
            changed.conflicts
        );
    }

    #[test]
    fn a_number_repeated_within_the_file_is_skipped_if_equal_else_refused() {
        let p = plan(
            &[
                row(Some("X1"), "1"),
                row(Some("X1"), "1"),
                row(Some("X1"), "2"),
            ],
            &HashMap::new(),
            None,
            now(),
        );
        assert_eq!((p.rows.len(), p.skipped), (1, 1));
        assert_eq!(p.conflicts.len(), 1);
        assert_eq!((p.conflicts[0].index, p.conflicts[0].earlier), (2, Some(0)));
    }
}
