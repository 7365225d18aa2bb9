//! Writing messages into the outbox inside the caller's transaction.

use std::time::SystemTime;

use async_trait::async_trait;
use waybill_core::Message;

use crate::error::OutboxError;
use crate::row::{check_enqueue, unix_ms};

/// Largest message (payload plus headers) accepted by default: 1 MiB, Kafka's default.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// An open transaction the outbox can write into: `sqlx::Transaction` on PostgreSQL, SQLite or
/// MySQL/MariaDB. Sealed; waybill never commits or rolls it back.
#[async_trait]
pub trait OutboxTransaction: sealed::Sealed + Send {
    /// Inserts the rows of `messages` for `topic`, in order, already checked, to be relayed
    /// no earlier than `not_before` (Unix milliseconds; `None`: at once).
    #[doc(hidden)]
    async fn insert_rows(
        &mut self,
        topic: &str,
        messages: &[Message],
        not_before: Option<i64>,
    ) -> Result<(), OutboxError>;
}

pub(crate) mod sealed {
    pub trait Sealed {}
    #[cfg(feature = "postgres")]
    impl Sealed for sqlx::Transaction<'_, sqlx::Postgres> {}
    #[cfg(feature = "sqlite")]
    impl Sealed for sqlx::Transaction<'_, sqlx::Sqlite> {}
    #[cfg(feature = "mysql")]
    impl Sealed for sqlx::Transaction<'_, sqlx::MySql> {}
}

/// The transactional outbox.
///
/// `enqueue` writes a message in the caller's open transaction and never commits it: the
/// message exists exactly when the business data it belongs to exists. A [`crate::Relay`]
/// publishes committed rows with confirms and deletes them afterwards.
///
/// ```no_run
/// use waybill_core::Message;
/// use waybill_outbox::Outbox;
///
/// # async fn place_order(pool: sqlx::SqlitePool) -> Result<(), Box<dyn std::error::Error>> {
/// waybill_outbox::sqlite::migrate(&pool).await?; // once, at start
/// let outbox = Outbox::new();
/// let mut tx = pool.begin().await?;
/// sqlx::query("INSERT INTO orders (id, amount) VALUES (?, ?)")
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
pub struct Outbox {
    max_message_bytes: usize,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
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

    /// Writes `message` for `topic` in `tx`, which the caller commits or rolls back.
    ///
    /// # Errors
    /// [`OutboxError::Config`] for an unusable topic, [`OutboxError::Oversized`] above the
    /// limit (nothing written), [`OutboxError::DuplicateId`] when the id is already queued,
    /// [`OutboxError::NotMigrated`] without the tables, or a database error. After a database
    /// error on PostgreSQL the transaction is aborted and must roll back; on MySQL the failed
    /// statement is undone and the transaction goes on (a deadlock rolls all of it back).
    pub async fn enqueue<T: OutboxTransaction>(
        &self,
        tx: &mut T,
        topic: &str,
        message: &Message,
    ) -> Result<(), OutboxError> {
        check_enqueue(topic, message, self.max_message_bytes)?;
        insert_traced(tx, topic, std::slice::from_ref(message), None).await
    }

    /// Writes `message` for `topic` in `tx`, to be published no earlier than `not_before`
    /// (scheduled publish: a reminder, a delayed retry of a business step).
    ///
    /// **Order.** The row takes its place in its key's order when it is written: later
    /// messages of the same key wait behind it until it is due and confirmed, exactly as they
    /// wait behind a row that failed and was parked. Schedule messages of keys that must not
    /// stall, or give scheduled messages a key of their own. A time in the past publishes at
    /// once. The relay picks a due row up within its `poll_interval` (one second by default),
    /// and compares `not_before` with the database server's clock.
    ///
    /// # Errors
    /// As for [`Outbox::enqueue`].
    pub async fn enqueue_at<T: OutboxTransaction>(
        &self,
        tx: &mut T,
        topic: &str,
        message: &Message,
        not_before: SystemTime,
    ) -> Result<(), OutboxError> {
        check_enqueue(topic, message, self.max_message_bytes)?;
        let not_before = Some(unix_ms(not_before));
        insert_traced(tx, topic, std::slice::from_ref(message), not_before).await
    }

    /// Writes several messages for `topic` in `tx`, in order.
    ///
    /// # Errors
    /// As for [`Outbox::enqueue`]; nothing is written when any message is refused up front.
    pub async fn enqueue_batch<T: OutboxTransaction>(
        &self,
        tx: &mut T,
        topic: &str,
        messages: &[Message],
    ) -> Result<(), OutboxError> {
        for m in messages {
            check_enqueue(topic, m, self.max_message_bytes)?;
        }
        if messages.is_empty() {
            return Ok(());
        }
        insert_traced(tx, topic, messages, None).await
    }
}

/// Inserts `messages` inside one `create {topic}` span each; with the `otel` feature and an
/// OpenTelemetry layer, the rows carry their span's context (see [`waybill_core::spans`]).
async fn insert_traced<T: OutboxTransaction>(
    tx: &mut T,
    topic: &str,
    messages: &[Message],
    not_before: Option<i64>,
) -> Result<(), OutboxError> {
    let mut spans = Vec::with_capacity(messages.len());
    let mut carrying = Vec::new();
    for m in messages {
        let (span, copy) = waybill_core::spans::create_span(topic, m);
        spans.push(span);
        carrying.extend(copy);
    }
    let rows = if carrying.len() == messages.len() {
        &carrying[..]
    } else {
        messages
    };
    let inserted = tx.insert_rows(topic, rows, not_before).await;
    drop(spans); // the spans cover the insert
    inserted
}
