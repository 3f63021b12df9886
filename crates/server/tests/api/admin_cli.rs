//! The administration commands, run as the real binary on the database a running server
//! uses: `user list|disable|enable|passwd|unlock`, `operator list`, `charges show`.
//! Every change takes effect on the server at once; every refusal is one line and changes
//! nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::process::Output;

use common::process::{self, chargegate};
use common::*;
use serde_json::{Value, json};

fn cli(srv: &TestServer, args: &[&str], stdin: &str) -> Output {
    process::run(chargegate(&srv.db.url, args), stdin)
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts a failure of one line on standard error, nothing on standard output; returns
/// the line.
#[track_caller]
fn one_line_failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

async fn list_with(srv: &TestServer, token: &str) -> Reply {
    srv.get(&format!(
        "{V2}/netflix/charges/list?token={token}&number_of_results=50&charge_status=NOT_PROCESSED&offset=0"
    ))
    .await
}

/// The line of `user list` about one user, split into its columns.
fn user_line(listing: &str, operator: &str, user: &str) -> Vec<String> {
    listing
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|cols| {
            cols.first().map(String::as_str) == Some(operator)
                && cols.get(1).map(String::as_str) == Some(user)
        })
        .unwrap_or_else(|| panic!("no line for {operator}/{user} in:\n{listing}"))
}

