//! User and operator administration on SQLite. Reads run on reader connections; each
//! change is one unit of work on the writer thread.

use async_trait::async_trait;
use chargegate_core::accounts::{AccountAdmin, OperatorSummary, UserChange, UserSummary};
use chargegate_core::clock::Timestamp;
use chargegate_core::store::StoreResult;
use chargegate_core::text::{OperatorCode, Username};
use rusqlite::{Connection, OptionalExtension, params};

use super::SqliteStore;
use crate::audit_rows::{UserRow, status_counts};
use crate::error::from_sqlite;
use crate::rows;

/// Revokes every live token of a user and ends their console sessions; answers how many
/// tokens.
fn revoke_tokens(conn: &Connection, user_id: i64, now: i64) -> StoreResult<UserChange> {
    let n = conn
        .prepare_cached(
            "UPDATE tokens SET revoked_at = ?2 WHERE user_id = ?1 AND revoked_at IS NULL",
        )
        .and_then(|mut s| s.execute(params![user_id, now]))
        .map_err(from_sqlite)?;
    // Console sessions end with the tokens.
    conn.prepare_cached("DELETE FROM console_sessions WHERE user_id = ?1")
        .and_then(|mut s| s.execute([user_id]))
        .map_err(from_sqlite)?;
    Ok(UserChange {
        tokens_revoked: n as u64,
    })
}

fn list_users(conn: &Connection, operator_id: Option<i64>) -> StoreResult<Vec<UserSummary>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT o.code, u.username, u.enabled, u.last_login_at, a.attempts, a.locked_until \
             FROM users u JOIN operators o ON o.id = u.operator_id \
             LEFT JOIN login_attempts a ON a.organisation = o.code AND a.username = u.username \
             WHERE ?1 IS NULL OR u.operator_id = ?1 \
             ORDER BY o.code, u.username",
        )
        .map_err(from_sqlite)?;
    let rows = stmt
        .query_map([operator_id], |r| {
            Ok(UserRow {
                operator: r.get(0)?,
                username: r.get(1)?,
                enabled: r.get(2)?,
                last_login_at: r.get(3)?,
                attempts: r.get(4)?,
                locked_until: r.get(5)?,
            })
        })
        .map_err(from_sqlite)?;
    rows.map(|r| r.map_err(from_sqlite)?.into_summary())
        .collect()
}

fn list_operators(conn: &Connection) -> StoreResult<Vec<OperatorSummary>> {
    let tx = conn.unchecked_transaction().map_err(from_sqlite)?;
    let operators = tx
        .prepare_cached(
            "SELECT o.id, o.code, o.name, o.local_currency, \
                    (SELECT count(*) FROM users u WHERE u.operator_id = o.id) AS users \
             FROM operators o ORDER BY o.code",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(from_sqlite)?;
    let mut counts = tx
        .prepare_cached(
            "SELECT status, count(*) FROM charges WHERE operator_id = ?1 GROUP BY status",
        )
        .map_err(from_sqlite)?;
    let mut summaries = Vec::with_capacity(operators.len());
    for (id, code, name, currency, users) in operators {
        let found = counts
            .query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(from_sqlite)?;
        summaries.push(OperatorSummary {
            operator: rows::operator(id, code, name, &currency)?,
            users: u64::try_from(users).unwrap_or(0),
            charges: status_counts(found)?,
        });
    }
    drop(counts);
    tx.commit().map_err(from_sqlite)?;
    Ok(summaries)
}

fn user_id(conn: &Connection, operator_id: i64, username: &str) -> StoreResult<Option<i64>> {
    conn.prepare_cached("SELECT id FROM users WHERE operator_id = ?1 AND username = ?2")
        .and_then(|mut s| {
            s.query_row(params![operator_id, username], |r| r.get(0))
                .optional()
        })
        .map_err(from_sqlite)
}

#[async_trait]
impl AccountAdmin for SqliteStore {
    async fn list_users(&self, operator_id: Option<i64>) -> StoreResult<Vec<UserSummary>> {
        self.readers.read(|conn| list_users(conn, operator_id))
    }

    async fn list_operators(&self) -> StoreResult<Vec<OperatorSummary>> {
        self.readers.read(list_operators)
    }

    async fn set_user_enabled(
        &self,
        operator_id: i64,
        username: &Username,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<Option<UserChange>> {
        let username = username.as_str().to_owned();
        self.writer
            .write(1, move |conn| {
                let Some(id) = user_id(conn, operator_id, &username)? else {
                    return Ok(None);
                };
                conn.prepare_cached("UPDATE users SET enabled = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id, enabled]))
                    .map_err(from_sqlite)?;
                if enabled {
                    Ok(Some(UserChange { tokens_revoked: 0 }))
                } else {
                    revoke_tokens(conn, id, now.unix()).map(Some)
                }
            })
            .await
    }

    async fn set_user_password(
        &self,
        operator_id: i64,
        username: &Username,
        password_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<UserChange>> {
        let (username, hash) = (username.as_str().to_owned(), password_hash.to_owned());
        self.writer
            .write(1, move |conn| {
                let Some(id) = user_id(conn, operator_id, &username)? else {
                    return Ok(None);
                };
                conn.prepare_cached("UPDATE users SET password_hash = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(params![id, hash]))
                    .map_err(from_sqlite)?;
                revoke_tokens(conn, id, now.unix()).map(Some)
            })
            .await
    }

    async fn clear_login_failures(
        &self,
        organisation: &OperatorCode,
        username: &Username,
    ) -> StoreResult<bool> {
        let (organisation, username) = (
            organisation.as_str().to_owned(),
            username.as_str().to_owned(),
        );
        self.writer
            .write(1, move |conn| {
                conn.prepare_cached(
                    "DELETE FROM login_attempts WHERE organisation = ?1 AND username = ?2",
                )
                .and_then(|mut s| s.execute([&organisation, &username]))
                .map(|n| n > 0)
                .map_err(from_sqlite)
            })
            .await
    }
}
