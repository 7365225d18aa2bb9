//! The producing side: placing an order writes the order row and its outbox row in one
//! transaction.

use sqlx::SqlitePool;
use waybill_outbox::{Outbox, OutboxError};

use super::orders::order;

/// The shop's tables and its outbox.
pub struct Shop {
    pool: SqlitePool,
    outbox: Outbox,
}

impl Shop {
    /// Creates the `orders` table (the waybill tables come from the migrations).
    ///
    /// # Errors
    /// A database error.
    pub async fn create(pool: SqlitePool) -> Result<Self, OutboxError> {
        waybill_outbox::sqlite::migrate(&pool).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS orders (id TEXT PRIMARY KEY, body TEXT NOT NULL)")
            .execute(&pool)
            .await
            .map_err(OutboxError::Database)?;
        Ok(Self {
            pool,
            outbox: Outbox::new(),
        })
    }

    /// Places order `i` on `topic`: the order row and the message commit together or not at
    /// all.
    ///
    /// # Errors
    /// A database error; then neither row exists.
    pub async fn place(&self, topic: &str, i: u64) -> Result<(), OutboxError> {
        let message = order(i);
        let mut tx = self.pool.begin().await.map_err(OutboxError::Database)?;
        sqlx::query("INSERT INTO orders (id, body) VALUES (?1, ?2)")
            .bind(message.key())
            .bind(String::from_utf8_lossy(message.payload()).into_owned())
            .execute(&mut *tx)
            .await
            .map_err(OutboxError::Database)?;
        self.outbox.enqueue(&mut tx, topic, &message).await?;
        tx.commit().await.map_err(OutboxError::Database)
    }

    /// Orders in the table.
    ///
    /// # Errors
    /// A database error.
    pub async fn orders(&self) -> Result<u64, OutboxError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&self.pool)
            .await
            .map_err(OutboxError::Database)?;
        Ok(n as u64)
    }
}
