//! The write engine: group commit with a savepoint per batch, crash safety, a full disk,
//! and the one list of tables against the real schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use chargegate_core::Database;
use chargegate_core::batch::{Batch, ItemInput, ItemRequest, Method, Verdict};
use chargegate_core::clock::Timestamp;
use chargegate_core::store::StoreError;
use chargegate_core::text::{ChargeNumber, CustomerId, ReferenceNumber};
use chargegate_store::tables::{NOT_COPIED, NOT_COPIED_COLUMNS, TABLES};
use common::process::{self, Server};
use common::*;
use serde_json::{Value, json};

fn decline_of(
    operator: i64,
    user: i64,
    items: &[(String, Option<String>)],
    request: &str,
) -> Batch {
    Batch {
        method: Method::Decline,
        operator_id: operator,
        user_id: user,
        key_id: None,
        via_console: false,
        request_id: request.into(),
        at: Timestamp::now(),
        items: items
            .iter()
            .map(|(n, r)| {
                ItemInput::valid(ItemRequest {
                    number: ChargeNumber::parse(n.as_str()).unwrap(),
                    customer: CustomerId::parse("c").unwrap(),
                    reference: r
                        .as_ref()
                        .map(|r| ReferenceNumber::parse(r.as_str()).unwrap()),
                })
            })
            .collect(),
    }
}

/// Makes any decision whose reference starts with POISON fail inside the database, as a
/// constraint or a bug would.
async fn poison_decisions(db: &TestDb) {
    match db.backend {
        Backend::Sqlite => {
            db.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON decisions \
                 WHEN NEW.reference_number LIKE 'POISON%' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned by the test'); END",
            )
            .await;
        }
        Backend::Postgres => {
            db.execute(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.reference_number LIKE 'POISON%' THEN \
                 RAISE EXCEPTION 'poisoned by the test'; END IF; RETURN NEW; END; $$",
            )
            .await;
            db.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON decisions \
                 FOR EACH ROW EXECUTE FUNCTION poison()",
            )
            .await;
        }
    }
}

