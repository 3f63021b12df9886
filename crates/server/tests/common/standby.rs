//! PostgreSQL as operators run it for failover: a primary with a synchronous streaming
//! standby, made from scratch with PostgreSQL 15's own tools (`initdb`, `pg_ctl`,
//! `pg_basebackup`) in a temporary directory, on free ports of 127.0.0.1, run as the
//! `postgres` OS user; and a TCP proxy whose target moves, standing for the DNS name or
//! virtual IP that follows the primary in production.
//!
//! Every server is stopped (`-m immediate`) and every directory removed when the guards
//! drop, a failed test included.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where Debian's `postgresql-15` package puts the server's programs.
pub(crate) const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Fails with one line naming the package when PostgreSQL 15's server programs are missing.
pub(crate) fn require_postgresql_15() {
    for program in ["initdb", "pg_ctl", "pg_basebackup", "postgres", "psql"] {
        let path = Path::new(PG_BIN).join(program);
        assert!(
            path.exists(),
            "{} is missing: install Debian's postgresql-15 package (apt-get install postgresql-15)",
            path.display()
        );
    }
}

/// A port of 127.0.0.1 that nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs one of PostgreSQL's programs as the `postgres` OS user, in `cwd`; its output on
/// failure.
fn as_postgres(cwd: &Path, program: &str, args: &[&str]) -> Result<String, String> {
    let path = Path::new(PG_BIN).join(program);
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&path)
        .args(args)
        .current_dir(cwd)
        .output()
        .map_err(|e| format!("runuser {program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Settings every node shares (a standby copies them from its primary). `fsync` is off:
/// the test kills server processes, never the machine, so the operating system keeps
/// every write.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 4
wal_keep_size = '256MB'
hot_standby = on
synchronous_commit = on
fsync = off
shared_buffers = '32MB'
max_connections = 40
log_min_messages = warning
";

/// One PostgreSQL server: a data directory and a port.
pub(crate) struct Node {
    pub name: &'static str,
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    cwd: PathBuf,
    running: bool,
}

impl Node {
    /// `host:port`.
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A URL straight to this server (not through the proxy).
    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<String, String> {
        let data = self.data.to_string_lossy().into_owned();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        as_postgres(&self.cwd, "pg_ctl", &all)
    }

    fn start(&mut self) {
        let log = self.log.to_string_lossy().into_owned();
        let port = format!("-p {}", self.port);
        self.pg_ctl(&["-l", &log, "-o", &port, "-w", "-t", "60", "start"])
            .unwrap_or_else(|e| panic!("starting {}: {e}\n{}", self.name, self.log_tail()));
        self.running = true;
    }

    /// Stops the server the way a crash does: no checkpoint, connections dropped.
    pub(crate) fn kill(&mut self) {
        if self.running {
            self.running = false;
            self.pg_ctl(&["-m", "immediate", "-w", "-t", "60", "stop"])
                .unwrap_or_else(|e| panic!("killing {}: {e}", self.name));
        }
    }

    fn promote(&self) {
        self.pg_ctl(&["-w", "-t", "60", "promote"])
            .unwrap_or_else(|e| panic!("promoting {}: {e}\n{}", self.name, self.log_tail()));
    }

    /// Runs SQL with `psql` straight against this server; its unaligned output.
    pub(crate) fn psql(&self, sql: &str) -> String {
        let port = self.port.to_string();
        as_postgres(
            &self.cwd,
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        )
        .unwrap_or_else(|e| panic!("psql on {}: {e}", self.name))
        .trim()
        .to_owned()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["-m", "immediate", "-w", "-t", "30", "stop"]);
        }
    }
}

/// A primary and its synchronous standby; after a failover, the promoted standby and
/// (once [`Pair::rebuild_standby`] ran) the old primary made its standby. The standby
/// streams from the primary over a link with latency (a proxy), so that commits are in
/// flight to it for a while, as between two sites.
pub(crate) struct Pair {
    nodes: [Node; 2],
    primary: usize,
    link: MovingProxy,
    /// Declared last, so the servers stop before their directories go.
    _root: tempfile::TempDir,
}

