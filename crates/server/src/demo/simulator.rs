//! `serve --demo --simulate-netflix`: a pretend Netflix side in the server's own process,
//! so the whole loop shows on one machine without writing a connector.
//!
//! It only speaks HTTP to the server it runs in, as a real connector would: it raises a
//! charge for a demo customer now and then (`POST connector/charges`), signs a new
//! customer up through the operator API and links the account as Netflix would
//! (`POST connector/subscriptions/activate`), and reads and acknowledges the outbox,
//! logging what it "told Netflix".

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use super as demo;
use crate::api::paths::{BASE, CONNECTOR};

/// How often a charge is raised, a customer signs up, the outbox is read.
const CHARGE_EVERY: Duration = Duration::from_secs(20);
const SIGN_UP_EVERY: Duration = Duration::from_secs(60);
const OUTBOX_EVERY: Duration = Duration::from_secs(2);

const CUSTOMERS: [&str; 5] = ["pci155", "pci156", "pci157", "pci158", "pci159"];

struct Client {
    /// The server's one HTTP client (calls give up after 10 s).
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        bearer: &str,
    ) -> Option<Value> {
        let body = body.map_or_else(String::new, |b| b.to_string());
        let answer = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .bearer_auth(bearer)
            .body(body)
            .send()
            .await;
        match answer {
            Ok(answer) => {
                let body = answer.bytes().await.ok()?;
                let answer: Value = serde_json::from_slice(&body).ok()?;
                if answer["status"]["code"] != "OK" {
                    tracing::warn!(target: "netflix", %path, answer = %answer["status"], "the call was refused");
                    return None;
                }
                Some(answer["data"].clone())
            }
            Err(e) => {
                let e = crate::jobs::webhook_client::describe(&e);
                tracing::warn!(target: "netflix", %path, error = %e, "the call failed");
                None
            }
        }
    }

    async fn connector(&self, method: Method, path: &str, body: Option<Value>) -> Option<Value> {
        self.call(method, &format!("{CONNECTOR}{path}"), body, &self.key)
            .await
    }
}

/// A small pseudo-random number (no need for more in a demo).
fn pick(n: usize) -> usize {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    usize::from(u16::from_le_bytes(b)) % n.max(1)
}

async fn raise_charge(client: &Client, serial: u64) {
    let customer = CUSTOMERS[pick(CUSTOMERS.len())];
    let amount = ["7.99", "11.99", "15.99", "17.99"][pick(4)];
    let id = format!("nfx-{}-{serial}", std::process::id());
    let paid = chargegate_core::clock::Date::of(
        chargegate_core::clock::Timestamp::now().plus_seconds(30 * 86_400),
    )
    .map_or_else(|| "2099-12-31".to_owned(), |d| d.to_string());
    let body = json!({"charges_set": [{
        "netflix_charge_identifier": id,
        "billing_system_customer_identifier": customer,
        "amount": serde_json::from_str::<Value>(amount).unwrap_or(Value::Null),
        "currency": "EUR",
        "paid_through_date": paid,
    }]});
    if let Some(data) = client.connector(Method::POST, "/charges", Some(body)).await {
        let number = data["charges_set"][0]["number"].as_str().unwrap_or("?");
        tracing::info!(target: "netflix", netflix_charge_identifier = %id, %number, %customer, amount, "Netflix raised a charge");
    }
}

async fn sign_up(client: &Client, serial: u64) {
    // The operator's shop signs the customer up (as the demo user) and redirects them to
    // Netflix with the netflix token; Netflix links their account.
    let login = client
        .call(
            Method::POST,
            &format!("{BASE}/authentication/token"),
            Some(
                json!({"username": demo::USERNAME, "password": demo::PASSWORD,
                        "organisation": demo::OPERATOR}),
            ),
            "",
        )
        .await;
    let Some(token) = login.and_then(|d| d["token"].as_str().map(str::to_owned)) else {
        return;
    };
    let customer = format!("sim{}-{serial}", std::process::id());
    let created = client
        .call(
            Method::POST,
            &format!("{BASE}/netflix/subscriptions/create"),
            Some(json!({"billing_system_customer_identifier": customer, "channel": "WEB"})),
            &token,
        )
        .await;
    let Some(netflix_token) = created.and_then(|d| d["netflix_token"].as_str().map(str::to_owned))
    else {
        return;
    };
    let pai = format!("PAI-{customer}");
    if client
        .connector(
            Method::POST,
            "/subscriptions/activate",
            Some(json!({"netflix_token": netflix_token, "netflix_customer_identifier": pai})),
        )
        .await
        .is_some()
    {
        tracing::info!(target: "netflix", %customer, %pai, "a customer signed up and Netflix linked the account");
    }
}

async fn drain_outbox(client: &Client) {
    let Some(data) = client
        .connector(Method::GET, "/outbox?limit=100", None)
        .await
    else {
        return;
    };
    let Some(events) = data["events_set"].as_array().filter(|e| !e.is_empty()) else {
        return;
    };
    for e in events {
        let what = match (&e["charge"], &e["subscription"]) {
            (c, _) if c.is_object() => format!(
                "charge {} ({}) is {}{}",
                c["number"].as_str().unwrap_or("?"),
                c["netflix_charge_identifier"]
                    .as_str()
                    .unwrap_or("not from Netflix"),
                c["charge_status"].as_str().unwrap_or("?"),
                e["reference_number"]
                    .as_str()
                    .map(|r| format!(", reference {r}"))
                    .unwrap_or_default()
            ),
            (_, s) => format!(
                "subscription {} of {} is {}",
                s["subscription_number"].as_str().unwrap_or("?"),
                s["billing_system_customer_identifier"]
                    .as_str()
                    .unwrap_or("?"),
                s["life_cycle_state"].as_str().unwrap_or("?")
            ),
        };
        tracing::info!(target: "netflix", event = %e["id"].as_str().unwrap_or("?"), r#type = %e["type"].as_str().unwrap_or("?"), "told Netflix: {what}");
    }
    let ids: Vec<Value> = events.iter().map(|e| e["id"].clone()).collect();
    let _ = client
        .connector(Method::POST, "/outbox/ack", Some(json!({ "ids": ids })))
        .await;
}

/// Runs until `stop` turns true, calling the server at `base` through `http` (the
/// server's one client, [`crate::jobs::webhook_client::build`]).
pub async fn run(
    http: reqwest::Client,
    base: String,
    key: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client = Client { http, base, key };
    tracing::info!(target: "netflix", "simulated Netflix side running: a charge every {}s, a sign-up every {}s", CHARGE_EVERY.as_secs(), SIGN_UP_EVERY.as_secs());
    let mut charges = tokio::time::interval(CHARGE_EVERY);
    let mut sign_ups = tokio::time::interval(SIGN_UP_EVERY);
    let mut outbox = tokio::time::interval(OUTBOX_EVERY);
    let mut serial = 0u64;
    loop {
        tokio::select! {
            _ = charges.tick() => { serial += 1; raise_charge(&client, serial).await; }
            _ = sign_ups.tick() => { serial += 1; sign_up(&client, serial).await; }
            _ = outbox.tick() => drain_outbox(&client).await,
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}
