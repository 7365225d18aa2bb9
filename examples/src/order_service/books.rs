//! The consumer's effect: the billing books in the service's database.

use waybill_core::{handler_fn, Handler, HandlerError, IncomingMessage};

use super::orders::amount;
use super::service_db::ServiceDb;

/// The billing books: one row per applied order. Nothing stops a second row for the same
/// order except the inbox, so applying an order twice would show.
#[derive(Clone)]
pub struct Books {
    db: ServiceDb,
}

/// Writes the billing row of `order`.
const BILL: &str = "INSERT INTO billing (order_id, amount) VALUES (?, ?)";

impl Books {
    /// Creates the `billing` table.
    ///
    /// # Errors
    /// A database error.
    pub async fn create(db: ServiceDb) -> sqlx::Result<Self> {
        let ddl = match db {
            ServiceDb::Sqlite { .. } => {
                "CREATE TABLE IF NOT EXISTS billing \
                 (n INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, amount INTEGER NOT NULL)"
            }
            ServiceDb::Mysql { .. } => {
                "CREATE TABLE IF NOT EXISTS billing \
                 (n BIGINT AUTO_INCREMENT PRIMARY KEY, order_id VARCHAR(64) NOT NULL, amount BIGINT NOT NULL)"
            }
        };
        db.execute(ddl).await?;
        Ok(Self { db })
    }

    /// The handler: parses the order (a malformed one is a permanent error, so it is
    /// dead-lettered), then writes the billing row and the inbox marker in one transaction.
    pub fn handler(&self) -> impl Handler {
        let books = self.clone();
        handler_fn(move |m: IncomingMessage| {
            let books = books.clone();
            async move {
                let amount = amount(m.message().payload())?;
                let amount = i64::try_from(amount).unwrap_or(i64::MAX);
                let order = m.message().key().unwrap_or_default().to_owned();
                match &books.db {
                    ServiceDb::Sqlite { pool, inbox } => {
                        let mut tx = pool.begin().await.map_err(HandlerError::transient)?;
                        sqlx::query(BILL)
                            .bind(&order)
                            .bind(amount)
                            .execute(&mut *tx)
                            .await
                            .map_err(HandlerError::transient)?;
                        inbox
                            .mark_done_in(&mut tx, &m)
                            .await
                            .map_err(HandlerError::transient)?;
                        tx.commit().await.map_err(HandlerError::transient)?;
                    }
                    ServiceDb::Mysql { pool, inbox, .. } => {
                        let mut tx = pool.begin().await.map_err(HandlerError::transient)?;
                        sqlx::query(BILL)
                            .bind(&order)
                            .bind(amount)
                            .execute(&mut *tx)
                            .await
                            .map_err(HandlerError::transient)?;
                        inbox
                            .mark_done_in(&mut tx, &m)
                            .await
                            .map_err(HandlerError::transient)?;
                        tx.commit().await.map_err(HandlerError::transient)?;
                    }
                }
                Ok(())
            }
        })
    }

    /// Orders with at least one billing row.
    ///
    /// # Errors
    /// A database error.
    pub async fn orders(&self) -> sqlx::Result<u64> {
        self.db
            .count("SELECT count(DISTINCT order_id) FROM billing")
            .await
    }

    /// Orders billed more than once (must be zero).
    ///
    /// # Errors
    /// A database error.
    pub async fn applied_twice(&self) -> sqlx::Result<u64> {
        self.db
            .count(
                "SELECT count(*) FROM \
                 (SELECT order_id FROM billing GROUP BY order_id HAVING count(*) > 1) AS twice",
            )
            .await
    }
}
