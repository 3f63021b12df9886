//! The `chargegate` binary as an operator uses it: commands, exit statuses, messages,
//! CSV import, and `serve --demo` answering CRM.COM's decline example.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::common;

use std::process::Output;

use common::process::{Server, Workdir, count};

/// A scratch directory with the commands the tests below use.
struct Dir(Workdir);

impl std::ops::Deref for Dir {
    type Target = Workdir;
    fn deref(&self) -> &Workdir {
        &self.0
    }
}

impl Dir {
    fn new() -> Dir {
        Dir(Workdir::new())
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        self.0.run(args, stdin)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.0.run(args, "")
    }

    /// `operator add pci` and `user add demo`, as the README does it.
    fn setup(&self) {
        ok(&self.run(&[
            "operator",
            "add",
            "pci",
            "--name",
            "PCI",
            "--local-currency",
            "EUR",
        ]));
        ok(&self.run_with_stdin(&["user", "add", "demo", "--operator", "pci"], "demo\n"));
    }

    async fn count(&self, sql: &str) -> i64 {
        count(&self.path("chargegate.db"), sql).await
    }
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts failure and returns standard error.
#[track_caller]
fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unknown_database_schemes_are_refused_with_a_clear_one_line_reason() {
    let d = Dir::new();
    let err = fails(&d.run(&["--database", "mysql://root@localhost/x", "migrate"]));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("sqlite://") && err.contains("postgres://"),
        "{err}"
    );
    let err = fails(&d.run(&["--database", "chargegate.db", "migrate"]));
    assert!(err.contains("not recognised"), "{err}");
    assert!(!d.path("chargegate.db").exists());
}

#[test]
fn migrate_creates_the_database_and_is_idempotent() {
    let d = Dir::new();
    ok(&d.run(&["migrate"]));
    assert!(d.path("chargegate.db").exists());
    ok(&d.run(&["migrate"]));
}

#[test]
fn operators_and_users_are_created_and_duplicates_refused() {
    let d = Dir::new();
    let out = ok(&d.run(&[
        "operator",
        "add",
        "pci",
        "--name",
        "PCI Cyprus",
        "--local-currency",
        "EUR",
    ]));
    assert!(out.contains("pci"), "{out}");
    let err = fails(&d.run(&[
        "operator",
        "add",
        "pci",
        "--name",
        "again",
        "--local-currency",
        "EUR",
    ]));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&d.run(&[
        "operator",
        "add",
        "x",
        "--name",
        "X",
        "--local-currency",
        "euro",
    ]));
    assert!(err.contains("ISO-4217"), "{err}");
    let err = fails(&d.run(&[
        "operator",
        "add",
        "bad code",
        "--name",
        "X",
        "--local-currency",
        "EUR",
    ]));
    assert!(err.contains("bad code"), "{err}");

    ok(&d.run_with_stdin(&["user", "add", "demo", "--operator", "pci"], "s3cret\n"));
    let err = fails(&d.run_with_stdin(&["user", "add", "demo", "--operator", "pci"], "other\n"));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(&d.run_with_stdin(&["user", "add", "eve", "--operator", "nope"], "pw\n"));
    assert!(err.contains("no operator 'nope'"), "{err}");
    let err = fails(&d.run_with_stdin(&["user", "add", "eve", "--operator", "pci"], "\n"));
    assert!(err.contains("must not be empty"), "{err}");
}

#[tokio::test]
async fn passwords_are_stored_as_argon2id_and_never_taken_from_arguments() {
    let d = Dir::new();
    d.setup();
    let argon = d
        .count("SELECT count(*) FROM users WHERE password_hash LIKE '$argon2id$%'")
        .await;
    assert_eq!(argon, 1);
    let plain = d
        .count("SELECT count(*) FROM users WHERE password_hash LIKE '%demo%'")
        .await;
    assert_eq!(plain, 0);
    // There is no flag to pass a password.
    let err = fails(&d.run(&["user", "add", "x", "--operator", "pci", "--password", "pw"]));
    assert!(err.contains("--password"), "{err}");
    assert_eq!(err.lines().count(), 1, "a usage error is one line: {err}");
}

