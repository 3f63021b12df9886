//! A fresh database per test, on either backend.
//!
//! PostgreSQL is found, or made available, once per test process:
//! 1. `CHARGEGATE_TEST_POSTGRES_URL`, when set, is used as is (a server the caller runs);
//! 2. else `postgres://postgres@127.0.0.1:5432/postgres` is tried;
//! 3. else a local cluster that is installed but down is started (`pg_ctlcluster`);
//! 4. else, as root with apt, Debian's `postgresql` package is installed and started.
//!
//! Only when all of that fails are the PostgreSQL tests skipped, each printing a loud
//! `SKIPPED: no PostgreSQL` line; on this project's machines they always run.

use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// Keeps the SQLite file's directory alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL database to drop afterwards, and the server URL to drop it through.
    pg: Option<(String, String)>,
}

/// The server URL PostgreSQL tests use, or why there is none.
fn postgres_server() -> &'static Result<String, String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER.get_or_init(|| {
        // Blocking work (process spawns, connection attempts) on a thread of its own, so
        // it never runs on a test's async runtime.
        std::thread::spawn(find_postgres)
            .join()
            .unwrap_or_else(|_| Err("the PostgreSQL probe panicked".into()))
    })
}

fn can_connect(url: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query("SELECT 1")
            .execute(&pool)
            .await
            .map_err(|e| e.to_string())?;
        pool.close().await;
        Ok(())
    })
}

fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn start_clusters() -> Result<(), String> {
    let out = Command::new("pg_lsclusters")
        .arg("--no-header")
        .output()
        .map_err(|e| format!("pg_lsclusters: {e}"))?;
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut started = false;
    for line in listing.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if let [version, name, _port, status, ..] = cols.as_slice() {
            if *status != "online" {
                run(
                    "pg_ctlcluster",
                    &["--skip-systemctl-redirect", version, name, "start"],
                )?;
            }
            started = true;
        }
    }
    if started {
        Ok(())
    } else {
        Err("no PostgreSQL cluster is installed".into())
    }
}

fn install_postgres() -> Result<(), String> {
    run("apt-get", &["update", "-qq"])?;
    let out = Command::new("apt-get")
        .args(["install", "-y", "-qq", "postgresql"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("apt-get: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "apt-get install postgresql: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// A freshly installed cluster only lets `postgres` in over its socket; give it a
/// password so the tests can connect over TCP.
fn enable_password_login() -> Result<String, String> {
    run(
        "runuser",
        &[
            "-u",
            "postgres",
            "--",
            "psql",
            "-q",
            "-c",
            "ALTER USER postgres PASSWORD 'chargegate'",
        ],
    )?;
    Ok("postgres://postgres:chargegate@127.0.0.1:5432/postgres".into())
}

fn find_postgres() -> Result<String, String> {
    if let Ok(url) = std::env::var("CHARGEGATE_TEST_POSTGRES_URL") {
        return can_connect(&url).map(|()| url.clone()).map_err(|e| {
            format!(
                "CHARGEGATE_TEST_POSTGRES_URL={} does not answer: {e}",
                chargegate_store::redact(&url)
            )
        });
    }
    let default = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
    let password = "postgres://postgres:chargegate@127.0.0.1:5432/postgres".to_owned();
    let answers = |url: &String| can_connect(url).is_ok();
    if answers(&default) {
        return Ok(default);
    }
    if answers(&password) {
        return Ok(password);
    }
    let mut why = Vec::new();
    let installed = match start_clusters() {
        Ok(()) => true,
        Err(e) => {
            why.push(e);
            match install_postgres().and_then(|()| start_clusters()) {
                Ok(()) => true,
                Err(e) => {
                    why.push(e);
                    false
                }
            }
        }
    };
    if installed {
        // A cluster needs a moment to accept connections after it starts.
        for _ in 0..30 {
            if answers(&default) {
                return Ok(default);
            }
            if let Ok(url) = enable_password_login()
                && answers(&url)
            {
                return Ok(url);
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        why.push("the cluster started but refuses connections".into());
    }
    Err(why.join("; "))
}

/// Whether PostgreSQL tests can run; prints the loud skip line when they cannot.
pub fn postgres_or_skip(test: &str) -> bool {
    match postgres_server() {
        Ok(_) => true,
        Err(why) => {
            eprintln!("SKIPPED: no PostgreSQL for {test}: {why}");
            println!("SKIPPED: no PostgreSQL for {test}: {why}");
            false
        }
    }
}

/// Replaces the database name at the end of a PostgreSQL URL.
fn with_database(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (server, String::new()),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    format!("{prefix}/{name}{query}")
}

async fn admin(server: &str) -> sqlx::PgPool {
    PgPoolOptions::new()
        .max_connections(1)
        .connect(server)
        .await
        .expect("connect to the PostgreSQL test server")
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("chargegate.db").display());
                TestDb {
                    backend,
                    url,
                    _dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let server = postgres_server()
                    .clone()
                    .expect("PostgreSQL available (checked by the test)");
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let mut nonce = [0u8; 4];
                getrandom::fill(&mut nonce).expect("random");
                let name = format!(
                    "cg_test_{}_{}_{:08x}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    u32::from_le_bytes(nonce)
                );
                let pool = admin(&server).await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&pool)
                    .await
                    .expect("create the test database");
                pool.close().await;
                TestDb {
                    backend,
                    url: with_database(&server, &name),
                    _dir: None,
                    pg: Some((name, server)),
                }
            }
        }
    }

    /// A SQLite database in `dir` (which the caller owns and removes).
    pub fn sqlite_in(dir: &std::path::Path) -> TestDb {
        TestDb {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}", dir.join("chargegate.db").display()),
            _dir: None,
            pg: None,
        }
    }

    /// The same database reached through another URL (a proxy); dropping it drops nothing.
    pub fn through(&self, url: String) -> TestDb {
        TestDb {
            backend: self.backend,
            url,
            _dir: None,
            pg: None,
        }
    }

    /// `host:port` of a PostgreSQL URL.
    pub fn host_port(&self) -> String {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or(rest);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:5432")
        }
    }

    /// Runs a query returning one integer, straight against the database: for checking
    /// what the API cannot show (history rows, decisions).
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let pool = self.sqlite_pool().await;
                let n = sqlx::query(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("query")
                    .try_get(0);
                pool.close().await;
                n.expect("an integer")
            }
            Backend::Postgres => {
                let pool = admin(&self.url).await;
                let n = sqlx::query(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("query")
                    .try_get(0);
                pool.close().await;
                n.expect("an integer")
            }
        }
    }

    /// Runs a statement behind the server's back (to damage data on purpose).
    pub async fn execute(&self, sql: &str) -> u64 {
        match self.backend {
            Backend::Sqlite => {
                let pool = self.sqlite_pool().await;
                let n = sqlx::query(sql)
                    .execute(&pool)
                    .await
                    .expect("statement")
                    .rows_affected();
                pool.close().await;
                n
            }
            Backend::Postgres => {
                let pool = admin(&self.url).await;
                let n = sqlx::query(sql)
                    .execute(&pool)
                    .await
                    .expect("statement")
                    .rows_affected();
                pool.close().await;
                n
            }
        }
    }

    async fn sqlite_pool(&self) -> sqlx::SqlitePool {
        let path = self.url.trim_start_matches("sqlite://");
        let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
        sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .expect("open test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((name, server)) = self.pg.take() else {
            return;
        };
        // Drop from a thread of its own: this may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&server)
                    .await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}
