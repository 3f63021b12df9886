//! How much memory failed logins leave behind: the resident set of a server after 300
//! failed logins from 6 parallel clients.
//!
//! ```sh
//! cargo run --release --example loginmem -- [logins] [clients]
//! ```
//!
//! It starts the server in-process, exactly as `chargegate serve` builds it from the
//! default settings (so `password_checks` = 2), on 127.0.0.1:0 over a fresh SQLite
//! database with one operator and user, then sends failed logins with unknown user names
//! (each runs a full Argon2 check; none is locked out) over loopback HTTP. It prints the
//! process's resident set (VmRSS) and peak (VmHWM) before and after, from
//! /proc/self/status (Linux). The clients run in the same process and take a few MiB of
//! their own. It asserts nothing: memory figures belong here, not in tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chargegate::app;
use chargegate::config::Settings;
use chargegate::passwords;
use chargegate_core::money::Currency;
use chargegate_core::store::{NewOperator, NewUser};
use chargegate_core::text::{OperatorCode, Username};
use chargegate_store::{DatabaseUrl, StoreOptions};

/// `VmRSS` and `VmHWM` of this process, in MiB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let logins: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(300);
    let clients: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(6);

    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        database_url: format!("sqlite://{}", dir.path().join("mem.db").display()),
        ..Settings::default()
    };
    let store = chargegate_store::open(
        &DatabaseUrl::parse(&settings.database_url).unwrap(),
        &StoreOptions::default(),
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let op = store
        .create_operator(&NewOperator {
            code: OperatorCode::parse("mem").unwrap(),
            name: "mem".into(),
            local_currency: Currency::parse("EUR").unwrap(),
        })
        .await
        .unwrap();
    store
        .create_user(&NewUser {
            operator_id: op.id,
            username: Username::parse("real").unwrap(),
            password_hash: passwords::hash("real-pw").unwrap(),
        })
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = chargegate::cli::app_state(store, &settings).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/crmapi/rest/v2/authentication/token");
    // One request first, so the baseline includes a served request and a live client.
    client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    let (rss_before, _) = memory();

    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url) = (client.clone(), url.clone());
            let share = logins / clients + usize::from(c < logins % clients);
            tokio::spawn(async move {
                for i in 0..share {
                    let body = format!(
                        r#"{{"username":"nobody-{c}-{i}","password":"guess","organisation":"mem"}}"#
                    );
                    let reply = client.post(&url).body(body).send().await.unwrap();
                    assert_eq!(reply.status(), 401);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    let (rss_after, peak) = memory();

    println!("failed logins     {logins} from {clients} parallel clients in {elapsed:.2?}");
    println!("password checks   at most 2 at once (the default password_checks)");
    println!("RSS before        {rss_before:.1} MiB");
    println!("RSS after         {rss_after:.1} MiB");
    println!("RSS peak (VmHWM)  {peak:.1} MiB");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