const GOOD_CSV: &str = "\
operator,number,billing_system_customer_identifier,amount,currency,local_currency_amount,paid_through_date,received_on,charge_status,netflix_customer_identifier
pci,I00000001,pci155,9.99,EUR,,2026-12-31,2026-11-01T10:00:00,,PAI-1
pci,I00000002,pci156,12.5,USD,11.75,2026-12-31,2026-11-01T10:00:01,,
pci,,pci157,1500,JPY,9.30,2026-12-31,,DECLINED,
";

#[tokio::test]
async fn a_good_csv_imports_and_a_repeat_is_skipped() {
    let d = Dir::new();
    d.setup();
    let file = d.write("charges.csv", GOOD_CSV);
    let out = ok(&d.run(&["charges", "import", file.to_str().unwrap()]));
    assert!(out.contains("imported 3 charge(s), skipped 0"), "{out}");
    let out = ok(&d.run(&["charges", "import", file.to_str().unwrap()]));
    // The numbered rows are skipped; the row without a number is a new charge each time.
    assert!(out.contains("imported 1 charge(s), skipped 2"), "{out}");
    assert_eq!(d.count("SELECT count(*) FROM charges").await, 4);
    assert_eq!(
        d.count("SELECT count(*) FROM charges WHERE number = 'I00000003'")
            .await,
        1
    );
    assert_eq!(
        d.count("SELECT count(*) FROM charges WHERE status = 'DECLINED' AND set_as_declined_on = received_on").await,
        2
    );
    assert_eq!(
        d.count("SELECT count(*) FROM charge_history WHERE event = 'import'")
            .await,
        4
    );
}

