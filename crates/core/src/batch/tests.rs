use super::*;
use proptest::prelude::*;

fn num(s: &str) -> ChargeNumber {
    ChargeNumber::parse(s).expect("valid number")
}
fn cust(s: &str) -> CustomerId {
    CustomerId::parse(s).expect("valid customer")
}
fn reference(s: &str) -> ReferenceNumber {
    ReferenceNumber::parse(s).expect("valid reference")
}

fn item(number: &str, customer: &str, r: Option<&str>) -> ItemInput {
    ItemInput::valid(ItemRequest {
        number: num(number),
        customer: cust(customer),
        reference: r.map(reference),
    })
}

fn invalid(number: Option<&str>, r: Option<&str>) -> ItemInput {
    ItemInput {
        number: number.map(str::to_owned),
        reference_number: r.map(str::to_owned),
        parsed: Err(ItemError::new(
            ItemErrorCode::InvalidParameter,
            "declined_charges_set[0].billing_system_customer_identifier: missing",
        )),
    }
}

fn pending(id: i64, customer: &str) -> ChargeState {
    ChargeState {
        id,
        customer: cust(customer),
        status: ChargeStatus::Pending,
        decision: None,
        acknowledgement: None,
    }
}

fn decided(id: i64, customer: &str, method: Method, r: Option<&str>) -> ChargeState {
    ChargeState {
        status: method.target_status().expect("a deciding method"),
        decision: Some(Decision {
            method,
            reference: r.map(reference),
        }),
        ..pending(id, customer)
    }
}

fn snapshot(charges: Vec<(&str, ChargeState)>, used: Vec<(&str, &str)>) -> Snapshot {
    Snapshot {
        charges: charges.into_iter().map(|(n, c)| (num(n), c)).collect(),
        used_references: used
            .into_iter()
            .map(|(r, n)| (reference(r), num(n)))
            .collect(),
    }
}

fn codes(verdicts: &[Verdict]) -> Vec<&'static str> {
    verdicts
        .iter()
        .map(|v| match v {
            Verdict::Apply { .. } => "APPLY",
            Verdict::AlreadyDone => "ALREADY_DONE",
            Verdict::Failed(e) => e.code.as_str(),
        })
        .collect()
}

#[test]
fn a_pending_charge_of_the_right_customer_is_declined() {
    let snap = snapshot(vec![("I1", pending(7, "pci155"))], vec![]);
    let v = judge(Method::Decline, &[item("I1", "pci155", None)], &snap);
    assert_eq!(v, vec![Verdict::Apply { charge_id: 7 }]);
}

#[test]
fn rule_1_invalid_items_fail_with_the_edge_error() {
    let snap = snapshot(vec![("I1", pending(1, "c"))], vec![]);
    let v = judge(Method::Decline, &[invalid(Some("I1"), None)], &snap);
    assert_eq!(codes(&v), vec!["INVALID_PARAMETER"]);
}

#[test]
fn rule_2_a_repeated_number_fails_but_the_first_occurrence_applies() {
    let snap = snapshot(vec![("I1", pending(1, "c"))], vec![]);
    let v = judge(
        Method::Decline,
        &[item("I1", "c", None), item("I1", "c", None)],
        &snap,
    );
    assert_eq!(codes(&v), vec!["APPLY", "DUPLICATE_IN_REQUEST"]);
    let Verdict::Failed(e) = &v[1] else {
        panic!("expected a failure")
    };
    assert!(
        e.description.contains("declined_charges_set[0]"),
        "{}",
        e.description
    );
}

#[test]
fn rule_2_counts_a_number_even_when_its_first_item_was_malformed() {
    let snap = snapshot(vec![("I1", pending(1, "c"))], vec![]);
    let v = judge(
        Method::Decline,
        &[invalid(Some("I1"), None), item("I1", "c", None)],
        &snap,
    );
    assert_eq!(codes(&v), vec!["INVALID_PARAMETER", "DUPLICATE_IN_REQUEST"]);
}

#[test]
fn rule_3_a_repeated_reference_fails() {
    let snap = snapshot(
        vec![("I1", pending(1, "c")), ("I2", pending(2, "c"))],
        vec![],
    );
    let v = judge(
        Method::Decline,
        &[item("I1", "c", Some("R")), item("I2", "c", Some("R"))],
        &snap,
    );
    assert_eq!(codes(&v), vec!["APPLY", "DUPLICATE_REFERENCE_NUMBER"]);
}