on_every_backend! {
    async fn concurrent_batches_each_get_their_own_answer_and_only_successes_are_stored(backend) {
        let srv = TestServer::start(backend).await;
        let numbers: Vec<(String, String)> =
            (0..300).map(|i| (format!("G{i:04}"), "c".to_owned())).collect();
        let pairs: Vec<(&str, &str)> = numbers.iter().map(|(n, c)| (n.as_str(), c.as_str())).collect();
        srv.add_charges(OPERATOR, &pairs).await;
        poison_decisions(&srv.db).await;
        let operator = srv.operator_id(OPERATOR).await;
        let user = srv.db.scalar("SELECT id FROM users WHERE username = 'demo'").await;

        // 60 batches of 5 at once: every tenth-but-three names a charge that does not
        // exist (a per-item failure), every tenth-but-seven carries a poisoned reference
        // (the whole batch fails inside its savepoint).
        let mut calls = Vec::new();
        for b in 0..60 {
            let mut items: Vec<(String, Option<String>)> = (0..5)
                .map(|i| (format!("G{:04}", b * 5 + i), Some(format!("R{b}-{i}"))))
                .collect();
            match b % 10 {
                3 => items[2] = ("NOPE".into(), None),
                7 => items[4].1 = Some(format!("POISON{b}")),
                _ => {}
            }
            let store: Arc<dyn Database> = srv.store.clone();
            let batch = decline_of(operator, user, &items, &format!("req-{b}"));
            calls.push(tokio::spawn(async move { (b, store.apply_batch(&batch).await) }));
        }
        let mut stored = 0;
        for call in calls {
            let (b, answer) = call.await.unwrap();
            match b % 10 {
                7 => assert!(
                    matches!(&answer, Err(StoreError::Internal(m)) if m.contains("poisoned")),
                    "batch {b}: {answer:?}"
                ),
                3 => {
                    let verdicts = answer.unwrap();
                    assert_eq!(
                        verdicts.iter().map(Verdict::outcome_label).collect::<Vec<_>>(),
                        ["ok", "ok", "CHARGE_NOT_FOUND", "ok", "ok"],
                        "batch {b}"
                    );
                    stored += 4;
                }
                _ => {
                    assert!(answer.unwrap().iter().all(|v| matches!(v, Verdict::Apply { .. })), "batch {b}");
                    stored += 5;
                }
            }
        }
        assert_eq!(srv.db.scalar("SELECT count(*) FROM decisions").await, stored);
        assert_eq!(srv.db.scalar("SELECT count(*) FROM charge_history WHERE event = 'decline'").await, stored);
        assert_eq!(srv.db.scalar("SELECT count(*) FROM charges WHERE status = 'DECLINED'").await, stored);
        // Nothing of a poisoned batch is applied, not even its healthy items.
        assert_eq!(
            srv.db.scalar("SELECT count(*) FROM charges WHERE status = 'PENDING' AND number IN \
                           ('G0035', 'G0036', 'G0037', 'G0038', 'G0039')").await,
            5
        );
        // Each answer was its own: a decision carries the request id of its batch.
        assert_eq!(
            srv.db.scalar("SELECT count(*) FROM decisions d JOIN charges c ON c.id = d.charge_id \
                           WHERE d.request_id <> 'req-' || CAST((CAST(substr(c.number, 2) AS INTEGER) / 5) AS TEXT)").await,
            0
        );
    }

    async fn a_crash_loses_no_answered_decision_and_a_resent_call_is_an_idempotent_replay(backend) {
        let db = TestDb::new(backend).await;
        let numbers: Vec<String> = (0..2000).map(|i| format!("K{i:05}")).collect();
        let charges: Vec<(&str, &str)> = numbers.iter().map(|n| (n.as_str(), "c")).collect();
        process::setup_database(&db.url, "pw-crash", &charges);
        let mut server = Server::start(process::chargegate(&db.url, &[]), &[], &[]);
        let client = reqwest::Client::new();
        let token = process::billing_token(&client, &server.base, "pw-crash").await;
        let calls: Vec<Value> = (0..40)
            .map(|b| {
                let items: Vec<Value> = (0..50)
                    .map(|i| {
                        let n = format!("K{:05}", b * 50 + i);
                        json!({"number": n, "billing_system_customer_identifier": "c",
                               "reference_number": format!("R-{n}")})
                    })
                    .collect();
                json!({"token": token, "declined_charges_set": items})
            })
            .collect();
        let calls = Arc::new(calls);
        let url = server.url("/crmapi/rest/v2/netflix/charges/decline");
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (calls, url, next, client) = (calls.clone(), url.clone(), next.clone(), client.clone());
            clients.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                loop {
                    let b = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if b >= calls.len() {
                        break;
                    }
                    let sent = client.post(&url).body(calls[b].to_string()).send().await;
                    let answered = match sent {
                        Ok(r) => r.json::<Value>().await.ok(),
                        Err(_) => None,
                    };
                    outcomes.push((b, answered));
                }
                outcomes
            }));
        }
        // Let some calls finish, then crash in the middle of the others.
        while next.load(std::sync::atomic::Ordering::SeqCst) < 12 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        server.kill();
        let mut answered_ok = BTreeSet::new();
        let mut unknown = Vec::new();
        for c in clients {
            for (b, answer) in c.await.unwrap() {
                match answer {
                    Some(a) if a["status"]["code"] == "OK" => {
                        assert_eq!(a["data"], json!({}), "batch {b}: {a}");
                        answered_ok.insert(b);
                    }
                    // Lost with the process, or refused while it died: outcome unknown.
                    _ => unknown.push(b),
                }
            }
        }
        assert!(!answered_ok.is_empty(), "some calls must have been answered before the crash");

        let server = Server::start(process::chargegate(&db.url, &[]), &[], &[]);
        let url = server.url("/crmapi/rest/v2/netflix/charges/decline");
        for &b in &answered_ok {
            let stored = db.scalar(&format!(
                "SELECT count(*) FROM decisions WHERE reference_number BETWEEN 'R-K{:05}' AND 'R-K{:05}'",
                b * 50,
                b * 50 + 49
            )).await;
            assert_eq!(stored, 50, "batch {b} was answered OK before the crash");
        }
        // A call whose answer was lost is sent again: it succeeds, whether it had been
        // applied before the crash (an idempotent replay) or not.
        for &b in &unknown {
            let a = client.post(&url).body(calls[b].to_string()).send().await.unwrap();
            let a: Value = a.json().await.unwrap();
            assert_eq!((&a["status"]["code"], &a["data"]), (&json!("OK"), &json!({})), "batch {b}: {a}");
        }
        let done = (answered_ok.len() + unknown.len()) as i64 * 50;
        assert_eq!(db.scalar("SELECT count(*) FROM decisions").await, done);
        assert_eq!(db.scalar("SELECT count(*) FROM charge_history WHERE event = 'decline'").await, done, "no decision twice");
        assert_eq!(db.scalar("SELECT count(*) FROM charges WHERE status = 'DECLINED'").await, done);
        drop(server);
    }

    async fn the_list_of_tables_matches_the_real_schema(backend) {
        let db = TestDb::new(backend).await;
        open_store(&db).await.close().await;
        let actual = schema(&db).await;
        let mut listed: BTreeSet<(String, String)> = TABLES
            .iter()
            .flat_map(|t| t.columns.iter().map(move |c| (t.name.to_owned(), c.name.to_owned())))
            .collect();
        let tables: BTreeSet<String> = actual.iter().map(|(t, _)| t.clone()).collect();
        for (table, _) in NOT_COPIED {
            assert!(tables.contains(*table), "{table} is listed as not copied but does not exist");
        }
        listed.extend(
            actual
                .iter()
                .filter(|(t, _)| NOT_COPIED.iter().any(|(n, _)| n == t))
                .cloned(),
        );
        listed.extend(
            actual
                .iter()
                .filter(|(t, c)| NOT_COPIED_COLUMNS.iter().any(|(nt, nc, _)| nt == t && nc == c))
                .cloned(),
        );
        assert_eq!(listed, actual, "tables.rs and the migrations disagree");
    }
}

