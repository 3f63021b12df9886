//! The Store contract: every method of the trait behaves the same on every backend,
//! including under races. Runs straight against the store, without HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::sync::Arc;

use chargegate_core::Database;
use chargegate_core::batch::{Batch, ItemErrorCode, ItemInput, ItemRequest, Method, Verdict};
use chargegate_core::charge::{ChargeStatus, StatusGroup};
use chargegate_core::clock::{Date, Timestamp};
use chargegate_core::money::{Currency, Money};
use chargegate_core::store::{
    AttemptPermit, ImportOutcome, ListQuery, LoginPolicy, NewCharge, NewOperator, NewToken,
    NewUser, StoreError, TokenSecret,
};
use chargegate_core::text::{ChargeNumber, CustomerId, OperatorCode, ReferenceNumber, Username};
use chargegate_core::token::Token;
use common::*;

struct Fixture {
    db: TestDb,
    store: Arc<dyn Database>,
    operator: i64,
    user: i64,
}

async fn fixture(backend: Backend) -> Fixture {
    let db = TestDb::new(backend).await;
    let store = open_store(&db).await;
    let op = store
        .create_operator(&NewOperator {
            code: OperatorCode::parse("pci").unwrap(),
            name: "PCI".into(),
            local_currency: Currency::parse("EUR").unwrap(),
        })
        .await
        .unwrap();
    let user = store
        .create_user(&NewUser {
            operator_id: op.id,
            username: Username::parse("demo").unwrap(),
            password_hash: "$argon2id$not-checked-here".into(),
        })
        .await
        .unwrap();
    Fixture {
        db,
        store,
        operator: op.id,
        user,
    }
}

fn charge(operator: i64, number: Option<&str>, received: &str) -> NewCharge {
    let eur = Currency::parse("EUR").unwrap();
    NewCharge {
        operator_id: operator,
        number: number.map(|n| ChargeNumber::parse(n).unwrap()),
        customer: CustomerId::parse("c").unwrap(),
        netflix_customer: None,
        amount: Money::parse("9.99", eur).unwrap(),
        local_amount: Money::parse("9.99", eur).unwrap(),
        paid_through_date: Date::parse("2026-12-31").unwrap(),
        received_on: Some(Timestamp::parse(received).unwrap()),
        status: None,
    }
}

fn batch(f: &Fixture, method: Method, items: &[(&str, Option<&str>)]) -> Batch {
    Batch {
        method,
        operator_id: f.operator,
        user_id: f.user,
        key_id: None,
        via_console: false,
        request_id: "contract".into(),
        at: Timestamp::now(),
        items: items
            .iter()
            .map(|(n, r)| {
                ItemInput::valid(ItemRequest {
                    number: ChargeNumber::parse(*n).unwrap(),
                    customer: CustomerId::parse("c").unwrap(),
                    reference: r.map(|r| ReferenceNumber::parse(r).unwrap()),
                })
            })
            .collect(),
    }
}

async fn import(f: &Fixture, rows: &[NewCharge]) -> ImportOutcome {
    f.store
        .import_charges(rows.to_vec(), Timestamp::now(), Arc::new(|_| {}))
        .await
        .unwrap()
}

