use super::*;
use crate::edge::extract::repeated_parameter;
use serde_json::json;

fn items(v: Value) -> Vec<ItemInput> {
    parse_items(Method::Decline, Some(&v)).expect("request-level checks pass")
}

fn rule_1_error(v: Value) -> String {
    let parsed = items(json!([v]));
    match &parsed[0].parsed {
        Err(e) => {
            assert_eq!(e.code, ItemErrorCode::InvalidParameter);
            e.description.clone()
        }
        Ok(_) => panic!("expected rule 1 to refuse the item"),
    }
}

#[test]
fn a_missing_empty_or_non_array_set_is_an_invalid_parameter_naming_it() {
    for set in [
        None,
        Some(json!(null)),
        Some(json!([])),
        Some(json!({})),
        Some(json!("x")),
    ] {
        let err = parse_items(Method::Decline, set.as_ref()).expect_err("refused");
        assert_eq!(err.code, Code::InvalidParameter);
        assert_eq!(err.description, "declined_charges_set");
    }
}

#[test]
fn fifty_items_pass_and_fifty_one_exceed_the_limit() {
    let item = json!({"number": "I1", "billing_system_customer_identifier": "c"});
    assert_eq!(items(Value::Array(vec![item.clone(); 50])).len(), 50);
    let err = parse_items(Method::Accept, Some(&Value::Array(vec![item; 51]))).expect_err("51");
    assert_eq!(err.code, Code::LimitExceeded);
    assert_eq!(err.description, "accepted_charges_set");
}

#[test]
fn rule_1_names_the_first_bad_field_with_its_path() {
    assert_eq!(
        rule_1_error(json!("I1")),
        "declined_charges_set[0]: each charge must be a JSON object"
    );
    assert_eq!(
        rule_1_error(json!({"billing_system_customer_identifier": "c"})),
        "declined_charges_set[0].number: is mandatory"
    );
    assert_eq!(
        rule_1_error(json!({"number": 2706, "billing_system_customer_identifier": "c"})),
        "declined_charges_set[0].number: must be a string"
    );
    assert_eq!(
        rule_1_error(json!({"number": "", "billing_system_customer_identifier": "c"})),
        "declined_charges_set[0].number: must not be empty"
    );
    assert_eq!(
        rule_1_error(json!({"number": "x".repeat(65), "billing_system_customer_identifier": "c"})),
        "declined_charges_set[0].number: must be at most 64 characters"
    );
    assert_eq!(
        rule_1_error(json!({"number": "I1"})),
        "declined_charges_set[0].billing_system_customer_identifier: is mandatory"
    );
    assert_eq!(
        rule_1_error(
            json!({"number": "I1", "billing_system_customer_identifier": "c".repeat(129)})
        ),
        "declined_charges_set[0].billing_system_customer_identifier: must be at most 128 characters"
    );
    assert_eq!(
        rule_1_error(
            json!({"number": "I1", "billing_system_customer_identifier": "c", "reference_number": 7})
        ),
        "declined_charges_set[0].reference_number: must be a string or null"
    );
    assert_eq!(
        rule_1_error(
            json!({"number": "I1", "billing_system_customer_identifier": "c", "reference_number": ""})
        ),
        "declined_charges_set[0].reference_number: must not be empty"
    );
    assert_eq!(
        rule_1_error(
            json!({"number": "I1", "billing_system_customer_identifier": "c", "reference_number": "r".repeat(129)})
        ),
        "declined_charges_set[0].reference_number: must be at most 128 characters"
    );
}

#[test]
fn boundary_lengths_are_accepted_and_null_reference_is_absent() {
    let parsed = items(json!([{
        "number": "n".repeat(64),
        "billing_system_customer_identifier": "c".repeat(128),
        "reference_number": "r".repeat(128),
    }, {
        "number": "I2", "billing_system_customer_identifier": "c", "reference_number": null,
        "unknown_field": {"is": "ignored"},
    }]));
    assert!(parsed[0].parsed.is_ok());
    let second = parsed[1].parsed.as_ref().expect("valid");
    assert_eq!(second.reference, None);
}

