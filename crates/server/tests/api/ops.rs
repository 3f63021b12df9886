//! Running chargegate in production, through the real binary: metrics on their own
//! listener, JSON logs without secrets, backups of a live database, and graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use common::process::*;
use serde_json::{Value, json};

const PASSWORD: &str = "correct-horse-battery-staple";

async fn scrape(client: &reqwest::Client, server: &mut Server) -> String {
    let response = client
        .get(format!("{}/metrics", server.metrics_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

/// The value of one series (`name{labels}`) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener_and_count_items_by_outcome() {
    let d = Workdir::new();
    d.setup(PASSWORD, &[("I1", "c1"), ("I2", "c2")]);
    let mut server = d.serve(
        &["--metrics-listen", "127.0.0.1:0"],
        &[("CHARGEGATE_LOGIN_MAX_FAILURES", "2")],
    );
    let client = reqwest::Client::new();
    let token = billing_token(&client, &server.base, PASSWORD).await;

    let answer = decline(
        &client,
        &server.base,
        &token,
        &[("I1", "c1"), ("I404", "c1")],
    )
    .await;
    assert_eq!(
        answer.body["data"]["failed_charges_set"][0]["error_code"],
        "CHARGE_NOT_FOUND"
    );
    let answer = decline(&client, &server.base, &token, &[("I2", "nobody")]).await;
    assert_eq!(
        answer.body["data"]["failed_charges_set"][0]["error_code"],
        "CUSTOMER_MISMATCH"
    );

    // Wrong passwords for another name until it is locked out.
    let mut refused = 0;
    let mut locked = 0;
    for _ in 0..5 {
        match login(&client, &server.base, "mallory", "guess")
            .await
            .status
        {
            401 => refused += 1,
            429 => locked += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        refused >= 1 && locked >= 1,
        "{refused} refused, {locked} locked out"
    );

    // The API's listener does not serve metrics.
    let on_api = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(on_api.status(), 404);
    let body: Value = on_api.json().await.unwrap();
    assert_eq!(body["status"]["code"], "NOT_FOUND");
    assert_eq!(body["data"], json!({}));

    let text = scrape(&client, &mut server).await;
    let decline_route = format!("{V2}/netflix/charges/decline");
    for (series, value) in [
        (
            r#"chargegate_charge_items_total{method="decline",outcome="ok"}"#.to_owned(),
            1.0,
        ),
        (
            r#"chargegate_charge_items_total{method="decline",outcome="CHARGE_NOT_FOUND"}"#
                .to_owned(),
            1.0,
        ),
        (
            r#"chargegate_charge_items_total{method="decline",outcome="CUSTOMER_MISMATCH"}"#
                .to_owned(),
            1.0,
        ),
        (
            r#"chargegate_charge_items_total{method="accept",outcome="ok"}"#.to_owned(),
            0.0,
        ),
        (
            format!(r#"chargegate_http_requests_total{{route="{decline_route}",status="200"}}"#),
            2.0,
        ),
        (
            format!(
                r#"chargegate_http_requests_total{{route="{V2}/authentication/token",status="401"}}"#
            ),
            f64::from(refused),
        ),
        (
            format!(
                r#"chargegate_http_requests_total{{route="{V2}/authentication/token",status="429"}}"#
            ),
            f64::from(locked),
        ),
        (
            r#"chargegate_http_requests_total{route="unmatched",status="404"}"#.to_owned(),
            1.0,
        ),
        (
            format!(r#"chargegate_http_request_duration_seconds_count{{route="{decline_route}"}}"#),
            2.0,
        ),
        (
            r#"chargegate_db_transaction_duration_seconds_count{operation="decline"}"#.to_owned(),
            2.0,
        ),
        (
            "chargegate_login_failures_total".to_owned(),
            f64::from(refused),
        ),
        (
            "chargegate_login_lockouts_total".to_owned(),
            f64::from(locked),
        ),
        // The scrape itself is not a request of the API.
        ("chargegate_http_requests_in_flight".to_owned(), 0.0),
    ] {
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    }
    // The exact line an alert would match.
    assert!(
        text.lines().any(|l| l
            == r#"chargegate_charge_items_total{method="decline",outcome="CHARGE_NOT_FOUND"} 1"#),
        "{text}"
    );
    for token_or_secret in [token.as_str(), PASSWORD, "guess"] {
        assert!(!text.contains(token_or_secret));
    }

    // The metrics listener serves nothing else.
    let other = client
        .get(format!("{}{V2}/openapi.json", server.metrics_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn metrics_are_off_unless_a_metrics_listener_is_configured() {
    let d = Workdir::new();
    d.setup(PASSWORD, &[]);
    let mut server = d.serve(&[], &[]);
    let client = reqwest::Client::new();
    let on_api = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(on_api.status(), 404);
    server.sigterm();
    assert!(server.wait().success());
    let log = server.log();
    assert!(!log.iter().any(|l| l.contains("metrics")), "{log:#?}");

    // The environment variable turns it on as the flag does.
    let mut server = d.serve(&[], &[("CHARGEGATE_METRICS_LISTEN", "127.0.0.1:0")]);
    let text = scrape(&client, &mut server).await;
    assert_eq!(
        sample(
            &text,
            r#"chargegate_charge_items_total{method="accept",outcome="ok"}"#
        ),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_with_its_id_and_never_a_secret() {
    let d = Workdir::new();
    d.setup(PASSWORD, &[("I1", "c1")]);
    let mut server = d.serve(&["--log-format", "json"], &[]);
    let client = reqwest::Client::new();
    let logged_in = login(&client, &server.base, "billing", PASSWORD).await;
    assert_eq!(logged_in.code(), "OK");
    let token = logged_in.body["data"]["token"].as_str().unwrap().to_owned();
    let declined = decline(&client, &server.base, &token, &[("I1", "c1")]).await;
    assert_eq!(declined.code(), "OK", "{}", declined.body);
    let wrong = "wrong-password-7f3a";
    let refused = login(&client, &server.base, "billing", wrong).await;
    assert_eq!(refused.code(), "INVALID_CREDENTIALS");
    server.sigterm();
    assert!(server.wait().success());

    let raw = server.log();
    let lines: Vec<Value> = raw
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let finished = |request_id: &str| -> Vec<&Value> {
        lines
            .iter()
            .filter(|l| l["message"] == "request finished" && l["span"]["request_id"] == request_id)
            .collect()
    };

    let decline_lines = finished(&declined.request_id);
    assert_eq!(decline_lines.len(), 1, "{raw:#?}");
    let line = decline_lines[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["status"], 200);
    assert!(
        line["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{line}"
    );
    // Rounded to the microsecond: no 0.20502599999999999.
    let written = line["latency_ms"].to_string();
    assert!(
        written
            .split_once('.')
            .is_none_or(|(_, decimals)| decimals.len() <= 3),
        "{written}"
    );
    assert_eq!(
        line["span"]["route"],
        format!("{V2}/netflix/charges/decline")
    );
    assert_eq!(line["span"]["method"], "POST");
    assert_eq!(line["span"]["operator"], "pci");

    let refused_lines = finished(&refused.request_id);
    assert_eq!(refused_lines.len(), 1, "{raw:#?}");
    assert_eq!(refused_lines[0]["status"], 401);
    assert_eq!(
        refused_lines[0]["span"]["route"],
        format!("{V2}/authentication/token")
    );
    assert_eq!(finished(&logged_in.request_id).len(), 1);

    for line in &raw {
        for secret in [token.as_str(), PASSWORD, wrong, "$argon2"] {
            assert!(!line.contains(secret), "{secret:?} logged: {line}");
        }
    }
}

/// `(I001, c1)`, `(I002, c2)`, …
fn numbered(n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| (format!("I{i:03}"), format!("c{i}")))
        .collect()
}

fn as_refs(charges: &[(String, String)]) -> Vec<(&str, &str)> {
    charges
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_str()))
        .collect()
}

/// Every charge of the operator in a group, as `(number, charge_status)`.
async fn listed(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    group: &str,
) -> Vec<(String, String)> {
    let page: Value = client
        .get(format!(
            "{base}{V2}/netflix/charges/list?token={token}&charge_status={group}&number_of_results=50&offset=0"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"]["charges_set"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|c| {
            (
                c["number"].as_str().unwrap().to_owned(),
                c["charge_status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Every declined charge has its decision and its history row, and nothing else does.
async fn assert_decisions_are_whole(db: &std::path::Path) -> i64 {
    let declined = count(db, "SELECT count(*) FROM charges WHERE status = 'DECLINED'").await;
    let decisions = count(
        db,
        "SELECT count(*) FROM decisions WHERE method = 'decline'",
    )
    .await;
    let history = count(
        db,
        "SELECT count(*) FROM charge_history WHERE event = 'decline'",
    )
    .await;
    let matched = count(
        db,
        "SELECT count(*) FROM charges c JOIN decisions d ON d.charge_id = c.id \
         JOIN charge_history h ON h.charge_id = c.id AND h.event = 'decline' \
         WHERE c.status = 'DECLINED' AND c.set_as_declined_on IS NOT NULL",
    )
    .await;
    assert_eq!(
        (decisions, history, matched),
        (declined, declined, declined),
        "{}",
        db.display()
    );
    declined
}

#[tokio::test]
async fn a_backup_taken_while_the_server_writes_is_served_by_a_fresh_server() {
    let d = Workdir::new();
    let charges = numbered(40);
    let charges = as_refs(&charges);
    d.setup(PASSWORD, &charges);
    let server = d.serve(&[], &[]);
    let client = reqwest::Client::new();
    let token = billing_token(&client, &server.base, PASSWORD).await;

    let (before, during) = charges.split_at(10);
    let answer = decline(&client, &server.base, &token, before).await;
    assert_eq!(answer.body["data"], json!({}), "{}", answer.body);

    // One decline per call keeps the server writing; the backup starts after the first.
    let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
    let writer = {
        let (client, base, token) = (client.clone(), server.base.clone(), token.clone());
        let during: Vec<(String, String)> = during
            .iter()
            .map(|(n, c)| ((*n).to_owned(), (*c).to_owned()))
            .collect();
        tokio::spawn(async move {
            let mut started_tx = Some(started_tx);
            let mut answers = Vec::new();
            for (number, customer) in &during {
                let answer = decline(&client, &base, &token, &[(number, customer)]).await;
                answers.push((answer.status, answer.body));
                if let Some(tx) = started_tx.take() {
                    let _ = tx.send(());
                }
            }
            answers
        })
    };
    started.await.unwrap();
    let copy = d.path("copy.db");
    let mut backup = d.command(&["backup", copy.to_str().unwrap()]);
    let out = tokio::task::spawn_blocking(move || backup.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("backed up"));

    for (status, body) in writer.await.unwrap() {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"], json!({}), "{body}");
    }
    assert_eq!(
        assert_decisions_are_whole(&d.path("chargegate.db")).await,
        40
    );

    // The copy is whole, holds the decisions made before it, and nothing half-done.
    assert_eq!(
        count(
            &copy,
            "SELECT count(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"
        )
        .await,
        1
    );
    let declined_in_copy = assert_decisions_are_whole(&copy).await;
    assert!((10..=40).contains(&declined_in_copy), "{declined_in_copy}");

    // A fresh server on the copy serves those decisions.
    let restored = d.serve(
        &["--database", &format!("sqlite://{}", copy.display())],
        &[],
    );
    let restored_token = billing_token(&client, &restored.base, PASSWORD).await;
    let processed = listed(&client, &restored.base, &restored_token, "PROCESSED").await;
    assert_eq!(processed.len() as i64, declined_in_copy);
    for (number, _) in before {
        assert!(
            processed.contains(&((*number).to_owned(), "DECLINED".to_owned())),
            "{number} in {processed:?}"
        );
    }
    let pending = listed(&client, &restored.base, &restored_token, "NOT_PROCESSED").await;
    assert_eq!(pending.len() as i64 + declined_in_copy, 40);
}

#[test]
fn backup_never_overwrites_and_refuses_what_it_cannot_copy() {
    let d = Workdir::new();
    // No database yet: nothing to copy, and none is created.
    let out = d.run(&["backup", "copy.db"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no SQLite database"), "{err}");
    assert!(!d.path("chargegate.db").exists() && !d.path("copy.db").exists());

    d.setup(PASSWORD, &[("I1", "c1")]);
    std::fs::write(d.path("taken.db"), "precious").unwrap();
    let out = d.run(&["backup", "taken.db"], "");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(d.path("taken.db")).unwrap(),
        "precious"
    );

    let out = d.run(
        &[
            "--database",
            "postgres://app@localhost/charges",
            "backup",
            "pg.db",
        ],
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("pg_dump"), "{err}");
    assert!(!d.path("pg.db").exists());

    d.ok(&["backup", "copy.db"], "");
    assert!(d.path("copy.db").is_file());
}

#[tokio::test]
async fn sigterm_lets_batch_calls_in_flight_finish_and_exits_cleanly() {
    use sqlx::Connection;

    const CALLS: usize = 4;
    const PER_CALL: usize = 25;
    let d = Workdir::new();
    let charges = numbered(CALLS * PER_CALL);
    d.setup(PASSWORD, &as_refs(&charges));
    // Waits for the database longer than this test can take, so no call gives up.
    let mut server = d.serve(
        &["--metrics-listen", "127.0.0.1:0"],
        &[("CHARGEGATE_DB_TIMEOUT", "600")],
    );
    let client = reqwest::Client::new();
    let token = billing_token(&client, &server.base, PASSWORD).await;

    // Hold SQLite's write lock, so every call stays in flight inside its transaction.
    let mut holder = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(d.path("chargegate.db")),
    )
    .await
    .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut holder)
        .await
        .unwrap();

    let calls: Vec<_> = charges
        .chunks(PER_CALL)
        .map(|chunk| {
            let (client, base, token) = (client.clone(), server.base.clone(), token.clone());
            let chunk = chunk.to_vec();
            tokio::spawn(async move { decline(&client, &base, &token, &as_refs(&chunk)).await })
        })
        .collect();

    // Every call has reached the server (a bounded wait on its own count, not a timing).
    let mut in_flight = None;
    for _ in 0..600 {
        let text = scrape(&client, &mut server).await;
        in_flight = sample(&text, "chargegate_http_requests_in_flight");
        if in_flight == Some(CALLS as f64) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(in_flight, Some(CALLS as f64));

    server.sigterm();
    server.await_log("shutting down");
    // Nothing was applied yet: the calls are all waiting for the lock.
    assert_eq!(
        count(
            &d.path("chargegate.db"),
            "SELECT count(*) FROM charges WHERE status = 'DECLINED'"
        )
        .await,
        0
    );
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();

    for call in calls {
        let answer = call.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["data"], json!({}), "{}", answer.body);
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait();
        (status, server.log())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{:?}\n{:#?}", status.0, status.1);
    assert!(status.1.iter().any(|l| l.contains("chargegate stopped")));

    // Every charge of every answered call is decided, each with its decision and history.
    let declined = assert_decisions_are_whole(&d.path("chargegate.db")).await;
    assert_eq!(declined, (CALLS * PER_CALL) as i64);
}