#[test]
fn rule_2_wins_over_rule_3() {
    let snap = snapshot(vec![("I1", pending(1, "c"))], vec![]);
    let v = judge(
        Method::Decline,
        &[item("I1", "c", Some("R")), item("I1", "c", Some("R"))],
        &snap,
    );
    assert_eq!(codes(&v), vec!["APPLY", "DUPLICATE_IN_REQUEST"]);
}

#[test]
fn rule_4_an_unknown_number_is_not_found() {
    let v = judge(
        Method::Decline,
        &[item("I9", "c", None)],
        &Snapshot::default(),
    );
    assert_eq!(codes(&v), vec!["CHARGE_NOT_FOUND"]);
    let Verdict::Failed(e) = &v[0] else {
        panic!("expected a failure")
    };
    assert_eq!(e.description, "no charge I9 for this operator");
}

#[test]
fn rule_5_another_customers_charge_is_a_mismatch_even_when_already_processed() {
    let snap = snapshot(
        vec![("I1", decided(1, "owner", Method::Accept, None))],
        vec![],
    );
    let v = judge(Method::Decline, &[item("I1", "stranger", None)], &snap);
    assert_eq!(codes(&v), vec!["CUSTOMER_MISMATCH"]);
}

#[test]
fn rule_6_retrying_a_decline_with_the_same_or_no_reference_succeeds_without_change() {
    let snap = snapshot(
        vec![
            ("I1", decided(1, "c", Method::Decline, Some("R"))),
            ("I2", decided(2, "c", Method::Decline, None)),
            ("I3", decided(3, "c", Method::Decline, Some("S"))),
        ],
        vec![("R", "I1"), ("S", "I3")],
    );
    let v = judge(
        Method::Decline,
        &[
            item("I1", "c", Some("R")),
            item("I2", "c", None),
            item("I3", "c", None),
        ],
        &snap,
    );
    assert_eq!(codes(&v), vec!["ALREADY_DONE"; 3]);
}

#[test]
fn rule_7_a_different_reference_on_a_declined_charge_is_already_processed() {
    let snap = snapshot(
        vec![
            ("I1", decided(1, "c", Method::Decline, Some("R"))),
            ("I2", decided(2, "c", Method::Decline, None)),
        ],
        vec![("R", "I1")],
    );
    let v = judge(
        Method::Decline,
        &[item("I1", "c", Some("OTHER")), item("I2", "c", Some("NEW"))],
        &snap,
    );
    assert_eq!(codes(&v), vec!["CHARGE_ALREADY_PROCESSED"; 2]);
}

#[test]
fn rule_7_names_the_current_status() {
    let snap = snapshot(vec![("I1", decided(1, "c", Method::Accept, None))], vec![]);
    let v = judge(Method::Decline, &[item("I1", "c", None)], &snap);
    let Verdict::Failed(e) = &v[0] else {
        panic!("expected a failure")
    };
    assert_eq!(e.code, ItemErrorCode::ChargeAlreadyProcessed);
    assert_eq!(e.description, "charge I1 is already APPROVED");
}

#[test]
fn rule_7_a_charge_born_final_without_a_decision_is_already_processed() {
    let mut born_declined = pending(1, "c");
    born_declined.status = ChargeStatus::Declined;
    let snap = snapshot(vec![("I1", born_declined)], vec![]);
    let v = judge(Method::Decline, &[item("I1", "c", None)], &snap);
    assert_eq!(codes(&v), vec!["CHARGE_ALREADY_PROCESSED"]);
}

#[test]
fn rule_7_wins_over_rule_8() {
    let snap = snapshot(
        vec![("I1", decided(1, "c", Method::Accept, None))],
        vec![("R", "I2")],
    );
    let v = judge(Method::Decline, &[item("I1", "c", Some("R"))], &snap);
    assert_eq!(codes(&v), vec!["CHARGE_ALREADY_PROCESSED"]);
}

#[test]
fn rule_8_a_reference_used_on_another_charge_fails() {
    let snap = snapshot(vec![("I1", pending(1, "c"))], vec![("R", "I2")]);
    let v = judge(Method::Decline, &[item("I1", "c", Some("R"))], &snap);
    let Verdict::Failed(e) = &v[0] else {
        panic!("expected a failure")
    };
    assert_eq!(e.code, ItemErrorCode::DuplicateReferenceNumber);
    assert_eq!(
        e.description,
        "reference number R was already used on a decline of charge I2"
    );
}

