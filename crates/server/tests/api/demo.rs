//! `serve --demo` on both backends: it prepares an empty database, reuses what it created,
//! and never touches data it did not create.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::process::Output;

use common::process::{self, Server};
use common::*;

/// Runs `chargegate ARGS…` on the test database and waits for it to exit.
fn run(db: &TestDb, args: &[&str], stdin: &str) -> Output {
    process::run(process::chargegate(&db.url, args), stdin)
}

#[track_caller]
fn succeeds(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the tests compare before and after a refused demo: every row count and the names.
async fn contents(db: &TestDb) -> (i64, i64, i64, i64) {
    (
        db.scalar("SELECT count(*) FROM operators").await,
        db.scalar("SELECT count(*) FROM users").await,
        db.scalar("SELECT count(*) FROM charges").await,
        db.scalar("SELECT count(*) FROM users WHERE username = 'demo'")
            .await,
    )
}

/// A refused `serve --demo`: exit status 1 and one line naming the way out.
#[track_caller]
fn refused(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with("chargegate: serve --demo refused: "),
        "{err}"
    );
    assert!(
        err.contains("chargegate --database sqlite://demo.db serve --demo"),
        "the message names the way out: {err}"
    );
    err
}

on_every_backend! {
    async fn the_demo_refuses_a_database_whose_operator_pci_it_did_not_create(backend) {
        let db = TestDb::new(backend).await;
        succeeds(&run(
            &db,
            &["operator", "add", "pci", "--name", "PCI Cyprus", "--local-currency", "EUR"],
            "",
        ));
        succeeds(&run(&db, &["user", "add", "billing", "--operator", "pci"], "s3cret\n"));
        let before = contents(&db).await;

        let err = refused(&run(&db, &["serve", "--listen", "127.0.0.1:0", "--demo"], ""));
        assert!(
            err.contains("operator 'pci' exists and was not created by the demo"),
            "{err}"
        );
        assert_eq!(contents(&db).await, before, "nothing changed");
        assert_eq!(before.3, 0, "no demo user");
        assert_eq!(
            db.scalar("SELECT count(*) FROM operators WHERE code = 'pci' AND name = 'PCI Cyprus'")
                .await,
            1
        );
    }

    async fn the_demo_refuses_a_database_that_holds_other_operators(backend) {
        let db = TestDb::new(backend).await;
        succeeds(&run(
            &db,
            &["operator", "add", "acme", "--name", "Acme", "--local-currency", "USD"],
            "",
        ));
        let before = contents(&db).await;
        let err = refused(&run(&db, &["serve", "--listen", "127.0.0.1:0", "--demo"], ""));
        assert!(err.contains("that the demo did not create"), "{err}");
        assert_eq!(contents(&db).await, before, "nothing changed");
    }

    async fn the_demo_prepares_an_empty_database_once_and_reuses_it_afterwards(backend) {
        let db = TestDb::new(backend).await;
        let mut first = Server::start(process::chargegate(&db.url, &[]), &["--demo"], &[]);
        first.await_log("demo ready");
        first.sigterm();
        assert!(first.wait().success());
        let prepared = contents(&db).await;
        assert_eq!(prepared, (1, 1, 6, 1));
        assert_eq!(
            db.scalar("SELECT count(*) FROM operators WHERE name = 'chargegate demo (serve --demo)'")
                .await,
            1,
            "the demo marks its operator"
        );

        // Operators added next to the demo's do not stop it from starting again.
        succeeds(&run(
            &db,
            &["operator", "add", "acme", "--name", "Acme", "--local-currency", "USD"],
            "",
        ));
        let mut again = Server::start(process::chargegate(&db.url, &[]), &["--demo"], &[]);
        again.await_log("demo ready");
        again.sigterm();
        assert!(again.wait().success());
        assert_eq!(contents(&db).await, (2, 1, 6, 1));
    }
}
