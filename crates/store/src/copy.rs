//! `chargegate db copy`: a verbatim copy of a whole database into an empty one, between
//! backends (SQLite to PostgreSQL and back).
//!
//! Rows travel as plain values in the column order of [`crate::tables::TABLES`] (not
//! domain types): a copy must carry every row exactly as it is, ids included. The source
//! streams chunks table by table in foreign-key order from one read transaction (a
//! consistent snapshot, even while a server keeps writing); the target writes them in one
//! transaction and commits only when it has seen [`Chunk::End`], so a copy that stops
//! half-way leaves the target as empty as it was. A small channel joins the two, so memory
//! stays bounded whatever the database's size.

use chargegate_core::store::{AdminStore, StoreError, StoreResult};
use tokio::sync::mpsc;

use crate::tables::Chunk;
use crate::{DatabaseUrl, PostgresStore, SqliteStore, StoreOptions};

/// Rows copied per table, in copy order.
pub type CopySummary = Vec<(&'static str, u64)>;

/// A backend as the copy needs it.
enum Opened {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Opened {
    async fn open(url: &DatabaseUrl, options: &StoreOptions) -> StoreResult<Opened> {
        let opened = match url {
            DatabaseUrl::Sqlite(path) => Opened::Sqlite(SqliteStore::open(path, options).await?),
            DatabaseUrl::Postgres(url) => {
                Opened::Postgres(PostgresStore::open(url, options).await?)
            }
        };
        opened.admin().migrate().await?;
        Ok(opened)
    }

    fn admin(&self) -> &dyn AdminStore {
        match self {
            Opened::Sqlite(s) => s,
            Opened::Postgres(s) => s,
        }
    }

    async fn is_empty(&self) -> StoreResult<bool> {
        match self {
            Opened::Sqlite(s) => s.is_empty().await,
            Opened::Postgres(s) => s.is_empty().await,
        }
    }

    async fn export(&self, sink: mpsc::Sender<Chunk>) -> StoreResult<()> {
        match self {
            Opened::Sqlite(s) => s.export(sink).await,
            Opened::Postgres(s) => s.export(sink).await,
        }
    }

    async fn import(&self, source: mpsc::Receiver<Chunk>) -> StoreResult<CopySummary> {
        match self {
            Opened::Sqlite(s) => s.import(source).await,
            Opened::Postgres(s) => s.import(source).await,
        }
    }
}

/// Copies every row of `source` into the empty `target` (both migrated first). The
/// target commits only after the source's last chunk, so a failure on either side leaves
/// the target empty.
pub async fn copy(
    source: &DatabaseUrl,
    target: &DatabaseUrl,
    options: &StoreOptions,
) -> StoreResult<CopySummary> {
    let from = Opened::open(source, options).await?;
    let into = Opened::open(target, options).await?;
    if !into.is_empty().await? {
        return Err(StoreError::Conflict(format!(
            "the target database {target} is not empty; db copy only fills an empty database"
        )));
    }
    let (tx, rx) = mpsc::channel(4);
    // If the export fails, its sender drops: the target sees the channel close before
    // `End` and rolls back.
    let (exported, imported) = tokio::join!(from.export(tx), into.import(rx));
    from.admin().close().await;
    into.admin().close().await;
    match (exported, imported) {
        (Ok(()), Ok(summary)) => Ok(summary),
        (Ok(()), Err(e)) | (Err(e), Ok(_)) => Err(e),
        // One side's failure stopped the other; say both, the cause is among them.
        (Err(out), Err(into)) => Err(StoreError::Internal(format!(
            "reading the source: {out}; writing the target: {into}"
        ))),
    }
}

/// Every chunk a database exports, ending with [`Chunk::End`]: for comparing databases.
pub async fn dump(url: &DatabaseUrl, options: &StoreOptions) -> StoreResult<Vec<Chunk>> {
    let from = Opened::open(url, options).await?;
    let (tx, mut rx) = mpsc::channel(4);
    let collect = async move {
        let mut all = Vec::new();
        while let Some(chunk) = rx.recv().await {
            all.push(chunk);
        }
        all
    };
    let (exported, all) = tokio::join!(from.export(tx), collect);
    from.admin().close().await;
    exported.map(|()| all)
}

/// Writes `chunks` into the empty database at `url` as a copy would; without a final
/// [`Chunk::End`] the import must leave nothing behind.
pub async fn import(
    url: &DatabaseUrl,
    options: &StoreOptions,
    chunks: Vec<Chunk>,
) -> StoreResult<CopySummary> {
    let into = Opened::open(url, options).await?;
    let (tx, rx) = mpsc::channel(4);
    let feed = async move {
        for chunk in chunks {
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
    };
    let ((), imported) = tokio::join!(feed, into.import(rx));
    into.admin().close().await;
    imported
}

/// Whether the database at `url` holds no operator, user, token or charge.
pub async fn is_empty(url: &DatabaseUrl, options: &StoreOptions) -> StoreResult<bool> {
    let opened = Opened::open(url, options).await?;
    let empty = opened.is_empty().await;
    opened.admin().close().await;
    empty
}