#[test]
fn accept_mirrors_decline() {
    let snap = snapshot(
        vec![
            ("I1", pending(1, "c")),
            ("I2", decided(2, "c", Method::Accept, Some("A"))),
            ("I3", decided(3, "c", Method::Decline, Some("A3"))),
        ],
        vec![("A", "I2")],
    );
    let v = judge(
        Method::Accept,
        &[
            item("I1", "c", None),
            item("I2", "c", Some("A")),
            // Declined with its own reference: accepting is a different decision.
            item("I3", "c", Some("A3")),
        ],
        &snap,
    );
    assert_eq!(
        codes(&v),
        vec!["APPLY", "ALREADY_DONE", "CHARGE_ALREADY_PROCESSED"]
    );
}

#[test]
fn acknowledging_a_charge_in_any_status_applies() {
    let snap = snapshot(
        vec![
            ("I1", pending(1, "c")),
            ("I2", decided(2, "c", Method::Decline, None)),
        ],
        vec![],
    );
    let v = judge(
        Method::Acknowledge,
        &[item("I1", "c", None), item("I2", "c", Some("K"))],
        &snap,
    );
    assert_eq!(codes(&v), vec!["APPLY", "APPLY"]);
}

#[test]
fn acknowledging_again_in_the_same_status_is_idempotent_but_a_new_status_needs_a_new_ack() {
    let acked = |status, r: Option<&str>| Acknowledgement {
        status,
        reference: r.map(reference),
    };
    let mut same = pending(1, "c");
    same.acknowledgement = Some(acked(ChargeStatus::Pending, Some("K1")));
    let mut moved_on = decided(2, "c", Method::Decline, None);
    moved_on.acknowledgement = Some(acked(ChargeStatus::Pending, None));
    let snap = snapshot(vec![("I1", same), ("I2", moved_on)], vec![("K1", "I1")]);

    let v = judge(
        Method::Acknowledge,
        &[item("I1", "c", Some("K1")), item("I2", "c", None)],
        &snap,
    );
    assert_eq!(codes(&v), vec!["ALREADY_DONE", "APPLY"]);
}

#[test]
fn an_acknowledgement_reference_cannot_be_reused_even_on_the_same_charge() {
    let mut moved_on = decided(1, "c", Method::Decline, None);
    moved_on.acknowledgement = Some(Acknowledgement {
        status: ChargeStatus::Pending,
        reference: Some(reference("K1")),
    });
    let snap = snapshot(vec![("I1", moved_on)], vec![("K1", "I1")]);
    let v = judge(Method::Acknowledge, &[item("I1", "c", Some("K1"))], &snap);
    let Verdict::Failed(e) = &v[0] else {
        panic!("expected a failure")
    };
    assert_eq!(e.code, ItemErrorCode::DuplicateReferenceNumber);
    assert!(e.description.contains("an acknowledgement of charge I1"));
}

#[test]
fn batch_lists_each_number_and_reference_to_read_once() {
    let batch = Batch {
        method: Method::Decline,
        operator_id: 1,
        user_id: 1,
        key_id: None,
        via_console: false,
        request_id: "r".into(),
        at: Timestamp::from_unix(0).expect("epoch"),
        items: vec![
            item("I2", "c", Some("R")),
            item("I1", "c", None),
            item("I2", "c", Some("R")),
            invalid(Some("I3"), Some("S")),
        ],
    };
    assert_eq!(batch.numbers(), vec![&num("I1"), &num("I2")]);
    assert_eq!(batch.references(), vec![&reference("R")]);
}

// ---- properties ------------------------------------------------------------------------

fn arb_status() -> impl Strategy<Value = ChargeStatus> {
    prop::sample::select(ChargeStatus::ALL.to_vec())
}

fn arb_method() -> impl Strategy<Value = Method> {
    prop::sample::select(Method::ALL.to_vec())
}

