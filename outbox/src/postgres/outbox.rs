//! Writing messages into the outbox inside the caller's transaction.

use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};
use waybill_core::{validate_name, Message};

use super::rows::{created_at_ms, size_of};
use crate::error::{classify, OutboxError};

/// Largest message (payload plus headers) accepted by default: 1 MiB, Kafka's default.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// The outbox on PostgreSQL.
///
/// `enqueue` writes a message in the caller's open transaction and never commits it: the
/// message exists exactly when the business data it belongs to exists. A relay
/// ([`crate::PgRelay`]) publishes committed rows with confirms and deletes them afterwards.
///
/// ```no_run
/// use waybill_core::Message;
/// use waybill_outbox::PgOutbox;
///
/// # async fn place_order(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let outbox = PgOutbox::new();
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO orders (id, amount) VALUES ($1, $2)")
///     .bind(42_i64)
///     .bind(100_i64)
///     .execute(&mut *tx)
///     .await?;
/// outbox
///     .enqueue(&mut tx, "orders", &Message::new(r#"{"id":42}"#).with_key("order-42"))
///     .await?;
/// tx.commit().await?; // both rows or neither
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct PgOutbox {
    max_message_bytes: usize,
}

impl Default for PgOutbox {
    fn default() -> Self {
        Self::new()
    }
}

impl PgOutbox {
    /// An outbox accepting messages up to [`DEFAULT_MAX_MESSAGE_BYTES`].
    pub fn new() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// An outbox with another size limit (match the broker's limit).
    pub fn with_max_message_bytes(max_message_bytes: usize) -> Self {
        Self { max_message_bytes }
    }

    /// Creates or updates the waybill tables (outbox, shard leases, inbox). Idempotent.
    ///
    /// # Errors
    /// [`OutboxError::Migration`] when a migration fails or the recorded ones do not match.
    pub async fn migrate(pool: &PgPool) -> Result<(), OutboxError> {
        sqlx::migrate!("./migrations/postgres").run(pool).await?;
        Ok(())
    }

    /// Writes `message` for `topic` in `tx`, which the caller commits or rolls back.
    ///
    /// # Errors
    /// [`OutboxError::Config`] for an unusable topic, [`OutboxError::Oversized`] above the
    /// limit (nothing written), [`OutboxError::DuplicateId`] when the id is already queued,
    /// [`OutboxError::NotMigrated`] without the tables, or a database error. After a
    /// database error the transaction is aborted, as PostgreSQL does.
    pub async fn enqueue(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        topic: &str,
        message: &Message,
    ) -> Result<(), OutboxError> {
        self.check(topic, message)?;
        sqlx::query(
            "INSERT INTO waybill_outbox (message_id, topic, key, payload, headers, created_at) \
             VALUES ($1, $2, $3, $4, $5, to_timestamp($6::double precision / 1000))",
        )
        .bind(message.id().as_uuid())
        .bind(topic)
        .bind(message.key())
        .bind(message.payload().as_ref())
        .bind(Json(message.headers()))
        .bind(created_at_ms(message))
        .execute(&mut **tx)
        .await
        .map_err(|e| classify(e, Some(message.id())))?;
        Ok(())
    }

    /// Writes several messages in `tx` with one statement, in order.
    ///
    /// # Errors
    /// As for [`PgOutbox::enqueue`]; nothing is written when any message is refused.
    pub async fn enqueue_batch(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        topic: &str,
        messages: &[Message],
    ) -> Result<(), OutboxError> {
        for m in messages {
            self.check(topic, m)?;
        }
        if messages.is_empty() {
            return Ok(());
        }
        let ids: Vec<uuid::Uuid> = messages.iter().map(|m| *m.id().as_uuid()).collect();
        let keys: Vec<Option<String>> = messages
            .iter()
            .map(|m| m.key().map(str::to_owned))
            .collect();
        let payloads: Vec<Vec<u8>> = messages.iter().map(|m| m.payload().to_vec()).collect();
        let headers: Vec<serde_json::Value> = messages
            .iter()
            .map(|m| serde_json::to_value(m.headers()).unwrap_or_default())
            .collect();
        let created: Vec<i64> = messages.iter().map(created_at_ms).collect();
        sqlx::query(
            "INSERT INTO waybill_outbox (message_id, topic, key, payload, headers, created_at) \
             SELECT id, $2, key, payload, headers, to_timestamp(created::double precision / 1000) \
             FROM UNNEST($1::uuid[], $3::text[], $4::bytea[], $5::jsonb[], $6::bigint[]) \
                  WITH ORDINALITY AS t(id, key, payload, headers, created, n) ORDER BY n",
        )
        .bind(&ids)
        .bind(topic)
        .bind(&keys)
        .bind(&payloads)
        .bind(&headers)
        .bind(&created)
        .execute(&mut **tx)
        .await
        .map_err(|e| classify(e, messages.first().map(Message::id)))?;
        Ok(())
    }

    fn check(&self, topic: &str, message: &Message) -> Result<(), OutboxError> {
        validate_name("topic", topic)?;
        let size = size_of(message);
        if size > self.max_message_bytes {
            return Err(OutboxError::Oversized {
                size,
                limit: self.max_message_bytes,
            });
        }
        Ok(())
    }
}
