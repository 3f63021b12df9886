//! User and operator administration on PostgreSQL: fixed statements, each change in one
//! transaction.

use async_trait::async_trait;
use chargegate_core::accounts::{AccountAdmin, OperatorSummary, UserChange, UserSummary};
use chargegate_core::clock::Timestamp;
use chargegate_core::store::StoreResult;
use chargegate_core::text::{OperatorCode, Username};
use sqlx::Row;
use sqlx::postgres::PgConnection;

use super::{PostgresStore, sql_err};
use crate::audit_rows::{UserRow, status_counts};
use crate::rows;

/// Revokes a user's live tokens (the affected rows) and ends their console sessions.
const REVOKE_TOKENS_SQL: &str = "WITH ended AS (DELETE FROM console_sessions WHERE user_id = $1) \
     UPDATE tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL";

/// The user's id, locked for the rest of the transaction.
async fn lock_user(
    conn: &mut PgConnection,
    operator_id: i64,
    username: &str,
) -> StoreResult<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM users WHERE operator_id = $1 AND username = $2 FOR UPDATE")
        .bind(operator_id)
        .bind(username)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_err)
}

#[async_trait]
impl AccountAdmin for PostgresStore {
    async fn list_users(&self, operator_id: Option<i64>) -> StoreResult<Vec<UserSummary>> {
        let found = sqlx::query(
            "SELECT o.code, u.username, u.enabled, u.last_login_at, a.attempts, a.locked_until \
             FROM users u JOIN operators o ON o.id = u.operator_id \
             LEFT JOIN login_attempts a ON a.organisation = o.code AND a.username = u.username \
             WHERE $1::bigint IS NULL OR u.operator_id = $1 \
             ORDER BY o.code, u.username",
        )
        .bind(operator_id)
        .fetch_all(&self.pool)
        .await
        .map_err(sql_err)?;
        found
            .iter()
            .map(|r| {
                let row = (|| -> Result<UserRow, sqlx::Error> {
                    Ok(UserRow {
                        operator: r.try_get(0)?,
                        username: r.try_get(1)?,
                        enabled: r.try_get(2)?,
                        last_login_at: r.try_get(3)?,
                        attempts: r.try_get(4)?,
                        locked_until: r.try_get(5)?,
                    })
                })()
                .map_err(sql_err)?;
                row.into_summary()
            })
            .collect()
    }

    async fn list_operators(&self) -> StoreResult<Vec<OperatorSummary>> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        let operators = sqlx::query(
            "SELECT o.id, o.code, o.name, o.local_currency, \
                    (SELECT count(*) FROM users u WHERE u.operator_id = o.id) AS users \
             FROM operators o ORDER BY o.code",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_err)?;
        let counts = sqlx::query(
            "SELECT operator_id, status, count(*) AS n FROM charges GROUP BY operator_id, status",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(sql_err)?;
        tx.rollback().await.map_err(sql_err)?;
        let counts = counts
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<i64, _>("operator_id")?,
                    r.try_get::<String, _>("status")?,
                    r.try_get::<i64, _>("n")?,
                ))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(sql_err)?;
        operators
            .iter()
            .map(|r| {
                let (id, code, name, currency, users) =
                    (|| -> Result<(i64, String, String, String, i64), sqlx::Error> {
                        Ok((
                            r.try_get("id")?,
                            r.try_get("code")?,
                            r.try_get("name")?,
                            r.try_get("local_currency")?,
                            r.try_get("users")?,
                        ))
                    })()
                    .map_err(sql_err)?;
                let mine = counts
                    .iter()
                    .filter(|(op, _, _)| *op == id)
                    .map(|(_, status, n)| (status.clone(), *n));
                Ok(OperatorSummary {
                    charges: status_counts(mine)?,
                    operator: rows::operator(id, code, name, &currency)?,
                    users: u64::try_from(users).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn set_user_enabled(
        &self,
        operator_id: i64,
        username: &Username,
        enabled: bool,
        now: Timestamp,
    ) -> StoreResult<Option<UserChange>> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        let Some(id) = lock_user(&mut tx, operator_id, username.as_str()).await? else {
            return Ok(None);
        };
        sqlx::query("UPDATE users SET enabled = $2 WHERE id = $1")
            .bind(id)
            .bind(enabled)
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        let revoked = if enabled {
            0
        } else {
            sqlx::query(REVOKE_TOKENS_SQL)
                .bind(id)
                .bind(now.unix())
                .execute(&mut *tx)
                .await
                .map_err(sql_err)?
                .rows_affected()
        };
        tx.commit().await.map_err(sql_err)?;
        Ok(Some(UserChange {
            tokens_revoked: revoked,
        }))
    }

    async fn set_user_password(
        &self,
        operator_id: i64,
        username: &Username,
        password_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<UserChange>> {
        let mut tx = self.pool.begin().await.map_err(sql_err)?;
        let Some(id) = lock_user(&mut tx, operator_id, username.as_str()).await? else {
            return Ok(None);
        };
        sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
            .bind(id)
            .bind(password_hash)
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?;
        let revoked = sqlx::query(REVOKE_TOKENS_SQL)
            .bind(id)
            .bind(now.unix())
            .execute(&mut *tx)
            .await
            .map_err(sql_err)?
            .rows_affected();
        tx.commit().await.map_err(sql_err)?;
        Ok(Some(UserChange {
            tokens_revoked: revoked,
        }))
    }

    async fn clear_login_failures(
        &self,
        organisation: &OperatorCode,
        username: &Username,
    ) -> StoreResult<bool> {
        let done =
            sqlx::query("DELETE FROM login_attempts WHERE organisation = $1 AND username = $2")
                .bind(organisation.as_str())
                .bind(username.as_str())
                .execute(&self.pool)
                .await
                .map_err(sql_err)?;
        Ok(done.rows_affected() > 0)
    }
}