/// Small universes so that collisions (same number, same reference) are frequent.
fn arb_item() -> impl Strategy<Value = ItemInput> {
    (
        0..6u8,
        0..3u8,
        prop::option::of(0..4u8),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(n, c, r, malformed)| {
            let number = format!("I{n}");
            let r = r.map(|r| format!("R{r}"));
            if malformed {
                invalid(Some(&number), r.as_deref())
            } else {
                item(&number, &format!("c{c}"), r.as_deref())
            }
        })
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    let charge = (
        prop::bool::weighted(0.8),
        0..3u8,
        arb_status(),
        prop::option::of(0..4u8),
        prop::option::of((arb_status(), prop::option::of(0..4u8))),
    );
    (
        prop::collection::vec(charge, 6),
        prop::collection::vec(prop::option::of(0..6u8), 4),
    )
        .prop_map(|(charges, used)| {
            let mut snap = Snapshot::default();
            for (i, (exists, c, status, dref, ack)) in charges.into_iter().enumerate() {
                if !exists {
                    continue;
                }
                let decision = match status {
                    ChargeStatus::Approved => Some(Method::Accept),
                    ChargeStatus::Declined => Some(Method::Decline),
                    _ => None,
                }
                .map(|method| Decision {
                    method,
                    reference: dref.map(|r| reference(&format!("R{r}"))),
                });
                snap.charges.insert(
                    num(&format!("I{i}")),
                    ChargeState {
                        id: i as i64,
                        customer: cust(&format!("c{c}")),
                        status,
                        decision,
                        acknowledgement: ack.map(|(status, r)| Acknowledgement {
                            status,
                            reference: r.map(|r| reference(&format!("R{r}"))),
                        }),
                    },
                );
            }
            for (r, on) in used.into_iter().enumerate() {
                if let Some(on) = on {
                    snap.used_references
                        .insert(reference(&format!("R{r}")), num(&format!("I{on}")));
                }
            }
            snap
        })
}

/// What the store does with the verdicts, in memory.
fn apply(method: Method, items: &[ItemInput], verdicts: &[Verdict], snap: &mut Snapshot) {
    for (item, verdict) in items.iter().zip(verdicts) {
        let (Verdict::Apply { .. }, Ok(req)) = (verdict, &item.parsed) else {
            continue;
        };
        let charge = snap
            .charges
            .get_mut(&req.number)
            .expect("applied to a stored charge");
        match method.target_status() {
            Some(target) => {
                charge.status = target;
                charge.decision = Some(Decision {
                    method,
                    reference: req.reference.clone(),
                });
            }
            None => {
                charge.acknowledgement = Some(Acknowledgement {
                    status: charge.status,
                    reference: req.reference.clone(),
                });
            }
        }
        if let Some(r) = &req.reference {
            snap.used_references.insert(r.clone(), req.number.clone());
        }
    }
}

proptest! {
    #[test]
    fn every_item_gets_exactly_one_verdict_decided_by_it_and_earlier_items_only(
        method in arb_method(),
        items in prop::collection::vec(arb_item(), 0..12),
        snap in arb_snapshot(),
    ) {
        let all = judge(method, &items, &snap);
        prop_assert_eq!(all.len(), items.len());
        for k in 0..=items.len() {
            prop_assert_eq!(&judge(method, &items[..k], &snap)[..], &all[..k]);
        }
    }

    #[test]
    fn a_charge_is_decided_at_most_once_and_only_while_pending(
        method in arb_method(),
        items in prop::collection::vec(arb_item(), 0..12),
        snap in arb_snapshot(),
    ) {
        let verdicts = judge(method, &items, &snap);
        let mut applied = std::collections::HashSet::new();
        for v in &verdicts {
            if let Verdict::Apply { charge_id } = v {
                prop_assert!(applied.insert(*charge_id), "charge {} applied twice", charge_id);
                if method.target_status().is_some() {
                    let charge = snap.charges.values().find(|c| c.id == *charge_id).expect("known");
                    prop_assert_eq!(charge.status, ChargeStatus::Pending);
                }
            }
        }
    }

    #[test]
    fn replaying_a_call_after_it_was_applied_changes_nothing(
        method in arb_method(),
        items in prop::collection::vec(arb_item(), 0..12),
        snap in arb_snapshot(),
    ) {
        let mut snap = snap;
        let first = judge(method, &items, &snap);
        apply(method, &items, &first, &mut snap);
        let replay = judge(method, &items, &snap);
        for (a, b) in first.iter().zip(&replay) {
            prop_assert!(!matches!(b, Verdict::Apply { .. }), "replay applied again");
            if matches!(a, Verdict::Apply { .. }) {
                prop_assert_eq!(b, &Verdict::AlreadyDone);
            }
        }
    }

    #[test]
    fn every_other_item_in_a_call_is_unaffected_by_a_malformed_one(
        method in arb_method(),
        items in prop::collection::vec(arb_item(), 1..12),
        snap in arb_snapshot(),
    ) {
        // A malformed item without number or reference shares nothing with the others.
        let mut with_junk = items.clone();
        with_junk.insert(0, invalid(None, None));
        let plain = judge(method, &items, &snap);
        let junk = judge(method, &with_junk, &snap);
        // Descriptions name positions, which shift by one; the outcomes must not.
        prop_assert_eq!(codes(&junk[1..]), codes(&plain));
    }
}