impl Pair {
    /// Makes and starts both servers, the standby streaming over a link of `latency` each
    /// way, and waits until the standby confirms commits.
    pub(crate) async fn start(latency: Duration) -> Pair {
        require_postgresql_15();
        let root = tempfile::tempdir().expect("temp dir");
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(root.path())
            .status()
            .expect("chown");
        assert!(chown.success(), "chown of {} failed", root.path().display());
        let node = |name: &'static str| Node {
            name,
            port: free_port(),
            data: root.path().join(name),
            log: root.path().join(format!("{name}.log")),
            cwd: root.path().to_owned(),
            running: false,
        };
        let mut first = node("a");
        let second = node("b");
        let data = first.data.to_string_lossy().into_owned();
        as_postgres(
            &first.cwd,
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )
        .expect("initdb");
        let conf = first.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        text.push_str(SETTINGS);
        std::fs::write(&conf, text).expect("write postgresql.conf");
        tokio::task::block_in_place(|| first.start());
        let link = MovingProxy::with_latency(first.addr(), latency).await;
        let mut pair = Pair {
            nodes: [first, second],
            primary: 0,
            link,
            _root: root,
        };
        tokio::task::block_in_place(|| pair.rebuild_standby());
        pair
    }

    pub(crate) fn primary(&self) -> &Node {
        &self.nodes[self.primary]
    }

    pub(crate) fn standby(&self) -> &Node {
        &self.nodes[1 - self.primary]
    }

    /// (Re)makes the other node a streaming standby of the primary from a fresh base
    /// backup, starts it, makes it synchronous and waits until it is.
    pub(crate) fn rebuild_standby(&mut self) {
        let primary_port = self.link.addr.port().to_string();
        let standby = &mut self.nodes[1 - self.primary];
        standby.kill();
        if standby.data.exists() {
            std::fs::remove_dir_all(&standby.data).expect("remove the old data directory");
        }
        let data = standby.data.to_string_lossy().into_owned();
        as_postgres(
            &standby.cwd,
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port,
                "-U",
                "postgres",
                "-D",
                &data,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        )
        .expect("pg_basebackup");
        standby.start();
        // Only now: a standby copied from a primary that requires a synchronous standby
        // would, once promoted, wait for one before any commit returns.
        let primary = self.primary();
        primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
        primary.psql("SELECT pg_reload_conf()");
        let deadline = Instant::now() + Duration::from_secs(60);
        while primary.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")
            != "1"
        {
            assert!(
                Instant::now() < deadline,
                "the standby did not become synchronous"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The primary's host fails: its network first (what is in flight to the standby is
    /// lost, and the standby cannot reconnect), then its server (`-m immediate`).
    pub(crate) fn fail_primary(&mut self) {
        self.link.move_to("127.0.0.1:1".into());
        let p = self.primary;
        self.nodes[p].kill();
    }

    /// Promotes the standby, which from then on is the primary. It requires no synchronous
    /// standby until [`Pair::rebuild_standby`] gives it one.
    pub(crate) fn promote_standby(&mut self) {
        self.standby().promote();
        self.primary = 1 - self.primary;
        self.link.move_to(self.primary().addr());
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.primary().psql("SELECT pg_is_in_recovery()") != "f" {
            assert!(Instant::now() < deadline, "the promotion did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A TCP proxy on 127.0.0.1 whose target moves: new connections go to the target of the
/// moment; a move drops the connections made before it. With a latency, every chunk of
/// bytes is held that long each way, as a network between two sites does, and what is
/// in flight is lost when the connections drop.
pub(crate) struct MovingProxy {
    pub addr: std::net::SocketAddr,
    target: Arc<Mutex<String>>,
    pipes: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl MovingProxy {
    pub(crate) async fn start(target: String) -> MovingProxy {
        Self::with_latency(target, Duration::ZERO).await
    }

    pub(crate) async fn with_latency(target: String, latency: Duration) -> MovingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let target = Arc::new(Mutex::new(target));
        let pipes: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let target = target.clone();
            let pipes = pipes.clone();
            tokio::spawn(async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    let to = target.lock().expect("target").clone();
                    let pipe = tokio::spawn(async move {
                        if let Ok(outbound) = TcpStream::connect(&to).await {
                            let (from_client, to_client) = inbound.into_split();
                            let (from_server, to_server) = outbound.into_split();
                            tokio::select! {
                                () = delayed(from_client, to_server, latency) => {}
                                () = delayed(from_server, to_client, latency) => {}
                            }
                        }
                    });
                    let mut all = pipes.lock().expect("pipes");
                    all.retain(|p| !p.is_finished());
                    all.push(pipe);
                }
            })
        };
        MovingProxy {
            addr,
            target,
            pipes,
            accept,
        }
    }

    /// Points new connections at `target` and drops every existing one.
    pub(crate) fn move_to(&self, target: String) {
        *self.target.lock().expect("target") = target;
        self.cut();
    }

    /// Drops every connection, with whatever is in flight on it.
    pub(crate) fn cut(&self) {
        for p in self.pipes.lock().expect("pipes").drain(..) {
            p.abort();
        }
    }
}

/// Copies `from` to `to`, each chunk `latency` after it was read, until `from` ends.
async fn delayed(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Duration,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let read = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer).await {
            let due = tokio::time::Instant::now() + latency;
            if tx.send((due, buffer[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let write = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    tokio::join!(read, write);
}

impl Drop for MovingProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
