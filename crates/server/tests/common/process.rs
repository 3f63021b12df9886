//! The real `chargegate` binary as an operator runs it: commands in a scratch directory
//! or on a given database, and `serve` processes whose standard error (the log) is kept
//! for inspection.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Value, json};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_chargegate");
pub(crate) const V2: &str = "/crmapi/rest/v2";

/// A `chargegate` command on `database_url`, with none of the caller's `CHARGEGATE_*`
/// variables leaking in.
pub(crate) fn chargegate(database_url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("CHARGEGATE_") {
            c.env_remove(k);
        }
    }
    c.env("CHARGEGATE_DATABASE_URL", database_url)
        .env("CHARGEGATE_LOG", "warn")
        .args(args);
    c
}

/// Runs a command to completion, feeding `stdin`.
pub(crate) fn run(mut command: Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A scratch directory holding a SQLite database, where commands run.
pub(crate) struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    pub(crate) fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn db_url(&self) -> String {
        format!("sqlite://{}", self.path("chargegate.db").display())
    }

    /// The binary with no `CHARGEGATE_*` variable of the test's environment, on this
    /// directory's database, running in this directory.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = chargegate(&self.db_url(), args);
        c.current_dir(self.dir.path());
        c
    }

    pub(crate) fn run(&self, args: &[&str], stdin: &str) -> Output {
        run(self.command(args), stdin)
    }

    /// Writes a file into the directory.
    pub(crate) fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// Runs a command that must succeed; returns its standard output.
    #[track_caller]
    pub(crate) fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: exit {:?}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Operator `pci` with user `billing` (whose password is given), and `PENDING`
    /// charges `(number, customer)` of 9.99 EUR.
    pub(crate) fn setup(&self, password: &str, charges: &[(&str, &str)]) {
        setup_database(&self.db_url(), password, charges);
    }

    /// Starts `serve --listen 127.0.0.1:0 ARGS…` and waits until it listens.
    pub(crate) fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start(self.command(&[]), args, env)
    }
}

impl Server {
    /// Starts `serve --listen 127.0.0.1:0 ARGS…` from `command` (which names the
    /// database), with extra environment `env`, and waits until it listens.
    pub(crate) fn start(mut command: Command, args: &[&str], env: &[(&str, &str)]) -> Server {
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("CHARGEGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines_tx, lines) = mpsc::channel::<String>();
        // Reads the log to its end (so the server never blocks on a full pipe) and hands
        // every line over.
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            metrics: None,
            lines,
            seen: Vec::new(),
            reader: Some(reader),
        };
        server.base = format!("http://{}", server.await_address("chargegate serving"));
        server
    }
}

/// A running `serve` process; killed on drop if still running.
pub(crate) struct Server {
    child: Child,
    /// `http://ADDR` of the API.
    pub base: String,
    /// `http://ADDR` of the metrics listener, once [`Server::metrics_base`] found it.
    pub metrics: Option<String>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    reader: Option<JoinHandle<()>>,
}

/// The `address` field of a log line, in JSON or pretty format.
fn address_in(line: &str) -> Option<String> {
    if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) {
        return fields.get("address")?.as_str().map(str::to_owned);
    }
    let rest = line.split(" address=").nth(1)?;
    rest.split_whitespace().next().map(str::to_owned)
}

impl Server {
    /// Waits for a log line containing `needle` (or finds it among those already read).
    pub(crate) fn await_log(&mut self, needle: &str) -> String {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("the server never logged {needle:?}: {:?}", self.seen));
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// The `address` of the log line containing `message`.
    fn await_address(&mut self, message: &str) -> String {
        let line = self.await_log(message);
        address_in(&line).unwrap_or_else(|| panic!("no address in {line}"))
    }

    /// `http://ADDR` of the metrics listener, from its log line.
    pub(crate) fn metrics_base(&mut self) -> String {
        if self.metrics.is_none() {
            let address = self.await_address("metrics serving");
            self.metrics = Some(format!("http://{address}"));
        }
        self.metrics.clone().unwrap()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process outright (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub(crate) fn wait(&mut self) -> ExitStatus {
        self.child.wait().unwrap()
    }

    /// Every line the process wrote to standard error. Call after it exited.
    pub(crate) fn log(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.seen.extend(self.lines.try_iter());
        self.seen.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JSON answer and its headers.
pub(crate) struct Answer {
    pub status: u16,
    pub request_id: String,
    pub body: Value,
}

impl Answer {
    pub(crate) fn code(&self) -> &str {
        self.body["status"]["code"].as_str().unwrap_or("<none>")
    }
}

pub(crate) async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Answer {
    let response = client
        .post(url)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        request_id,
        body,
    }
}

pub(crate) async fn login(
    client: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> Answer {
    post(
        client,
        &format!("{base}{V2}/authentication/token"),
        &json!({"username": username, "password": password, "organisation": "pci"}),
    )
    .await
}

/// Logs in as `billing` and returns the token.
pub(crate) async fn billing_token(client: &reqwest::Client, base: &str, password: &str) -> String {
    let answer = login(client, base, "billing", password).await;
    assert_eq!(answer.code(), "OK", "{}", answer.body);
    answer.body["data"]["token"].as_str().unwrap().to_owned()
}

/// `{"number", "billing_system_customer_identifier"}` items for a batch call.
pub(crate) fn items(charges: &[(&str, &str)]) -> Value {
    charges
        .iter()
        .map(|(n, c)| json!({"number": n, "billing_system_customer_identifier": c}))
        .collect()
}

pub(crate) async fn decline(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    charges: &[(&str, &str)],
) -> Answer {
    post(
        client,
        &format!("{base}{V2}/netflix/charges/decline"),
        &json!({"token": token, "declined_charges_set": items(charges)}),
    )
    .await
}

/// Through the command line, on the database at `url`: operator `pci`, user `billing`
/// (whose password is given), and `PENDING` charges `(number, customer)` of 9.99 EUR.
pub(crate) fn setup_database(url: &str, password: &str, charges: &[(&str, &str)]) {
    let ok = |args: &[&str], stdin: &str| {
        let out = run(chargegate(url, args), stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(
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
    ok(
        &["user", "add", "billing", "--operator", "pci"],
        &format!("{password}\n"),
    );
    let mut csv = String::from(
        "operator,number,billing_system_customer_identifier,amount,currency,paid_through_date\n",
    );
    for (number, customer) in charges {
        csv.push_str(&format!("pci,{number},{customer},9.99,EUR,2026-12-31\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("charges.csv");
    std::fs::write(&file, csv).unwrap();
    ok(&["charges", "import", file.to_str().unwrap()], "");
}

/// Runs one query returning an integer against a SQLite file.
pub(crate) async fn count(path: &std::path::Path, sql: &str) -> i64 {
    use sqlx::Row;
    let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    let n: i64 = sqlx::query(sql)
        .fetch_one(&pool)
        .await
        .unwrap()
        .try_get(0)
        .unwrap();
    pool.close().await;
    n
}