fn batch(method: Method, items: Vec<ItemInput>) -> Batch {
    Batch {
        method,
        operator_id: 1,
        user_id: 7,
        key_id: None,
        via_console: false,
        request_id: "req-1".into(),
        at: crate::clock::Timestamp::from_unix(1_700_000_000).expect("time"),
        items,
    }
}

#[test]
fn the_plan_writes_exactly_the_applied_items_in_request_order() {
    let snap = snapshot(
        vec![
            ("I2", pending(2, "c")),
            ("I1", pending(1, "c")),
            ("I3", decided(3, "c", Method::Decline, Some("R3"))),
        ],
        vec![],
    );
    let b = batch(
        Method::Decline,
        vec![
            item("I2", "c", Some("R2")),
            item("I9", "c", None),
            item("I3", "c", Some("R3")),
            item("I1", "c", None),
            item("I2", "c", None),
        ],
    );
    let (verdicts, changes) = b.decide(&snap);
    assert_eq!(
        codes(&verdicts),
        [
            "APPLY",
            "CHARGE_NOT_FOUND",
            "ALREADY_DONE",
            "APPLY",
            "DUPLICATE_IN_REQUEST"
        ]
    );
    assert_eq!(
        changes,
        vec![
            ChargeChange {
                charge_id: 2,
                from: ChargeStatus::Pending,
                to: ChargeStatus::Declined,
                reference: Some(reference("R2")),
            },
            ChargeChange {
                charge_id: 1,
                from: ChargeStatus::Pending,
                to: ChargeStatus::Declined,
                reference: None,
            },
        ],
        "the idempotent replay of I3 and the failures write nothing"
    );
}

#[test]
fn an_acknowledgement_plan_keeps_the_status_it_was_judged_in() {
    let snap = snapshot(
        vec![
            ("I1", decided(1, "c", Method::Accept, None)),
            ("I2", pending(2, "c")),
        ],
        vec![],
    );
    let (_, changes) = batch(
        Method::Acknowledge,
        vec![item("I1", "c", Some("A1")), item("I2", "c", None)],
    )
    .decide(&snap);
    let moves: Vec<_> = changes
        .iter()
        .map(|c| (c.charge_id, c.from, c.to))
        .collect();
    assert_eq!(
        moves,
        [
            (1, ChargeStatus::Approved, ChargeStatus::Approved),
            (2, ChargeStatus::Pending, ChargeStatus::Pending)
        ]
    );
}

proptest! {
    #[test]
    fn the_plan_has_one_change_per_applied_verdict(
        picks in proptest::collection::vec((0usize..6, 0usize..3, proptest::option::of(0usize..4)), 0..20)
    ) {
        let snap = snapshot(
            vec![
                ("I0", pending(10, "c0")),
                ("I1", pending(11, "c1")),
                ("I2", decided(12, "c2", Method::Accept, Some("R0"))),
            ],
            vec![("R1", "I9")],
        );
        let items: Vec<ItemInput> = picks
            .iter()
            .map(|(n, c, r)| {
                let r = r.map(|r| format!("R{r}"));
                item(&format!("I{n}"), &format!("c{c}"), r.as_deref())
            })
            .collect();
        for method in Method::ALL {
            let (verdicts, changes) = batch(method, items.clone()).decide(&snap);
            let applied: Vec<i64> = verdicts
                .iter()
                .filter_map(|v| match v {
                    Verdict::Apply { charge_id } => Some(*charge_id),
                    _ => None,
                })
                .collect();
            let planned: Vec<i64> = changes.iter().map(|c| c.charge_id).collect();
            prop_assert_eq!(applied, planned);
        }
    }
}