#[tokio::test]
async fn a_bad_csv_reports_every_bad_row_and_writes_nothing() {
    let d = Dir::new();
    d.setup();
    let csv = "\
operator,billing_system_customer_identifier,amount,currency,paid_through_date,local_currency_amount,number
pci,c1,9.99,EUR,2026-12-31,,A1
nope,c2,9.99,EUR,2026-12-31,,A2
pci,,9.999,EUR,2026-13-01,,A3
pci,c4,-1,EUR,2026-12-31,,A4
pci,c5,5,USD,2026-12-31,,A5
pci,c6,5,EURO,2026-12-31,,A6
pci,c7,9.99,EUR,2026-12-31
";
    let file = d.write("bad.csv", csv);
    let err = fails(&d.run(&["charges", "import", file.to_str().unwrap()]));
    for expected in [
        "line 3: operator: no operator 'nope'",
        "line 4: billing_system_customer_identifier: is mandatory",
        "line 4: amount: '9.999' has more decimals than EUR allows (2)",
        "line 4: paid_through_date: '2026-13-01' is an impossible date: there is no month 13",
        "line 5: amount: '-1' is not a decimal amount",
        "line 6: local_currency_amount: is mandatory when currency (USD) is not the operator's local currency (EUR)",
        "line 7: currency: 'EURO' is not an ISO-4217 currency code",
        "line 8: row has 5 cells but the header has 7",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(
        !err.contains("line 2:"),
        "the good row is not reported:\n{err}"
    );
    assert!(
        err.lines().last().unwrap().contains("nothing was imported"),
        "{err}"
    );
    assert_eq!(d.count("SELECT count(*) FROM charges").await, 0);
}

#[tokio::test]
async fn a_csv_row_clashing_with_a_stored_charge_refuses_the_whole_file() {
    let d = Dir::new();
    d.setup();
    let first = d.write("first.csv", "operator,number,billing_system_customer_identifier,amount,currency,paid_through_date\npci,N1,c1,9.99,EUR,2026-12-31\n");
    ok(&d.run(&["charges", "import", first.to_str().unwrap()]));
    let second = d.write(
        "second.csv",
        "operator,number,billing_system_customer_identifier,amount,currency,paid_through_date\npci,N2,c2,1,EUR,2026-12-31\npci,N1,c1,10.99,EUR,2026-12-31\npci,N3,c3,1,EUR,2026-12-31\npci,N3,c3,2,EUR,2026-12-31\n",
    );
    let err = fails(&d.run(&["charges", "import", second.to_str().unwrap()]));
    assert!(
        err.contains("line 3: number: charge N1 already exists with a different amount"),
        "{err}"
    );
    assert!(
        err.contains(
            "line 5: number: charge N3 is also on an earlier row, with a different amount"
        ),
        "{err}"
    );
    assert!(err.lines().nth(1).unwrap().ends_with("(line 4)"), "{err}");
    assert_eq!(d.count("SELECT count(*) FROM charges").await, 1);
}

#[test]
fn a_csv_with_unknown_or_missing_columns_is_refused() {
    let d = Dir::new();
    d.setup();
    let file = d.write("cols.csv", "operator,ammount,currency\npci,1,EUR\n");
    let err = fails(&d.run(&["charges", "import", file.to_str().unwrap()]));
    assert!(err.contains("line 1: ammount: unknown column"), "{err}");
    assert!(
        err.contains("line 1: amount: mandatory column is missing"),
        "{err}"
    );
    let err = fails(&d.run(&["charges", "import", d.path("missing.csv").to_str().unwrap()]));
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn config_example_prints_every_setting() {
    let d = Dir::new();
    let out = ok(&d.run(&["config", "example"]));
    for key in [
        "database_url",
        "listen",
        "metrics_listen",
        "token_ttl",
        "login_max_failures",
        "log_format",
        "db_timeout",
    ] {
        assert!(out.contains(&format!("{key} =")), "{key}");
    }
}

#[test]
fn an_unknown_chargegate_variable_is_reported_not_ignored() {
    let d = Dir::new();
    let out = d
        .command(&["migrate"])
        .env("CHARGEGATE_LISTN", "127.0.0.1:1")
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("CHARGEGATE_LISTN"), "{err}");
}

fn serve(d: &Dir, extra: &[&str]) -> Server {
    d.serve(extra, &[])
}

#[tokio::test]
async fn serve_demo_answers_crm_com_s_decline_example_and_stops_cleanly_on_sigterm() {
    let d = Dir::new();
    let mut served = serve(&d, &["--demo"]);
    let client = reqwest::Client::new();
    let login: serde_json::Value = client
        .post(format!(
            "{}/crmapi/rest/v2/authentication/token",
            served.base
        ))
        .body(r#"{"username":"demo","password":"demo","organisation":"pci"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["token"].as_str().unwrap();
    let reply = client
        .post(format!("{}/crmapi/rest/v2/netflix/charges/decline", served.base))
        .body(format!(
            r#"{{"token":"{token}","declined_charges_set":[{{"number":"I00002706","billing_system_customer_identifier":"pci155"}}]}}"#
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        reply,
        r#"{"data":{},"status":{"code":"OK","description":"","message":""}}"#
    );

    served.sigterm();
    let status = served.wait();
    assert!(status.success(), "{status:?}");
    let log = served.log();
    assert!(log.iter().any(|l| l.contains("demo ready")), "{log:?}");
    assert!(
        !log.iter()
            .any(|l| l.contains("password demo") || l.contains("demo/demo") || l.contains(token)),
        "{log:?}"
    );

    // Running --demo again keeps what was done.
    let served = serve(&d, &["--demo"]);
    let list: serde_json::Value = client
        .get(format!(
            "{}/crmapi/rest/v2/netflix/charges/list?token={token}&number_of_results=50&charge_status=PROCESSED&offset=0",
            served.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"]["charges_set"][0]["number"], "I00002706");
    assert_eq!(list["data"]["charges_set"][0]["charge_status"], "DECLINED");
}

#[test]
fn serve_refuses_an_unusable_listen_address() {
    let d = Dir::new();
    let err = fails(&d.run(&["serve", "--listen", "nonsense"]));
    assert!(err.contains("listen"), "{err}");
}

/// Asserts a usage error: exit status 2, one line, and returns it.
#[track_caller]
fn usage_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn a_missing_argument_is_named_with_the_subcommand_s_help() {
    let d = Dir::new();
    let err = usage_error(&d.run(&["operator", "add", "pci"]));
    assert!(
        err.contains("--name <NAME>") && err.contains("--local-currency <CUR>"),
        "{err}"
    );
    assert!(
        err.contains("see 'chargegate operator add --help'"),
        "{err}"
    );
    let err = usage_error(&d.run(&["user", "add"]));
    assert!(
        err.contains("--operator <CODE>") && err.contains("<USERNAME>"),
        "{err}"
    );
    assert!(err.contains("see 'chargegate user add --help'"), "{err}");
    assert!(!d.path("chargegate.db").exists(), "nothing was created");
}

#[test]
fn a_mistyped_flag_or_command_keeps_clap_s_did_you_mean_tip() {
    let d = Dir::new();
    let err = usage_error(&d.run(&["serve", "--listn", "127.0.0.1:1"]));
    assert!(err.contains("'--listn'"), "{err}");
    assert!(
        err.contains("tip: a similar argument exists: '--listen'"),
        "{err}"
    );
    assert!(err.contains("see 'chargegate serve --help'"), "{err}");

    let err = usage_error(&d.run(&["serv"]));
    assert!(err.contains("unrecognized subcommand 'serv'"), "{err}");
    assert!(err.contains("'serve'"), "{err}");
    assert!(err.contains("see 'chargegate --help'"), "{err}");

    let err = usage_error(&d.run(&["--log-format", "xml", "migrate"]));
    assert!(err.contains("[possible values: pretty, json]"), "{err}");
    assert!(!d.path("chargegate.db").exists(), "nothing was created");
}

/// Runs `chargegate ARGS…` in `d` on a pseudo-terminal (util-linux `script`), answering
/// each prompt in turn; returns what the terminal showed and the exit code. `None` when
/// `script` is missing.
fn on_a_terminal(d: &Dir, args: &[&str], answers: &[(&str, &str)]) -> Option<(String, i32)> {
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
        .current_dir(d.path(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("CHARGEGATE_") {
            command.env_remove(k);
        }
    }
    command
        .env("CHARGEGATE_DATABASE_URL", d.db_url())
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

#[tokio::test]
async fn on_a_terminal_the_password_is_asked_twice_and_never_shown() {
    let d = Dir::new();
    d.ok(
        &[
            "operator",
            "add",
            "pci",
            "--name",
            "PCI",
            "--local-currency",
            "EUR",
        ],
        "",
    );
    let Some((shown, code)) = on_a_terminal(
        &d,
        &["user", "add", "billing", "--operator", "pci"],
        &[("password: ", "hunter2"), ("password again: ", "hunter2")],
    ) else {
        eprintln!("SKIPPED: no util-linux 'script' to run a terminal");
        return;
    };
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("created user billing"), "{shown}");
    assert!(
        !shown.contains("hunter2"),
        "the password was shown: {shown}"
    );
    assert_eq!(d.count("SELECT count(*) FROM users").await, 1);

    let (shown, code) = on_a_terminal(
        &d,
        &["user", "add", "eve", "--operator", "pci"],
        &[("password: ", "one"), ("password again: ", "two")],
    )
    .unwrap();
    assert_eq!(code, 1, "{shown}");
    assert!(
        shown.contains("chargegate: the two passwords differ; nothing was created"),
        "{shown}"
    );
    assert_eq!(
        d.count("SELECT count(*) FROM users").await,
        1,
        "nothing changed"
    );
}

/// Asserts a refusal: exit status 1, one line, and returns it.
#[track_caller]
fn one_line_failure(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("chargegate: "), "{err}");
    err
}

#[test]
fn configuration_mistakes_are_one_line_naming_the_setting_and_create_nothing() {
    let d = Dir::new();
    d.write("chargegate.toml", "token_ttl = \"soon\"\n");
    let err = one_line_failure(&d.run(&["--config", "chargegate.toml", "migrate"]));
    assert_eq!(
        err.trim_end(),
        "chargegate: token_ttl in chargegate.toml must be a whole number of seconds, not \"soon\""
    );
    d.write(
        "chargegate.toml",
        "token_ttl = \nlisten = \"127.0.0.1:1\"\n",
    );
    let err = one_line_failure(&d.run(&["--config", "chargegate.toml", "migrate"]));
    assert!(
        err.contains("config file chargegate.toml: syntax error at line 1, column 13"),
        "{err}"
    );
    let out = d
        .command(&["migrate"])
        .env("CHARGEGATE_DB_MAX_CONNECTIONS", "-1")
        .output()
        .unwrap();
    let err = one_line_failure(&out);
    assert!(
        err.contains("CHARGEGATE_DB_MAX_CONNECTIONS must be a positive whole number, not -1"),
        "{err}"
    );
    assert!(!d.path("chargegate.db").exists(), "nothing was created");
}

#[test]
fn a_missing_csv_file_is_named_once_and_leaves_no_database_behind() {
    let d = Dir::new();
    let err = one_line_failure(&d.run(&["charges", "import", "nope.csv"]));
    assert_eq!(
        err.trim_end(),
        "chargegate: cannot read nope.csv: No such file or directory (os error 2)"
    );
    assert!(!d.path("chargegate.db").exists(), "nothing was created");
}

#[test]
fn a_backup_into_a_missing_directory_says_so_and_writes_nothing() {
    let d = Dir::new();
    ok(&d.run(&["migrate"]));
    let target = d.path("missing/copy.db");
    let err = one_line_failure(&d.run(&["backup", target.to_str().unwrap()]));
    assert!(
        err.contains(&format!(
            "the directory {} does not exist",
            d.path("missing").display()
        )),
        "{err}"
    );
    assert!(!err.contains("unavailable"), "{err}");
    assert!(!d.path("missing").exists());
}

#[test]
fn an_unreachable_postgresql_server_is_named_once_without_its_password() {
    let d = Dir::new();
    // Port 1 on the loopback interface: nothing listens there.
    let url = "postgres://app:s3cret@127.0.0.1:1/charges";
    let out = d
        .command(&["--database", url, "migrate"])
        .env("CHARGEGATE_DB_TIMEOUT", "1")
        .output()
        .unwrap();
    let err = one_line_failure(&out);
    assert_eq!(
        err.matches("postgres://app:***@127.0.0.1:1/charges")
            .count(),
        1,
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
}

#[tokio::test]
async fn a_csv_may_use_semicolons_z_times_and_lower_case_currencies() {
    let d = Dir::new();
    d.setup();
    let file = d.write(
        "semicolons.csv",
        "operator;number;billing_system_customer_identifier;amount;currency;paid_through_date;received_on\n\
         pci;S1;c1;9.99;eur;2026-12-31;2026-11-25T06:00:12Z\n",
    );
    let out = ok(&d.run(&["charges", "import", file.to_str().unwrap()]));
    assert!(out.contains("imported 1 charge(s)"), "{out}");
    let out = ok(&d.run(&[
        "operator",
        "add",
        "acme",
        "--name",
        "Acme",
        "--local-currency",
        "usd",
    ]));
    assert!(out.contains("local currency USD"), "{out}");
    let received = chargegate_core::clock::Timestamp::parse("2026-11-25T06:00:12")
        .unwrap()
        .unix();
    assert_eq!(
        d.count(&format!(
            "SELECT count(*) FROM charges WHERE number = 'S1' AND currency = 'EUR' AND received_on = {received}"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn impossible_dates_and_decimal_commas_are_explained_and_nothing_is_imported() {
    let d = Dir::new();
    d.setup();
    let file = d.write(
        "dates.csv",
        "operator;billing_system_customer_identifier;amount;currency;paid_through_date;received_on\n\
         pci;c1;9.99;EUR;2026-02-30;2026-11-25T06:00:12Z\n\
         pci;c2;9,99;EUR;2026-12-31;2026-02-29T06:00:00\n",
    );
    let err = fails(&d.run(&["charges", "import", file.to_str().unwrap()]));
    for expected in [
        "line 2: paid_through_date: '2026-02-30' is an impossible date: February 2026 has 28 days",
        "line 3: amount: '9,99' is not a decimal amount",
        "write the decimal mark as '.'",
        "line 3: received_on: '2026-02-29T06:00:00' has an impossible date: February 2026 has 28 days",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert_eq!(d.count("SELECT count(*) FROM charges").await, 0);
}

#[tokio::test]
async fn an_empty_csv_gets_one_clear_line() {
    let d = Dir::new();
    d.setup();
    for content in ["", "\n\n"] {
        let file = d.write("empty.csv", content);
        let err = one_line_failure(&d.run(&["charges", "import", file.to_str().unwrap()]));
        assert!(
            err.contains("empty.csv is empty: it needs a header row"),
            "{err}"
        );
        assert!(
            err.contains("operator,billing_system_customer_identifier"),
            "{err}"
        );
    }
    assert_eq!(d.count("SELECT count(*) FROM charges").await, 0);
}

#[tokio::test]
async fn a_long_report_lists_twenty_problems_and_counts_the_rest() {
    let d = Dir::new();
    d.setup();
    let mut csv = String::from(
        "operator,billing_system_customer_identifier,amount,currency,paid_through_date\n",
    );
    for i in 0..100 {
        csv.push_str(&format!("pci,c{i},x,EUR,2026-12-31\n"));
    }
    let file = d.write("bad.csv", &csv);
    let err = fails(&d.run(&["charges", "import", file.to_str().unwrap()]));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 22, "{err}");
    assert!(lines[0].starts_with("line 2: amount: 'x'"), "{err}");
    assert_eq!(lines[20], "... and 80 more problem(s)");
    assert!(
        lines[21].contains("100 problem(s); nothing was imported"),
        "{err}"
    );
    assert_eq!(d.count("SELECT count(*) FROM charges").await, 0);
}

#[tokio::test]
async fn the_progress_bars_start_empty_and_count_in_units_people_read() {
    let d = Dir::new();
    d.setup();
    let mut csv = String::from(
        "operator,billing_system_customer_identifier,amount,currency,paid_through_date\n",
    );
    for i in 0..4000 {
        csv.push_str(&format!("pci,customer-{i:06},9.99,EUR,2026-12-31\n"));
    }
    let file = d.write("large.csv", &csv);
    let Some((shown, code)) =
        on_a_terminal(&d, &["charges", "import", file.to_str().unwrap()], &[])
    else {
        eprintln!("SKIPPED: no util-linux 'script' to run a terminal");
        return;
    };
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("imported 4000 charge(s)"), "{shown}");
    // Each redraw starts with a carriage return or an erase-line sequence.
    let frames: Vec<&str> = shown
        .split(['\r', '\n', '\u{1b}'])
        .filter(|f| f.contains('['))
        .collect();
    for message in ["checking", "importing"] {
        let first = frames
            .iter()
            .find(|f| f.contains(message))
            .unwrap_or_else(|| panic!("no {message} bar in {shown:?}"));
        assert!(
            !first.contains("=]") && !first.contains(">]"),
            "full first frame: {first}"
        );
    }
    let checking = frames.iter().find(|f| f.contains("checking")).unwrap();
    assert!(
        checking.contains(" B/") && checking.contains("KiB"),
        "{checking}"
    );
    let importing = frames.iter().find(|f| f.contains("importing")).unwrap();
    assert!(importing.contains("/4,000 rows"), "{importing}");
    assert_eq!(d.count("SELECT count(*) FROM charges").await, 4000);
}

#[test]
fn version_names_the_commit_and_the_build_date() {
    let d = Dir::new();
    let out = ok(&d.run(&["--version"]));
    let rest = out
        .trim_end()
        .strip_prefix(&format!(
            "chargegate {} (commit ",
            env!("CARGO_PKG_VERSION")
        ))
        .unwrap_or_else(|| panic!("{out}"));
    let (commit, built) = rest
        .strip_suffix(')')
        .and_then(|r| r.split_once(", built "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{out}"
    );
    assert!(chargegate_core::clock::Date::parse(built).is_ok(), "{out}");
}

#[test]
fn help_and_the_first_log_line_name_the_database_file_absolutely() {
    let d = Dir::new();
    // The default, relative URL: what a new user runs.
    let mut command = d.command(&["--help"]);
    command.env_remove("CHARGEGATE_DATABASE_URL");
    let help = String::from_utf8(command.output().unwrap().stdout).unwrap();
    let file = d.path("chargegate.db");
    let here = format!("sqlite://{}", file.display());
    assert!(help.contains(&here), "{here} in {help}");

    let mut command = d.command(&["serve", "--listen", "localhost:0"]);
    command
        .env_remove("CHARGEGATE_DATABASE_URL")
        .env("CHARGEGATE_LOG", "info")
        .env("CHARGEGATE_LOG_FORMAT", "json")
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut log = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut read_line = || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut log, &mut line).unwrap();
        serde_json::from_str::<serde_json::Value>(&line).unwrap_or_else(|_| panic!("{line}"))
    };
    let first = read_line();
    let serving = read_line();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(first["message"], "chargegate starting", "{first}");
    assert_eq!(first["version"], env!("CARGO_PKG_VERSION"), "{first}");
    assert_eq!(
        first["database"],
        format!("sqlite://{}", file.display()),
        "{first}"
    );
    // localhost is resolved, not refused.
    assert_eq!(serving["message"], "chargegate serving", "{serving}");
    let address = serving["address"].as_str().unwrap();
    assert!(
        address.starts_with("127.0.0.1:") || address.starts_with("[::1]:"),
        "{serving}"
    );
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_line_definition() {
    let d = Dir::new();
    for (shell, marker) in [
        ("bash", "_chargegate()"),
        ("zsh", "#compdef chargegate"),
        ("fish", "complete -c chargegate"),
    ] {
        let script = ok(&d.run(&["completions", shell]));
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("import"), "{shell} completes subcommands");
    }
    let page = ok(&d.run(&["manpage"]));
    assert!(page.contains(".TH chargegate 1"), "{page}");
    assert!(
        page.contains("serve") && page.contains("database"),
        "{page}"
    );
    assert!(!d.path("chargegate.db").exists(), "no database is involved");
}

#[test]
fn a_database_in_a_missing_directory_is_refused_in_one_line_naming_the_directory() {
    let out = common::process::run(
        common::process::chargegate("sqlite:///nonexistent-chargegate-dir/x.db", &["migrate"]),
        "",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("its directory /nonexistent-chargegate-dir does not exist"),
        "{err}"
    );
    assert_eq!(
        err.matches("/nonexistent-chargegate-dir/x.db").count(),
        1,
        "{err}"
    );
    assert!(!std::path::Path::new("/nonexistent-chargegate-dir").exists());
}
