//! `chargegate key add|list|revoke` and `chargegate promotion add|list` as an operator
//! uses them, and a backup carrying what they made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::process::Output;

use common::process::{Server, Workdir, count};
use serde_json::json;

#[track_caller]
fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

async fn key_login(server: &Server, key: &str) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(server.url("/crmapi/rest/v2/authentication/web_api_key/token"))
        .basic_auth(key, Some(""))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_is_printed_once_logs_in_and_stops_when_revoked() {
    let d = Workdir::new();
    d.setup("s3cret-password", &[("I1", "pci155")]);
    let key = d.ok(
        &[
            "key",
            "add",
            "--operator",
            "pci",
            "--user",
            "billing",
            "--name",
            "billing system",
        ],
        "",
    );
    let key = key.trim().to_owned();
    assert!(key.starts_with("cgk_") && key.len() > 40, "{key}");
    let prefix: String = key.chars().take(8).collect();
    let list = d.ok(&["key", "list"], "");
    assert!(list.contains(&prefix), "{list}");
    assert!(list.contains("billing system"), "{list}");
    assert!(!list.contains(&key), "the list never shows a key: {list}");

    let mut server = d.serve(&[], &[]);
    let (status, body) = key_login(&server, &key).await;
    assert_eq!(status, 200, "{body}");
    let token = body["data"]["token"].as_str().unwrap().to_owned();

    let out = d.ok(&["key", "revoke", &prefix], "");
    assert!(out.contains("1 token(s)"), "{out}");
    let (status, body) = key_login(&server, &key).await;
    assert_eq!(
        (status, body["status"]["code"].as_str()),
        (401, Some("INVALID_CREDENTIALS"))
    );
    let r = reqwest::Client::new()
        .post(server.url("/crmapi/rest/v2/netflix/charges/decline"))
        .body(json!({"token": token, "declined_charges_set": [{"number": "I1", "billing_system_customer_identifier": "pci155"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    server.sigterm();
    server.wait();

    let again = d.ok(&["key", "revoke", &prefix], "");
    assert!(again.contains("already revoked"), "{again}");
    let err = fails(&d.run(&["key", "revoke", "cgk_zzzz"], ""));
    assert!(err.contains("no key with prefix"), "{err}");
    let err = fails(&d.run(&["key", "add", "--operator", "pci", "--user", "nobody"], ""));
    assert!(err.contains("no user 'nobody'"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promotions_are_added_listed_with_their_window_and_refused_when_bad() {
    let d = Workdir::new();
    d.setup("s3cret-password", &[]);
    d.ok(
        &[
            "promotion",
            "add",
            "WELCOME3",
            "--operator",
            "pci",
            "--name",
            "Three months",
            "--effective-from",
            "2026-01-01",
            "--expires-on",
            "2026-04-01T00:00:00",
        ],
        "",
    );
    d.ok(
        &[
            "promotion",
            "add",
            "LATER",
            "--operator",
            "pci",
            "--name",
            "Later",
            "--description",
            "from next year",
            "--effective-from",
            "2099-01-01T00:00:00Z",
        ],
        "",
    );
    let list = d.ok(&["promotion", "list", "--operator", "pci"], "");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[1].contains("WELCOME3") && lines[1].contains("2026-01-01T00:00:00"));
    assert!(lines[1].contains("2026-04-01T00:00:00"), "{list}");
    assert!(
        lines[2].contains("LATER") && lines[2].contains("from next year"),
        "{list}"
    );

    let err = fails(&d.run(
        &[
            "promotion",
            "add",
            "WELCOME3",
            "--operator",
            "pci",
            "--name",
            "x",
            "--effective-from",
            "2026-01-01",
        ],
        "",
    ));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&d.run(
        &[
            "promotion",
            "add",
            "P",
            "--operator",
            "pci",
            "--name",
            "x",
            "--effective-from",
            "2026-02-30",
        ],
        "",
    ));
    assert!(err.contains("--effective-from"), "{err}");
    let err = fails(&d.run(
        &[
            "promotion",
            "add",
            "P",
            "--operator",
            "pci",
            "--name",
            "x",
            "--effective-from",
            "2026-02-01",
            "--expires-on",
            "2026-01-01",
        ],
        "",
    ));
    assert!(err.contains("after --effective-from"), "{err}");
    let err = fails(&d.run(
        &[
            "promotion",
            "add",
            "P",
            "--operator",
            "nope",
            "--name",
            "x",
            "--effective-from",
            "2026-02-01",
        ],
        "",
    ));
    assert!(err.contains("no operator 'nope'"), "{err}");
    assert_eq!(
        count(&d.path("chargegate.db"), "SELECT count(*) FROM promotions").await,
        2
    );

    // A backup carries them, and the keys.
    d.ok(
        &["key", "add", "--operator", "pci", "--user", "billing"],
        "",
    );
    d.ok(&["backup", "copy.db"], "");
    let copy = d.path("copy.db");
    assert_eq!(count(&copy, "SELECT count(*) FROM promotions").await, 2);
    assert_eq!(count(&copy, "SELECT count(*) FROM api_keys").await, 1);
}
