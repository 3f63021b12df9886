//! A fresh database per test, on either backend.
//!
//! PostgreSQL is found once per test process:
//! 1. `CHARGEGATE_TEST_POSTGRES_URL`, when set, is used as is (a server the caller runs);
//! 2. else `postgres://postgres@127.0.0.1:5432/postgres`.
//!
//! The harness installs, starts and configures nothing. When neither answers, every
//! PostgreSQL test fails, saying how to start the local cluster or which variable to set
//! (`.ci/run` installs and starts Debian's cluster before the tests).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

pub(crate) struct TestDb {
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
        // Blocking work (connection attempts) on a thread of its own, so
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

/// Where the tests look for PostgreSQL when `CHARGEGATE_TEST_POSTGRES_URL` is not set.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn find_postgres() -> Result<String, String> {
    match std::env::var("CHARGEGATE_TEST_POSTGRES_URL") {
        Ok(url) => can_connect(&url).map(|()| url.clone()).map_err(|e| {
            format!(
                "CHARGEGATE_TEST_POSTGRES_URL={} does not answer: {e}",
                chargegate_store::redact(&url)
            )
        }),
        Err(_) => can_connect(DEFAULT_URL)
            .map(|()| DEFAULT_URL.to_owned())
            .map_err(|e| {
                format!(
                    "{DEFAULT_URL} does not answer: {e}. Start the local cluster \
                     (`pg_ctlcluster --skip-systemctl-redirect 15 main start`, with trust \
                     authentication for postgres on 127.0.0.1) or point \
                     CHARGEGATE_TEST_POSTGRES_URL at a server where the tests may create \
                     and drop databases"
                )
            }),
    }
}

/// Fails the calling test, saying how to provide PostgreSQL, when there is none.
#[track_caller]
pub(crate) fn require_postgres(test: &str) {
    if let Err(why) = postgres_server() {
        panic!("no PostgreSQL for {test}: {why}");
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
    pub(crate) async fn new(backend: Backend) -> TestDb {
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
                static COUNTER: AtomicU32 = AtomicU32::new(0);
                let server = postgres_server()
                    .clone()
                    .unwrap_or_else(|why| panic!("no PostgreSQL: {why}"));
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
    pub(crate) fn sqlite_in(dir: &std::path::Path) -> TestDb {
        TestDb {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}", dir.join("chargegate.db").display()),
            _dir: None,
            pg: None,
        }
    }

    /// The same database reached through another URL (a proxy); dropping it drops nothing.
    pub(crate) fn through(&self, url: String) -> TestDb {
        TestDb {
            backend: self.backend,
            url,
            _dir: None,
            pg: None,
        }
    }

    /// `host:port` of a PostgreSQL URL.
    pub(crate) fn host_port(&self) -> String {
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
    pub(crate) async fn scalar(&self, sql: &str) -> i64 {
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
    pub(crate) async fn execute(&self, sql: &str) -> u64 {
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
