//! The real `chargegate` binary as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_chargegate");

/// A `chargegate` command on `database_url`, with none of the caller's `CHARGEGATE_*`
/// variables leaking in.
pub fn chargegate(database_url: &str, args: &[&str]) -> Command {
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
pub fn run(mut command: Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn chargegate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for chargegate")
}

/// A running `serve` process; killed on drop.
pub struct Served {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Served {
    /// Starts `serve --listen 127.0.0.1:0 EXTRA…` and waits until it says where it
    /// listens.
    pub fn start(mut command: Command, extra: &[&str]) -> Served {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("CHARGEGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chargegate serve");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let base = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!("chargegate serve exited before listening"),
            };
            if let Some(rest) = line.split("address=").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                break format!("http://{addr}");
            }
        };
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Served { child, base }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
