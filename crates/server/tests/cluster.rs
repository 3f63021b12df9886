//! Several chargegate servers on one PostgreSQL database, as operators run them behind a
//! load balancer: shared tokens, one decision per charge under cross-server races, and
//! one server's death leaving the other serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::process::{Server, chargegate, run};
use common::*;
use serde_json::{Value, json};

async fn call(client: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    client
        .post(format!("{base}{V2}/{path}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn login(client: &reqwest::Client, base: &str) -> String {
    let r = call(
        client,
        base,
        "authentication/token",
        json!({"username": "billing", "password": "pw-123", "organisation": "pci"}),
    )
    .await;
    r["data"]["token"]
        .as_str()
        .unwrap_or_else(|| panic!("login failed: {r}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_database_share_tokens_and_decide_each_charge_once() {
    db::require_postgres("two_servers_on_one_database_share_tokens_and_decide_each_charge_once");
    let db = TestDb::new(Backend::Postgres).await;
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(run(
        chargegate(
            &db.url,
            &[
                "operator",
                "add",
                "pci",
                "--name",
                "PCI",
                "--local-currency",
                "EUR",
            ],
        ),
        "",
    ));
    ok(run(
        chargegate(&db.url, &["user", "add", "billing", "--operator", "pci"]),
        "pw-123\n",
    ));
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("charges.csv");
    let mut text = String::from(
        "operator,number,billing_system_customer_identifier,amount,currency,paid_through_date\n",
    );
    let numbers: Vec<String> = (0..50).map(|i| format!("S{i:02}")).collect();
    for n in &numbers {
        text.push_str(&format!("pci,{n},c,9.99,EUR,2026-12-31\n"));
    }
    std::fs::write(&csv, text).unwrap();
    ok(run(
        chargegate(&db.url, &["charges", "import", csv.to_str().unwrap()]),
        "",
    ));

    let a = Server::start(chargegate(&db.url, &[]), &[], &[]);
    let b = Server::start(chargegate(&db.url, &[]), &[], &[]);
    let client = reqwest::Client::new();

    // A token issued by one server is accepted by the other; released on one, refused
    // by the other.
    let token = login(&client, &a.base).await;
    let list = |base: &str, token: &str| {
        format!(
            "{base}{V2}/netflix/charges/list?token={token}&number_of_results=1&charge_status=NOT_PROCESSED&offset=0"
        )
    };
    let r: Value = client
        .get(list(&b.base, &token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"]["code"], "OK", "{r}");
    let doomed = login(&client, &b.base).await;
    let r = call(
        &client,
        &b.base,
        "authentication/token/release",
        json!({"token": doomed}),
    )
    .await;
    assert_eq!(r["status"]["code"], "OK");
    let r: Value = client
        .get(list(&a.base, &doomed))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"]["code"], "INVALID_TOKEN", "{r}");

    // 24 calls split across both servers, accepts and declines of the same 50 charges,
    // each call with its own references so that only a winner hears success.
    let calls: Vec<_> = (0..24)
        .map(|k| {
            let base = if k % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            };
            let method = if k % 4 < 2 { "accept" } else { "decline" };
            let set = if method == "accept" {
                "accepted_charges_set"
            } else {
                "declined_charges_set"
            };
            let mut order = numbers.clone();
            order.rotate_left(k * 2);
            let items: Vec<Value> = order
                .iter()
                .map(|n| item_ref(n, "c", &format!("{method}-{k}-{n}")))
                .collect();
            let body = json!({"token": token, set: items});
            let client = client.clone();
            tokio::spawn(async move {
                (
                    method,
                    call(&client, &base, &format!("netflix/charges/{method}"), body).await,
                )
            })
        })
        .collect();
    let mut winners: HashMap<String, Vec<&str>> = HashMap::new();
    for c in calls {
        let (method, r) = c.await.unwrap();
        assert_eq!(r["status"]["code"], "OK", "{r}");
        let failed: Vec<&str> = r["data"]["failed_charges_set"]
            .as_array()
            .map(|f| {
                f.iter()
                    .map(|i| {
                        assert_eq!(i["error_code"], "CHARGE_ALREADY_PROCESSED", "{i}");
                        i["number"].as_str().unwrap()
                    })
                    .collect()
            })
            .unwrap_or_default();
        for n in &numbers {
            if !failed.contains(&n.as_str()) {
                winners.entry(n.clone()).or_default().push(method);
            }
        }
    }
    for n in &numbers {
        assert_eq!(
            winners.get(n).map(Vec::len),
            Some(1),
            "{n}: {:?}",
            winners.get(n)
        );
    }
    assert_eq!(db.scalar("SELECT count(*) FROM decisions").await, 50);
    assert_eq!(
        db.scalar("SELECT count(*) FROM charge_history WHERE event IN ('accept', 'decline')")
            .await,
        50
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM (SELECT charge_id FROM charge_history WHERE event IN ('accept', 'decline') GROUP BY charge_id HAVING count(*) <> 1) AS twice").await,
        0
    );
    let mismatched = db
        .scalar(
            "SELECT count(*) FROM charges c JOIN decisions d ON d.charge_id = c.id \
         WHERE (d.method = 'accept') <> (c.status = 'APPROVED')",
        )
        .await;
    assert_eq!(mismatched, 0, "every final status matches its winning call");

    // Killing one server leaves the other serving.
    let mut a = a;
    a.kill();
    let fresh = login(&client, &b.base).await;
    let r: Value = client
        .get(list(&b.base, &fresh).replace("NOT_PROCESSED", "PROCESSED"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["status"]["code"], "OK", "{r}");
    assert_eq!(r["data"]["charges_set"].as_array().unwrap().len(), 1);
    drop(a);
}
