//! The OpenAPI document: generated from the code, checked in as `openapi.json`, served at
//! `GET /crmapi/rest/v2/openapi.json`, and complete (every method, field and code).
//!
//! After changing the API, regenerate the checked-in file with
//! `CHARGEGATE_TEST_UPDATE_OPENAPI=1 cargo test -p chargegate --test api openapi::`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::path::PathBuf;

use chargegate_core::batch::{ItemErrorCode, MAX_ITEMS, Method};
use chargegate_core::charge::ChargeField;
use chargegate_core::text::{ChargeNumber, CustomerId, ReferenceNumber};
use common::*;
use serde_json::Value;
use utoipa::openapi::{RefOr, Schema};

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json")
}

/// The document as the code generates it, in the checked-in file's layout.
fn generated_text() -> String {
    let document = chargegate::api::openapi_document();
    serde_json::to_string_pretty(&document).unwrap() + "\n"
}

fn generated() -> Value {
    serde_json::from_str(&generated_text()).unwrap()
}

#[test]
fn the_checked_in_openapi_json_is_the_document_the_code_generates() {
    let path = checked_in_path();
    let generated = generated_text();
    if std::env::var_os("CHARGEGATE_TEST_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()))
            + 1;
        panic!(
            "{} differs from the document the code generates (first at line {line}); \
             regenerate it with: CHARGEGATE_TEST_UPDATE_OPENAPI=1 cargo test -p chargegate --test api openapi::",
            path.display()
        );
    }
}

fn schema<'a>(document: &'a Value, name: &str) -> &'a Value {
    let schema = &document["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    schema
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_and_describes_every_method_with_its_verb() {
    let document = generated();
    assert_eq!(document["openapi"], "3.1.0");
    let mut described: Vec<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |verb| (verb.clone(), path.clone()))
        })
        .collect();
    described.sort();
    let expected = [
        ("get", "netflix/charges/list"),
        ("get", "netflix/promotions/list"),
        ("get", "netflix/subscriptions/show"),
        ("post", "authentication/token"),
        ("post", "authentication/token/release"),
        ("post", "authentication/web_api_key/token"),
        ("post", "netflix/charges/accept"),
        ("post", "netflix/charges/acknowledge"),
        ("post", "netflix/charges/decline"),
        ("post", "netflix/subscriptions/create"),
        ("post", "netflix/subscriptions/suspend"),
        ("post", "netflix/subscriptions/unsuspend"),
    ]
    .map(|(verb, path)| (verb.to_owned(), format!("{V2}/{path}")));
    let mut expected = expected.to_vec();
    expected.extend(
        [
            ("get", "charges/decisions"),
            ("get", "charges/show"),
            ("get", "connector/outbox"),
            ("post", "connector/charges"),
            ("post", "connector/charges/status"),
            ("post", "connector/outbox/ack"),
            ("post", "connector/promotions"),
            ("post", "connector/subscriptions/activate"),
            ("post", "connector/subscriptions/state"),
        ]
        .map(|(verb, path)| (verb.to_owned(), format!("/chargegate/v1/{path}"))),
    );
    expected.sort();
    assert_eq!(described, expected);
}

#[test]
fn the_document_lists_every_status_code_and_item_error_code() {
    let document = generated();
    let codes = strings(&schema(&document, "StatusCode")["enum"]);
    let expected: Vec<&str> = chargegate::edge::error::Code::ALL
        .iter()
        .map(chargegate::edge::code::Code::as_str)
        .collect();
    assert_eq!(codes, expected);
    let item_codes = strings(&schema(&document, "ItemErrorCode")["enum"]);
    let expected: Vec<&str> = ItemErrorCode::ALL
        .iter()
        .map(chargegate_core::ItemErrorCode::as_str)
        .collect();
    assert_eq!(item_codes, expected);
    assert_eq!(
        schema(&document, "FailedItem")["properties"]["error_code"]["$ref"],
        "#/components/schemas/ItemErrorCode"
    );
    assert_eq!(
        schema(&document, "Status")["properties"]["code"]["$ref"],
        "#/components/schemas/StatusCode"
    );
}

#[test]
fn every_error_response_names_codes_whose_http_status_it_is() {
    let document = generated();
    let http_of = |name: &str| {
        chargegate::edge::error::Code::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or_else(|| panic!("unknown code {name}"))
            .http_status()
            .as_u16()
    };
    for (path, item) in document["paths"].as_object().unwrap() {
        for (verb, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for status in ["200", "401", "500", "503"] {
                assert!(responses.contains_key(status), "{verb} {path}: no {status}");
            }
            for (status, response) in responses.iter().filter(|(s, _)| *s != "200") {
                let body = &response["content"]["application/json"]["schema"];
                assert!(
                    body["properties"]["data"].is_object(),
                    "{verb} {path} {status}"
                );
                for code in strings(&body["properties"]["status"]["properties"]["code"]["enum"]) {
                    assert_eq!(http_of(code).to_string(), *status, "{verb} {path}: {code}");
                }
            }
        }
    }
}

