//! Opening the configured database: one place that parses the URL, applies the pool
//! settings, migrates, and names the database in messages without its password.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use chargegate_core::{Database, StoreError};
use chargegate_store::{DatabaseUrl, StoreOptions};

use crate::config::Settings;

/// The database as messages and logs name it: a SQLite URL with its file's absolute path
/// (a relative one depends on the directory a command runs in), a PostgreSQL URL without
/// its password.
pub fn database_label(url: &str) -> String {
    match DatabaseUrl::parse(url) {
        Ok(DatabaseUrl::Sqlite(path)) => {
            let path = std::path::absolute(&path).unwrap_or(path);
            format!("sqlite://{}", path.display())
        }
        _ => chargegate_store::redact(url),
    }
}

/// Opens the configured database and applies pending migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Database>> {
    open_url(settings, &settings.database_url).await
}

/// Opens the database at `url` with the configured pool settings, and migrates it.
pub async fn open_url(settings: &Settings, url: &str) -> anyhow::Result<Arc<dyn Database>> {
    let parsed = DatabaseUrl::parse(url)?;
    let store = chargegate_store::open(&parsed, &store_options(settings))
        .await
        .map_err(|e| naming_the_database(e, url, "cannot open database"))?;
    store
        .migrate()
        .await
        .map_err(|e| naming_the_database(e, url, "cannot migrate database"))?;
    Ok(store)
}

/// A store error that names the database once: as the store said it when its message
/// already names it, else after `doing` and the database's label.
pub fn naming_the_database(e: StoreError, url: &str, doing: &str) -> anyhow::Error {
    let message = match &e {
        StoreError::Unavailable(m)
        | StoreError::Conflict(m)
        | StoreError::Internal(m)
        | StoreError::OutcomeUnknown(m) => m,
    };
    let named = match DatabaseUrl::parse(url) {
        Ok(DatabaseUrl::Sqlite(path)) => message.contains(&path.display().to_string()),
        _ => message.contains(&chargegate_store::redact(url)),
    };
    if named {
        anyhow!(message.clone())
    } else {
        anyhow!(e).context(format!("{doing} {}", database_label(url)))
    }
}

pub fn store_options(settings: &Settings) -> StoreOptions {
    StoreOptions {
        max_connections: settings.db_max_connections,
        acquire_timeout: Duration::from_secs(settings.db_timeout),
    }
}