on_every_backend! {
    async fn user_list_shows_each_users_operator_state_last_login_and_failures(backend) {
        let srv = TestServer::start(backend).await;
        let before = ok(&cli(&srv, &["user", "list"], ""));
        assert_eq!(user_line(&before, OPERATOR, USER), [OPERATOR, USER, "yes", "never", "-"]);
        srv.login().await;
        for _ in 0..3 {
            srv.try_login(RIVAL, RIVAL_USER, "wrong").await.assert_error(401, "INVALID_CREDENTIALS");
        }
        let after = ok(&cli(&srv, &["user", "list"], ""));
        let demo = user_line(&after, OPERATOR, USER);
        assert_eq!(demo[2], "yes");
        assert!(demo[3].starts_with("20"), "a last login time: {demo:?}");
        assert_eq!(user_line(&after, RIVAL, RIVAL_USER)[4], "3 failed login(s)");
        let only_rival = ok(&cli(&srv, &["user", "list", "--operator", RIVAL], ""));
        assert!(!only_rival.contains(USER) && only_rival.contains(RIVAL_USER), "{only_rival}");
        let err = one_line_failure(&cli(&srv, &["user", "list", "--operator", "nobody"], ""));
        assert!(err.contains("no operator 'nobody'"), "{err}");
    }

    async fn disabling_a_user_refuses_their_tokens_and_logins_at_once_and_enabling_restores_logins_only(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let rival = srv.login_as(RIVAL, RIVAL_USER, RIVAL_PASSWORD).await;
        assert_eq!(list_with(&srv, &token).await.code(), "OK");

        let out = ok(&cli(&srv, &["user", "disable", USER, "--operator", OPERATOR], ""));
        assert!(out.contains("1 token(s) revoked"), "{out}");
        list_with(&srv, &token).await.assert_error(401, "INVALID_TOKEN");
        srv.try_login(OPERATOR, USER, PASSWORD).await.assert_error(401, "INVALID_CREDENTIALS");
        // Nobody else is touched.
        assert_eq!(list_with(&srv, &rival).await.code(), "OK");
        assert_eq!(user_line(&ok(&cli(&srv, &["user", "list"], "")), OPERATOR, USER)[2], "no");

        ok(&cli(&srv, &["user", "enable", USER, "--operator", OPERATOR], ""));
        let fresh = srv.login().await;
        assert_eq!(list_with(&srv, &fresh).await.code(), "OK");
        // The token revoked by the disable stays revoked.
        list_with(&srv, &token).await.assert_error(401, "INVALID_TOKEN");
    }

    async fn disable_and_enable_of_an_unknown_user_or_operator_fail_in_one_line_and_change_nothing(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        for verb in ["disable", "enable", "unlock"] {
            let err = one_line_failure(&cli(&srv, &["user", verb, "bob", "--operator", OPERATOR], ""));
            assert!(err.contains("no user 'bob' in operator 'pci'"), "{err}");
            // The rival's user is not the operator's.
            let err = one_line_failure(&cli(&srv, &["user", verb, RIVAL_USER, "--operator", OPERATOR], ""));
            assert!(err.contains("no user"), "{err}");
            let err = one_line_failure(&cli(&srv, &["user", verb, USER, "--operator", "nobody"], ""));
            assert!(err.contains("no operator 'nobody'"), "{err}");
        }
        assert_eq!(list_with(&srv, &token).await.code(), "OK");
        let listing = ok(&cli(&srv, &["user", "list"], ""));
        assert_eq!(user_line(&listing, RIVAL, RIVAL_USER)[2], "yes");
    }

    async fn passwd_replaces_the_password_and_ends_the_users_tokens(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        let out = ok(&cli(&srv, &["user", "passwd", USER, "--operator", OPERATOR], "a-new-password\n"));
        assert!(out.contains("1 token(s) revoked"), "{out}");
        srv.try_login(OPERATOR, USER, PASSWORD).await.assert_error(401, "INVALID_CREDENTIALS");
        list_with(&srv, &token).await.assert_error(401, "INVALID_TOKEN");
        srv.login_as(OPERATOR, USER, "a-new-password").await;
    }

    async fn passwd_refusals_are_one_line_and_keep_the_old_password(backend) {
        let srv = TestServer::start(backend).await;
        let token = srv.login().await;
        for (args, stdin, says) in [
            (vec!["user", "passwd", "bob", "--operator", OPERATOR], "x\n", "no user 'bob'"),
            (vec!["user", "passwd", USER, "--operator", "nobody"], "x\n", "no operator"),
            (vec!["user", "passwd", USER, "--operator", OPERATOR], "\n", "must not be empty"),
            (vec!["user", "passwd", USER, "--operator", OPERATOR], "", "must not be empty"),
        ] {
            let err = one_line_failure(&cli(&srv, &args, stdin));
            assert!(err.contains(says), "{args:?}: {err}");
        }
        srv.login().await;
        assert_eq!(list_with(&srv, &token).await.code(), "OK");
    }

    async fn unlock_lifts_a_lockout_after_ten_failures(backend) {
        let srv = TestServer::start(backend).await;
        for _ in 0..10 {
            srv.try_login(OPERATOR, USER, "wrong").await.assert_error(401, "INVALID_CREDENTIALS");
        }
        srv.try_login(OPERATOR, USER, PASSWORD).await.assert_error(429, "TOO_MANY_REQUESTS");
        let listing = ok(&cli(&srv, &["user", "list", "--operator", OPERATOR], ""));
        assert!(user_line(&listing, OPERATOR, USER)[4].starts_with("locked until"), "{listing}");

        let out = ok(&cli(&srv, &["user", "unlock", USER, "--operator", OPERATOR], ""));
        assert!(out.contains("unlocked"), "{out}");
        srv.login().await;
        // Unlocking a user with nothing to forget is fine and says so.
        let out = ok(&cli(&srv, &["user", "unlock", USER, "--operator", OPERATOR], ""));
        assert!(out.contains("nothing to do"), "{out}");
    }

    async fn operator_list_counts_users_and_charges_by_status(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1"), ("I2", "c2"), ("I3", "c3"), ("I4", "c4")]).await;
        let token = srv.login().await;
        srv.batch("accept", &token, json!([item("I1", "c1")])).await.assert_all_ok();
        srv.batch("decline", &token, json!([item("I2", "c2"), item("I3", "c3")])).await.assert_all_ok();
        let out = ok(&cli(&srv, &["operator", "list"], ""));
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(
            rows[0],
            ["CODE", "NAME", "CURRENCY", "USERS", "PENDING", "APPROVED", "DECLINED", "BAD_REQUEST", "REJECTED"]
        );
        let pci = rows.iter().find(|r| r[0] == OPERATOR).unwrap();
        // The name is "pci operator": two words.
        assert_eq!(pci[3..], ["EUR", "1", "1", "1", "2", "0", "0"]);
        let rival = rows.iter().find(|r| r[0] == RIVAL).unwrap();
        assert_eq!(rival[3..], ["EUR", "1", "0", "0", "0", "0", "0"]);
    }

    async fn charges_show_prints_the_charge_and_its_history_and_its_json_is_the_apis(backend) {
        let srv = TestServer::start(backend).await;
        srv.add_charges(OPERATOR, &[("I1", "c1")]).await;
        let token = srv.login().await;
        srv.batch("decline", &token, json!([item_ref("I1", "c1", "D-9")])).await.assert_all_ok();
        let text = ok(&cli(&srv, &["charges", "show", "I1"], ""));
        assert!(text.starts_with("charge I1\n"), "{text}");
        assert!(text.contains("DECLINED") && text.contains("D-9"), "{text}");
        let history: Vec<&str> = text.lines().skip_while(|l| *l != "history").skip(2).collect();
        assert_eq!(history.len(), 2, "{text}");
        assert!(history[0].contains("received") && history[0].contains("import"), "{text}");
        assert!(history[1].contains("declined") && history[1].contains(&format!("user:{USER}")), "{text}");

        let json: Value = serde_json::from_str(&ok(&cli(&srv, &["charges", "show", "I1", "--json"], ""))).unwrap();
        let api = srv.get(&format!("/chargegate/v1/charges/show?token={token}&number=I1")).await;
        assert_eq!(json, api.body["data"]);

        let err = one_line_failure(&cli(&srv, &["charges", "show", "I404"], ""));
        assert!(err.contains("no charge I404"), "{err}");
    }
}