on_every_backend! {
    async fn migrating_twice_and_pinging_succeed(backend) {
        let f = fixture(backend).await;
        f.store.migrate().await.unwrap();
        f.store.ping().await.unwrap();
        let url = chargegate_store::DatabaseUrl::parse(&f.db.url).unwrap();
        let options = chargegate_store::StoreOptions::default();
        assert!(!chargegate_store::copy::is_empty(&url, &options).await.unwrap());
        assert_eq!(f.store.backend(), match backend { Backend::Sqlite => "sqlite", Backend::Postgres => "postgres" });
    }

    async fn operators_and_users_are_unique_and_found_by_name(backend) {
        let f = fixture(backend).await;
        let code = OperatorCode::parse("pci").unwrap();
        let again = f.store.create_operator(&NewOperator { code: code.clone(), name: "x".into(), local_currency: Currency::parse("USD").unwrap() }).await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        let op = f.store.operator_by_code(&code).await.unwrap().unwrap();
        assert_eq!((op.id, op.local_currency.code()), (f.operator, "EUR"));
        assert!(f.store.operator_by_code(&OperatorCode::parse("nope").unwrap()).await.unwrap().is_none());

        let dup = f.store.create_user(&NewUser { operator_id: f.operator, username: Username::parse("demo").unwrap(), password_hash: "h".into() }).await;
        assert!(matches!(dup, Err(StoreError::Conflict(_))));
        let user = f.store.login_user(&code, &Username::parse("demo").unwrap()).await.unwrap().unwrap();
        assert_eq!((user.user_id, user.operator_id, user.enabled), (f.user, f.operator, true));
        assert!(f.store.login_user(&code, &Username::parse("Demo").unwrap()).await.unwrap().is_none());
    }

    async fn login_attempts_lock_out_after_the_limit_and_reset_on_success(backend) {
        let f = fixture(backend).await;
        let policy = LoginPolicy { max_failures: 3, lockout_seconds: 60 };
        let now = Timestamp::now();
        for _ in 0..3 {
            assert_eq!(f.store.begin_login_attempt("pci", "demo", now, policy).await.unwrap(), AttemptPermit::Allowed);
            f.store.finish_login_attempt("pci", "demo", false, now, policy).await.unwrap();
        }
        let locked = f.store.begin_login_attempt("pci", "demo", now, policy).await.unwrap();
        assert_eq!(locked, AttemptPermit::LockedOut { until: now.plus_seconds(60) });
        // After the lockout, a fresh count.
        let later = now.plus_seconds(61);
        assert_eq!(f.store.begin_login_attempt("pci", "demo", later, policy).await.unwrap(), AttemptPermit::Allowed);
        f.store.finish_login_attempt("pci", "demo", true, later, policy).await.unwrap();
        for _ in 0..3 {
            assert_eq!(f.store.begin_login_attempt("pci", "demo", later, policy).await.unwrap(), AttemptPermit::Allowed);
            f.store.finish_login_attempt("pci", "demo", false, later, policy).await.unwrap();
        }
    }

    async fn tokens_are_found_by_hash_and_revoked(backend) {
        let f = fixture(backend).await;
        let token = Token::from_random_bytes([9; 32]);
        let now = Timestamp::now();
        f.store.insert_token(&NewToken { hash: token.hash(), user_id: f.user, key_id: None, issued_at: now, expires_at: now.plus_seconds(7200) }).await.unwrap();
        let rec = f.store.token(&token.hash()).await.unwrap().unwrap();
        assert_eq!((rec.user_id, rec.operator_id, rec.operator_code.as_str(), rec.revoked, rec.user_enabled), (f.user, f.operator, "pci", false, true));
        assert_eq!(rec.expires_at, now.plus_seconds(7200));
        assert!(f.store.revoke_token(&token.hash(), now).await.unwrap());
        assert!(f.store.token(&token.hash()).await.unwrap().unwrap().revoked);
        let unknown = Token::from_random_bytes([1; 32]);
        assert!(!f.store.revoke_token(&unknown.hash(), now).await.unwrap());
        assert!(f.store.token(&unknown.hash()).await.unwrap().is_none());
    }

    async fn token_secrets_keep_their_generations_and_refuse_a_taken_one(backend) {
        let f = fixture(backend).await;
        assert!(f.store.token_secrets().await.unwrap().is_empty());
        let at = Timestamp::parse("2026-11-26T10:00:00").unwrap();
        let secret = |generation, byte| TokenSecret {
            generation,
            secret: [byte; 32],
            created_at: at.plus_seconds(generation),
        };
        assert!(f.store.add_token_secret(&secret(1, 1)).await.unwrap());
        // A second server making the first secret at the same moment loses, changing nothing.
        assert!(!f.store.add_token_secret(&secret(1, 9)).await.unwrap());
        assert!(f.store.add_token_secret(&secret(2, 2)).await.unwrap());
        let stored = f.store.token_secrets().await.unwrap();
        assert_eq!(stored, vec![secret(1, 1), secret(2, 2)]);
    }

    async fn imports_number_skip_and_refuse_as_planned(backend) {
        let f = fixture(backend).await;
        let first = [charge(f.operator, Some("I00000041"), "2026-11-01T00:00:00"), charge(f.operator, None, "2026-11-01T00:00:01")];
        assert!(matches!(import(&f, &first).await, ImportOutcome::Imported(s) if s.added == 2 && s.skipped == 0));
        let again = [charge(f.operator, Some("I00000041"), "2026-11-01T00:00:00"), charge(f.operator, None, "2026-11-01T00:00:02")];
        assert!(matches!(import(&f, &again).await, ImportOutcome::Imported(s) if s.added == 1 && s.skipped == 1));
        let mut changed = charge(f.operator, Some("I00000041"), "2026-11-01T00:00:00");
        changed.amount = Money::parse("1", Currency::parse("EUR").unwrap()).unwrap();
        match import(&f, &[charge(f.operator, Some("NEW"), "2026-11-01T00:00:03"), changed]).await {
            ImportOutcome::Refused(c) => assert_eq!((c.len(), c[0].index, c[0].column), (1, 1, "number")),
            other @ ImportOutcome::Imported(_) => panic!("{other:?}"),
        }
        let q = ListQuery { operator_id: f.operator, group: StatusGroup::NotProcessed, offset: 0, limit: 50 };
        let numbers: Vec<String> = f.store.list_charges(&q).await.unwrap().into_iter().map(|c| c.number.into_string()).collect();
        assert_eq!(numbers, ["I00000041", "I00000042", "I00000043"], "generated above the highest, nothing of the refused import");
    }

    async fn batches_apply_and_report_in_order(backend) {
        let f = fixture(backend).await;
        import(&f, &[charge(f.operator, Some("A"), "2026-11-01T00:00:00"), charge(f.operator, Some("B"), "2026-11-01T00:00:01")]).await;
        let v = f.store.apply_batch(&batch(&f, Method::Decline, &[("A", Some("R")), ("Z", None), ("B", Some("R"))])).await.unwrap();
        assert!(matches!(v[0], Verdict::Apply { .. }));
        assert!(matches!(&v[1], Verdict::Failed(e) if e.code == ItemErrorCode::ChargeNotFound));
        assert!(matches!(&v[2], Verdict::Failed(e) if e.code == ItemErrorCode::DuplicateReferenceNumber));
        let again = f.store.apply_batch(&batch(&f, Method::Decline, &[("A", Some("R"))])).await.unwrap();
        assert_eq!(again, vec![Verdict::AlreadyDone]);
        let processed = f.store.list_charges(&ListQuery { operator_id: f.operator, group: StatusGroup::Processed, offset: 0, limit: 50 }).await.unwrap();
        assert_eq!(processed.len(), 1);
        assert_eq!(processed[0].status, ChargeStatus::Declined);
        assert!(processed[0].set_as_declined_on.is_some());
    }

    async fn racing_batches_claiming_one_new_reference_let_exactly_one_win(backend) {
        let f = Arc::new(fixture(backend).await);
        let rows: Vec<NewCharge> = (0..16).map(|i| charge(f.operator, Some(&format!("N{i:02}")), "2026-11-01T00:00:00")).collect();
        import(&f, &rows).await;
        // Sixteen batches, each declining its own charge with the same reference.
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let f = f.clone();
                tokio::spawn(async move {
                    let number = format!("N{i:02}");
                    f.store.apply_batch(&batch(&f, Method::Decline, &[(number.as_str(), Some("SAME"))])).await.unwrap()
                })
            })
            .collect();
        let mut applied = 0;
        for t in tasks {
            match &t.await.unwrap()[0] {
                Verdict::Apply { .. } => applied += 1,
                Verdict::Failed(e) => assert_eq!(e.code, ItemErrorCode::DuplicateReferenceNumber),
                Verdict::AlreadyDone => panic!("nothing was done before"),
            }
        }
        assert_eq!(applied, 1);
        let declined = f.store.list_charges(&ListQuery { operator_id: f.operator, group: StatusGroup::Processed, offset: 0, limit: 50 }).await.unwrap();
        assert_eq!(declined.len(), 1);
    }

    async fn racing_accepts_and_declines_decide_each_charge_once(backend) {
        let f = Arc::new(fixture(backend).await);
        let numbers: Vec<String> = (0..30).map(|i| format!("M{i:02}")).collect();
        let rows: Vec<NewCharge> = numbers.iter().map(|n| charge(f.operator, Some(n), "2026-11-01T00:00:00")).collect();
        import(&f, &rows).await;
        let tasks: Vec<_> = (0..10)
            .map(|k| {
                let f = f.clone();
                let mut order = numbers.clone();
                order.rotate_left(k * 3);
                tokio::spawn(async move {
                    let method = if k % 2 == 0 { Method::Accept } else { Method::Decline };
                    let items: Vec<(&str, Option<&str>)> = order.iter().map(|n| (n.as_str(), None)).collect();
                    (method, f.store.apply_batch(&batch(&f, method, &items)).await.unwrap(), order)
                })
            })
            .collect();
        let mut applied = std::collections::HashMap::<String, Method>::new();
        for t in tasks {
            let (method, verdicts, order) = t.await.unwrap();
            for (n, v) in order.iter().zip(verdicts) {
                if matches!(v, Verdict::Apply { .. }) {
                    assert!(applied.insert(n.clone(), method).is_none(), "{n} applied twice");
                }
            }
        }
        assert_eq!(applied.len(), 30);
        let all = f.store.list_charges(&ListQuery { operator_id: f.operator, group: StatusGroup::Processed, offset: 0, limit: 50 }).await.unwrap();
        for c in all {
            let expected = if applied[c.number.as_str()] == Method::Accept { ChargeStatus::Approved } else { ChargeStatus::Declined };
            assert_eq!(c.status, expected, "{}", c.number);
        }
    }

    async fn acknowledgements_hide_charges_until_their_status_changes(backend) {
        let f = fixture(backend).await;
        import(&f, &[charge(f.operator, Some("K"), "2026-11-01T00:00:00")]).await;
        let pending = ListQuery { operator_id: f.operator, group: StatusGroup::NotProcessed, offset: 0, limit: 50 };
        let processed = ListQuery { group: StatusGroup::Processed, ..pending };
        f.store.apply_batch(&batch(&f, Method::Acknowledge, &[("K", Some("A1"))])).await.unwrap();
        assert!(f.store.list_charges(&pending).await.unwrap().is_empty());
        f.store.apply_batch(&batch(&f, Method::Accept, &[("K", None)])).await.unwrap();
        assert_eq!(f.store.list_charges(&processed).await.unwrap().len(), 1);
        let v = f.store.apply_batch(&batch(&f, Method::Acknowledge, &[("K", Some("A1"))])).await.unwrap();
        assert!(matches!(&v[0], Verdict::Failed(e) if e.code == ItemErrorCode::DuplicateReferenceNumber));
        f.store.apply_batch(&batch(&f, Method::Acknowledge, &[("K", Some("A2"))])).await.unwrap();
        assert!(f.store.list_charges(&processed).await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_serves_the_list_from_its_partial_index() {
    db::require_postgres("postgresql_serves_the_list_from_its_partial_index");
    let f = fixture(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&f.db.url).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    // A tiny table is cheaper to scan; forbid that to see which index the plan uses.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let sql = format!("EXPLAIN {}", chargegate_store::postgres::LIST_SQL);
    let plan: Vec<String> = sqlx::query_scalar(&sql)
        .bind(f.operator)
        .bind(true)
        .bind(50_i64)
        .bind(0_i64)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("charges_to_list"), "{plan}");
    assert!(!plan.contains("Sort"), "sorted after reading: {plan}");
}

/// On a freshly filled database that was never analysed (right after `db copy` or a
/// restore), with the generic plan a prepared statement settles on, the reference lookup
/// of a batch still uses every column of its index instead of reading all the operator's
/// decisions, and the batch's lock-and-read statement finds charges and decisions by
/// index too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_finds_references_by_the_whole_index_on_an_unanalysed_database() {
    db::require_postgres(
        "postgresql_finds_references_by_the_whole_index_on_an_unanalysed_database",
    );
    batch_statements_use_their_indexes(false).await;
}