/// Every (table, column) of the database, `_sqlx_migrations` included.
async fn schema(db: &TestDb) -> BTreeSet<(String, String)> {
    match db.backend {
        Backend::Sqlite => {
            let path = db.url.strip_prefix("sqlite://").unwrap();
            let conn = rusqlite::Connection::open(path).unwrap();
            let mut tables = conn
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .unwrap();
            let names: Vec<String> = tables
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let mut all = BTreeSet::new();
            for name in names {
                let mut columns = conn.prepare(&format!("PRAGMA table_info({name})")).unwrap();
                for column in columns.query_map([], |r| r.get::<_, String>(1)).unwrap() {
                    all.insert((name.clone(), column.unwrap()));
                }
            }
            all
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text FROM information_schema.columns \
                 WHERE table_schema = 'public'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            pool.close().await;
            rows.into_iter().collect()
        }
    }
}

// ---- a full disk -----------------------------------------------------------------------

/// A small tmpfs, unmounted on drop; `None` (with the reason printed) where this process
/// may not mount one.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(megabytes: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a small tmpfs (needs root): {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    /// Writes a file until the disk is full; returns its path.
    fn fill(&self) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0xAB_u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        // Whatever did not fit in whole blocks.
        while f.write_all(&block[..512]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_with_nothing_applied_and_writes_recover_without_a_restart() {
    let Some(disk) = SmallDisk::mount(6) else {
        return;
    };
    let db = Arc::new(TestDb::sqlite_in(disk.dir.path()));
    let srv = TestServer::start_on(db.clone(), Default::default()).await;
    srv.add_operator(OPERATOR, "EUR", USER, PASSWORD).await;
    let numbers: Vec<String> = (0..6000).map(|i| format!("F{i:05}")).collect();
    let pairs: Vec<(&str, &str)> = numbers.iter().map(|n| (n.as_str(), "c")).collect();
    srv.add_charges(OPERATOR, &pairs).await;
    let token = srv.login().await;
    let call = |b: usize| -> Value {
        (0..50)
            .map(|i| {
                item_ref(
                    &numbers[b * 50 + i],
                    "c",
                    &format!("R-{b}-{i}-{}", "x".repeat(100)),
                )
            })
            .collect()
    };

    let filler = disk.fill();
    // Writes succeed while the log has room; the first one that needs more fails whole.
    let mut refused = None;
    for b in 0..120 {
        let r = srv.batch("decline", &token, call(b)).await;
        match r.status {
            200 => r.assert_all_ok(),
            503 => {
                r.assert_error(503, "SERVICE_UNAVAILABLE");
                refused = Some(b);
                break;
            }
            other => panic!("batch {b}: unexpected {other}: {}", r.text),
        }
    }
    let b = refused.expect("a full disk must refuse a write");
    let pending_of = |b: usize| {
        let numbers = &numbers;
        let list = (0..50)
            .map(|i| format!("'{}'", numbers[b * 50 + i]))
            .collect::<Vec<_>>()
            .join(",");
        format!("SELECT count(*) FROM charges WHERE status = 'PENDING' AND number IN ({list})")
    };
    assert_eq!(
        srv.db.scalar(&pending_of(b)).await,
        50,
        "nothing of the refused call is applied"
    );
    // Every later write is refused the same way, reads keep working, and the server
    // says it is not ready.
    srv.batch("decline", &token, call(b))
        .await
        .assert_error(503, "SERVICE_UNAVAILABLE");
    assert_eq!(srv.get("/readyz").await.status, 503);
    let page = srv.get(&format!("{V2}/netflix/charges/list?token={token}&number_of_results=5&charge_status=NOT_PROCESSED&offset=0")).await;
    assert_eq!(page.status, 200, "{}", page.text);

    // Space comes back: the next write works, without a restart.
    std::fs::remove_file(filler).unwrap();
    assert_eq!(srv.get("/readyz").await.status, 200);
    srv.batch("decline", &token, call(b)).await.assert_all_ok();
    assert_eq!(srv.db.scalar(&pending_of(b)).await, 0);
    srv.batch("decline", &token, call(b + 1))
        .await
        .assert_all_ok();
    let declined = srv
        .db
        .scalar("SELECT count(*) FROM charges WHERE status = 'DECLINED'")
        .await;
    assert_eq!(declined, (b as i64 + 2) * 50);
    assert_eq!(
        srv.db.scalar("SELECT count(*) FROM decisions").await,
        declined
    );
    drop(srv);
}