#[test]
fn each_batch_method_documents_its_own_set_with_the_codes_limits() {
    let document = generated();
    for (method, request) in [
        (Method::Accept, "AcceptRequest"),
        (Method::Decline, "DeclineRequest"),
        (Method::Acknowledge, "AcknowledgeRequest"),
    ] {
        let body = &document["paths"][format!("{V2}/netflix/charges/{}", method.as_str())]["post"]
            ["requestBody"]["content"]["application/json"]["schema"]["$ref"];
        assert_eq!(*body, format!("#/components/schemas/{request}"));
        let request = schema(&document, request);
        assert_eq!(strings(&request["required"]), [method.set_name()]);
        let set = &request["properties"][method.set_name()];
        assert_eq!(set["maxItems"], MAX_ITEMS);
        assert_eq!(set["minItems"], 1);
        assert!(request["properties"]["token"].is_object());
    }
    let item = schema(&document, "ChargeItem");
    assert_eq!(
        strings(&item["required"]),
        ["number", "billing_system_customer_identifier"]
    );
    for (field, max) in [
        ("number", ChargeNumber::MAX_CHARS),
        ("billing_system_customer_identifier", CustomerId::MAX_CHARS),
        ("reference_number", ReferenceNumber::MAX_CHARS),
    ] {
        assert_eq!(item["properties"][field]["maxLength"], max, "{field}");
        assert_eq!(item["properties"][field]["minLength"], 1, "{field}");
    }
}

#[test]
fn the_charge_schema_has_the_contracts_fields_in_order_and_fields_set_offers_them() {
    // The typed document keeps the properties' order (a `serde_json::Value` sorts keys).
    let typed = chargegate::api::openapi_document();
    let Some(RefOr::T(Schema::Object(charge))) = typed
        .components
        .as_ref()
        .and_then(|c| c.schemas.get("Charge"))
    else {
        panic!("no Charge object schema");
    };
    let names: Vec<&str> = charge.properties.keys().map(String::as_str).collect();
    let expected: Vec<&str> = ChargeField::ALL
        .iter()
        .map(chargegate_core::ChargeField::name)
        .collect();
    assert_eq!(names, expected);
    let document = generated();
    let parameters = document["paths"][format!("{V2}/netflix/charges/list")]["get"]["parameters"]
        .as_array()
        .unwrap();
    let fields_set = parameters
        .iter()
        .find(|p| p["name"] == "fields_set")
        .unwrap();
    let pattern = fields_set["schema"]["pattern"].as_str().unwrap();
    for name in &expected {
        assert!(
            pattern.contains(&format!("|{name}|"))
                || pattern.contains(&format!("(?:{name}|"))
                || pattern.contains(&format!("|{name})")),
            "{name} in {pattern}"
        );
    }
    let required: Vec<&str> = parameters
        .iter()
        .filter(|p| p["required"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(required, ["number_of_results", "charge_status", "offset"]);
}

#[test]
fn the_token_may_travel_in_the_body_the_query_or_a_bearer_header() {
    let document = generated();
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["token_query"]["in"], "query");
    assert_eq!(schemes["token_query"]["name"], "token");
    for (path, item) in document["paths"].as_object().unwrap() {
        for (verb, operation) in item.as_object().unwrap() {
            for requirement in operation["security"].as_array().unwrap() {
                for scheme in requirement.as_object().unwrap().keys() {
                    assert!(schemes[scheme].is_object(), "{verb} {path}: {scheme}");
                }
            }
        }
    }
    let list = &document["paths"][format!("{V2}/netflix/charges/list")]["get"]["security"];
    assert_eq!(
        *list,
        serde_json::json!([{"token_query": []}, {"bearer": []}])
    );
    let decline = &document["paths"][format!("{V2}/netflix/charges/decline")]["post"]["security"];
    assert_eq!(*decline, serde_json::json!([{}, {"bearer": []}]));
    assert!(schema(&document, "ReleaseRequest")["properties"]["token"].is_object());
}

on_every_backend! {
    async fn the_server_serves_the_generated_document_at_openapi_json(backend) {
        let srv = TestServer::start(backend).await;
        let r = srv.get(&format!("{V2}/openapi.json")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.header("content-type"), Some("application/json"));
        // The same as the checked-in file, which the test above holds to `generated()`.
        assert!(r.body == generated(), "the served document is not the generated one");
    }

    async fn every_documented_method_is_served(backend) {
        let srv = TestServer::start(backend).await;
        let document = generated();
        for (path, item) in document["paths"].as_object().unwrap() {
            for verb in item.as_object().unwrap().keys() {
                let request = match verb.as_str() {
                    "get" => srv.client().get(srv.url(path)),
                    "post" => srv.client().post(srv.url(path)).body("{}"),
                    other => panic!("unexpected verb {other}"),
                };
                let r = srv.send(request).await;
                // Served, so refused for its missing token or fields, never unknown.
                assert!(matches!(r.status, 400 | 401), "{verb} {path}: {}", r.text);
            }
        }
    }
}
