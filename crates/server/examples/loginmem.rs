//! How much memory failed logins leave behind: the resident set of the real server after
//! 300 failed logins from 6 parallel clients.
//!
//! ```sh
//! cargo build --release && cargo run --release --example loginmem -- [logins] [clients]
//! ```
//!
//! It starts the release binary (`target/release/chargegate serve --demo`, default
//! settings, so `password_checks` = 2) on 127.0.0.1:0 over a fresh SQLite database, then
//! sends failed logins with unknown user names of organisation `pci` (each runs a full
//! Argon2 check; none is locked out) over loopback HTTP. It prints the server process's
//! resident set (VmRSS) and peak (VmHWM) before and after, from /proc/PID/status
//! (Linux), and stops the server with SIGTERM. It asserts nothing: memory figures belong
//! here, not in tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

/// `VmRSS` and `VmHWM` of process `pid`, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
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

    // target/release/examples/loginmem → target/release/chargegate
    let exe = std::env::current_exe().unwrap();
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("chargegate");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --release` first",
        binary.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(&binary);
    for (k, _) in std::env::vars() {
        if k.starts_with("CHARGEGATE_") {
            command.env_remove(k);
        }
    }
    let mut server = command
        .env("CHARGEGATE_LOG", "info")
        .arg("--database")
        .arg(format!("sqlite://{}", dir.path().join("mem.db").display()))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = server.id();
    let mut log = BufReader::new(server.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = log.next().expect("the server exits early").unwrap();
        if let Some(rest) = line.split(" address=").nth(1)
            && line.contains("chargegate serving")
        {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep reading the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in log {});

    let client = reqwest::Client::new();
    let url = format!("http://{addr}/crmapi/rest/v2/authentication/token");
    client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    let (rss_before, _) = memory(pid);

    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let (client, url) = (client.clone(), url.clone());
            let share = logins / clients + usize::from(c < logins % clients);
            tokio::spawn(async move {
                for i in 0..share {
                    let body = format!(
                        r#"{{"username":"nobody-{c}-{i}","password":"guess","organisation":"pci"}}"#
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
    let (rss_after, peak) = memory(pid);

    println!("server            {} (pid {pid})", binary.display());
    println!("failed logins     {logins} from {clients} parallel clients in {elapsed:.2?}");
    println!("password checks   at most 2 at once (the default password_checks)");
    println!("RSS before        {rss_before:.1} MiB");
    println!("RSS after         {rss_after:.1} MiB");
    println!("RSS peak (VmHWM)  {peak:.1} MiB");

    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = server.wait().unwrap();
    assert!(status.success(), "the server exited with {status}");
}