/// Autovacuum first analyses a table after 50 changed rows: early in a database's life
/// its statistics call the decisions a page or two. A generic plan made then (a prepared
/// statement settles on one after five calls and keeps it) would scan every decision on
/// every call once they have grown; the decision statements still find everything by
/// index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_finds_decisions_by_index_after_statistics_taken_early_in_the_databases_life() {
    db::require_postgres(
        "postgresql_finds_decisions_by_index_after_statistics_taken_early_in_the_databases_life",
    );
    batch_statements_use_their_indexes(true).await;
}

/// Prepares the reference lookup and the batch's lock-and-read statement on a connection
/// whose transactions begin as a batch's does and lets them settle on a generic plan while
/// the database holds 50 charges, 50 of them declined (analysed then when `analyse_early`),
/// fills it to 3,000 charges and 3,000 decisions, and checks the plans those prepared
/// statements keep using.
async fn batch_statements_use_their_indexes(analyse_early: bool) {
    let f = fixture(Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&f.db.url).await.unwrap();
    let rows: Vec<NewCharge> = (0..3000)
        .map(|i| charge(f.operator, Some(&format!("U{i:05}")), "2026-11-01T00:00:00"))
        .collect();
    let decline = |chunk: usize| {
        let items: Vec<(String, Option<String>)> = (0..50)
            .map(|i| {
                let n = chunk * 50 + i;
                (format!("U{n:05}"), Some(format!("REF-{n:05}")))
            })
            .collect();
        let pairs: Vec<(&str, Option<&str>)> = items
            .iter()
            .map(|(n, r)| (n.as_str(), r.as_deref()))
            .collect();
        batch(&f, Method::Decline, &pairs)
    };
    import(&f, &rows[..50]).await;
    f.store.apply_batch(&decline(0)).await.unwrap();
    if analyse_early {
        sqlx::query("ANALYZE").execute(&pool).await.unwrap();
    }
    let mut conn = pool.acquire().await.unwrap();
    for sql in [
        "SET plan_cache_mode = force_generic_plan",
        &format!(
            "PREPARE refs (bigint, text, text[]) AS {}",
            chargegate_store::postgres::USED_DECISION_REFERENCES
        ),
        &format!(
            "PREPARE batch (bytea, text[], text[], text) AS {}",
            chargegate_store::postgres::batch::LOCK_AND_READ_DECISIONS
        ),
    ] {
        sqlx::query(sql).execute(&mut *conn).await.unwrap();
    }
    let executes = [
        format!(
            "EXPLAIN EXECUTE refs({}, 'decline', ARRAY['REF-00001', 'REF-02999'])",
            f.operator
        ),
        "EXPLAIN EXECUTE batch('\\x00', ARRAY['U00001'], ARRAY['REF-00001', 'REF-02999'], \
         'decline')"
            .to_owned(),
    ];
    // The plans are made now, as a new server's first calls would make them.
    let mut plans = vec![];
    for round in 0..2 {
        sqlx::raw_sql(chargegate_store::postgres::BEGIN_DECISIONS)
            .execute(&mut *conn)
            .await
            .unwrap();
        plans.clear();
        for execute in &executes {
            let plan: Vec<String> = sqlx::query_scalar(execute)
                .fetch_all(&mut *conn)
                .await
                .unwrap();
            plans.push(plan.join("\n"));
        }
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await.unwrap();
        if round == 0 {
            import(&f, &rows[50..]).await;
            for chunk in 1..60 {
                f.store.apply_batch(&decline(chunk)).await.unwrap();
            }
        }
    }
    for plan in &plans {
        assert!(plan.contains("decisions_reference_unique"), "{plan}");
        let index_line = plan
            .lines()
            .skip_while(|l| !l.contains("decisions_reference_unique"))
            .nth(1)
            .unwrap_or_default();
        assert!(
            index_line.contains("Index Cond") && index_line.contains("reference_number"),
            "{plan}"
        );
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
    // The charges by their number, each decision by its charge.
    assert!(plans[1].contains("charges_number_key"), "{}", plans[1]);
    assert!(plans[1].contains("decisions_pkey"), "{}", plans[1]);
}
