//! Inserting outbox rows on SQLite.

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{Sqlite, Transaction};
use waybill_core::Message;

use crate::error::{classify, OutboxError};
use crate::outbox::OutboxTransaction;
use crate::row::{created_at_ms, now_ms, shard_hash};

#[async_trait]
impl OutboxTransaction for Transaction<'_, Sqlite> {
    async fn insert_rows(
        &mut self,
        topic: &str,
        messages: &[Message],
        not_before: Option<i64>,
    ) -> Result<(), OutboxError> {
        let now = now_ms();
        let available = not_before.map_or(now, |at| at.max(now));
        // One prepared statement per row: SQLite runs in process, so there is no round trip
        // to save by batching statements.
        for message in messages {
            sqlx::query(
                "INSERT INTO waybill_outbox (message_id, topic, key, shard_hash, payload, \
                   headers, created_at_ms, enqueued_at_ms, available_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .bind(message.id().as_uuid())
            .bind(topic)
            .bind(message.key())
            .bind(shard_hash(message))
            .bind(message.payload().as_ref())
            .bind(Json(message.headers()))
            .bind(created_at_ms(message))
            .bind(now)
            .bind(available)
            .execute(&mut **self)
            .await
            .map_err(|e| classify(e, Some(message.id())))?;
        }
        Ok(())
    }
}
