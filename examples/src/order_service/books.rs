//! The consumer's effect: the billing books in the service's SQLite database.

use std::sync::Arc;

use sqlx::SqlitePool;
use waybill_core::{handler_fn, Handler, HandlerError, IncomingMessage};
use waybill_outbox::SqliteIdempotencyStore;

use super::orders::amount;

/// The billing books: one row per applied order. Nothing stops a second row for the same
/// order except the inbox, so applying an order twice would show.
#[derive(Clone)]
pub struct Books {
    pool: SqlitePool,
    inbox: Arc<SqliteIdempotencyStore>,
}

impl Books {
    /// Creates the `billing` table.
    ///
    /// # Errors
    /// A database error.
    pub async fn create(
        pool: SqlitePool,
        inbox: Arc<SqliteIdempotencyStore>,
    ) -> sqlx::Result<Self> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS billing \
             (n INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, amount INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(Self { pool, inbox })
    }

    /// The handler: parses the order (a malformed one is a permanent error, so it is
    /// dead-lettered), then writes the billing row and the inbox marker in one transaction.
    pub fn handler(&self) -> impl Handler {
        let books = self.clone();
        handler_fn(move |m: IncomingMessage| {
            let books = books.clone();
            async move {
                let amount = amount(m.message().payload())?;
                let order = m.message().key().unwrap_or_default().to_owned();
                let mut tx = books.pool.begin().await.map_err(HandlerError::transient)?;
                sqlx::query("INSERT INTO billing (order_id, amount) VALUES (?1, ?2)")
                    .bind(&order)
                    .bind(i64::try_from(amount).unwrap_or(i64::MAX))
                    .execute(&mut *tx)
                    .await
                    .map_err(HandlerError::transient)?;
                books
                    .inbox
                    .mark_done_in(&mut tx, &m)
                    .await
                    .map_err(HandlerError::transient)?;
                tx.commit().await.map_err(HandlerError::transient)?;
                Ok(())
            }
        })
    }

    /// Orders with at least one billing row.
    ///
    /// # Errors
    /// A database error.
    pub async fn orders(&self) -> sqlx::Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(DISTINCT order_id) FROM billing")
            .fetch_one(&self.pool)
            .await?;
        Ok(n as u64)
    }

    /// Orders billed more than once (must be zero).
    ///
    /// # Errors
    /// A database error.
    pub async fn applied_twice(&self) -> sqlx::Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT order_id FROM billing GROUP BY order_id HAVING count(*) > 1)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }
}