/// Runs the binary under `script`, a pseudo-terminal, answering each prompt in turn;
/// returns what the terminal showed and the exit code. `None` when `script` is missing.
fn on_a_terminal(url: &str, args: &[&str], answers: &[(&str, &str)]) -> Option<(String, i32)> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let quoted: Vec<String> = std::iter::once(common::process::BIN)
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect();
    let mut command = Command::new("script");
    command
        .args(["-q", "-e", "-c", &quoted.join(" "), "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("CHARGEGATE_") {
            command.env_remove(k);
        }
    }
    command
        .env("CHARGEGATE_DATABASE_URL", url)
        .env("CHARGEGATE_LOG", "warn");
    let mut child = command.spawn().ok()?;
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = String::new();
    let mut consumed = 0;
    for (prompt, answer) in answers {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !shown[consumed..].contains(prompt) {
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no prompt {prompt:?} in {shown:?}"));
            shown.push_str(&String::from_utf8_lossy(&chunk));
        }
        consumed = shown[consumed..].find(prompt).unwrap() + consumed + prompt.len();
        // Let the program turn echo off after showing its prompt, as a person would.
        std::thread::sleep(Duration::from_millis(300));
        stdin.write_all(format!("{answer}\r").as_bytes()).unwrap();
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    shown.extend(
        rx.try_iter()
            .map(|c| String::from_utf8_lossy(&c).into_owned()),
    );
    Some((shown, status.code().unwrap_or(-1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_passwd_asks_twice_without_echo_and_refuses_a_mismatch() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let args = ["user", "passwd", USER, "--operator", OPERATOR];
    let Some((shown, code)) = on_a_terminal(
        &srv.db.url,
        &args,
        &[
            ("password: ", "one-secret"),
            ("password again: ", "another"),
        ],
    ) else {
        eprintln!("SKIPPED: no util-linux 'script' to run a terminal");
        return;
    };
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("the two passwords differ; nothing was changed"),
        "{shown}"
    );
    srv.login().await;

    let (shown, code) = on_a_terminal(
        &srv.db.url,
        &args,
        &[
            ("password: ", "s3cret-typed"),
            ("password again: ", "s3cret-typed"),
        ],
    )
    .unwrap();
    assert_eq!(code, 0, "{shown}");
    assert!(
        !shown.contains("s3cret-typed"),
        "the password was shown: {shown}"
    );
    srv.login_as(OPERATOR, USER, "s3cret-typed").await;
    srv.try_login(OPERATOR, USER, PASSWORD)
        .await
        .assert_error(401, "INVALID_CREDENTIALS");
}
