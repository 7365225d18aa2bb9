//! The producing side: placing an order writes the order row and its outbox row in one
//! transaction.

use waybill_core::BoxError;
use waybill_outbox::Outbox;

use super::orders::order;
use super::service_db::ServiceDb;

/// The shop's tables and its outbox.
pub struct Shop {
    db: ServiceDb,
    outbox: Outbox,
}

impl Shop {
    /// Applies the waybill migrations and creates the `orders` table.
    ///
    /// # Errors
    /// A database error.
    pub async fn create(db: ServiceDb) -> Result<Self, BoxError> {
        db.migrate().await?;
        db.execute(
            "CREATE TABLE IF NOT EXISTS orders (id VARCHAR(64) PRIMARY KEY, body TEXT NOT NULL)",
        )
        .await?;
        Ok(Self {
            db,
            outbox: Outbox::new(),
        })
    }

    /// Places order `i` on `topic`: the order row and the message commit together or not at
    /// all.
    ///
    /// # Errors
    /// A database error; then neither row exists.
    pub async fn place(&self, topic: &str, i: u64) -> Result<(), BoxError> {
        let message = order(i);
        let body = String::from_utf8_lossy(message.payload()).into_owned();
        const INSERT: &str = "INSERT INTO orders (id, body) VALUES (?, ?)";
        match &self.db {
            ServiceDb::Sqlite { pool, .. } => {
                let mut tx = pool.begin().await?;
                sqlx::query(INSERT)
                    .bind(message.key())
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
                self.outbox.enqueue(&mut tx, topic, &message).await?;
                tx.commit().await?;
            }
            ServiceDb::Mysql { pool, .. } => {
                let mut tx = pool.begin().await?;
                sqlx::query(INSERT)
                    .bind(message.key())
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
                self.outbox.enqueue(&mut tx, topic, &message).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Orders in the table.
    ///
    /// # Errors
    /// A database error.
    pub async fn orders(&self) -> sqlx::Result<u64> {
        self.db.count("SELECT count(*) FROM orders").await
    }
}