#[test]
fn failed_items_echo_number_and_reference_only_when_they_were_strings() {
    let parsed = items(json!([
        {"number": 5, "billing_system_customer_identifier": "c", "reference_number": "R"},
        {"number": "I1", "reference_number": 9},
    ]));
    assert_eq!(
        (
            parsed[0].number.as_deref(),
            parsed[0].reference_number.as_deref()
        ),
        (None, Some("R"))
    );
    assert_eq!(
        (
            parsed[1].number.as_deref(),
            parsed[1].reference_number.as_deref()
        ),
        (Some("I1"), None)
    );
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn list_parameters_are_checked_and_named() {
    let ok = parse_list_params(&q(&[
        ("number_of_results", "50"),
        ("charge_status", "PROCESSED"),
        ("offset", "0"),
    ]))
    .expect("valid");
    assert_eq!(
        (ok.limit, ok.group, ok.offset, ok.fields.len()),
        (50, StatusGroup::Processed, 0, 13)
    );

    for (pairs, named) in [
        (
            vec![("charge_status", "PROCESSED"), ("offset", "0")],
            "number_of_results",
        ),
        (
            vec![
                ("number_of_results", "0"),
                ("charge_status", "PROCESSED"),
                ("offset", "0"),
            ],
            "number_of_results",
        ),
        (
            vec![
                ("number_of_results", "51"),
                ("charge_status", "PROCESSED"),
                ("offset", "0"),
            ],
            "number_of_results",
        ),
        (
            vec![
                ("number_of_results", "x"),
                ("charge_status", "PROCESSED"),
                ("offset", "0"),
            ],
            "number_of_results",
        ),
        (
            vec![("number_of_results", "5"), ("offset", "0")],
            "charge_status",
        ),
        (
            vec![
                ("number_of_results", "5"),
                ("charge_status", "PENDING"),
                ("offset", "0"),
            ],
            "charge_status",
        ),
        (
            vec![("number_of_results", "5"), ("charge_status", "PROCESSED")],
            "offset",
        ),
        (
            vec![
                ("number_of_results", "5"),
                ("charge_status", "PROCESSED"),
                ("offset", "-1"),
            ],
            "offset",
        ),
        (
            vec![
                ("number_of_results", "5"),
                ("charge_status", "PROCESSED"),
                ("offset", "0"),
                ("offset", "1"),
            ],
            "offset",
        ),
        (
            vec![
                ("number_of_results", "5"),
                ("charge_status", "PROCESSED"),
                ("offset", "0"),
                ("fields_set", "number,colour"),
            ],
            "fields_set",
        ),
    ] {
        let err = parse_list_params(&q(&pairs)).expect_err("refused");
        assert_eq!(
            (err.code, err.description.as_str()),
            (Code::InvalidParameter, named),
            "{pairs:?}"
        );
    }
}

#[test]
fn fields_set_selects_fields_once_each_in_contract_order() {
    let p = parse_list_params(&q(&[
        ("number_of_results", "1"),
        ("charge_status", "NOT_PROCESSED"),
        ("offset", "3"),
        ("fields_set", "amount, number,amount"),
    ]))
    .expect("valid");
    assert_eq!(p.fields, vec![ChargeField::Number, ChargeField::Amount]);
}

#[test]
fn integers_are_plain_decimal_digits_without_sign_or_leading_zero() {
    assert_eq!(plain_integer("0"), Some(0));
    assert_eq!(plain_integer("50"), Some(50));
    assert_eq!(
        plain_integer("18446744073709551615"),
        Some(u64::MAX),
        "the largest u64 parses; the list's own maximum refuses it"
    );
    for bad in [
        "",
        "+5",
        "-5",
        "05",
        "00",
        " 5",
        "5 ",
        "5.0",
        "5e0",
        "0x5",
        "18446744073709551616",
        "٥",
    ] {
        assert_eq!(plain_integer(bad), None, "{bad:?}");
    }
}

#[test]
fn the_first_repeated_query_parameter_is_named() {
    let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(repeated_parameter(&q(&[("a", "1"), ("b", "2")])), None);
    assert_eq!(
        repeated_parameter(&q(&[("token", "x"), ("b", "2"), ("token", "x")])),
        Some("token")
    );
}
