//! A fresh database per test.

use sqlx::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
}

pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    /// Keeps the SQLite file's directory alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
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
                }
            }
        }
    }

    /// Runs a query returning one integer, straight against the database: for checking
    /// what the API cannot show (history rows, decisions).
    pub async fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let path = self.url.trim_start_matches("sqlite://");
                let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
                let pool = sqlx::sqlite::SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(opts)
                    .await
                    .expect("open test database");
                let row = sqlx::query(sql).fetch_one(&pool).await.expect("query");
                let n: i64 = row.try_get(0).expect("an integer");
                pool.close().await;
                n
            }
        }
    }
}
