//! Inserting outbox rows on MySQL and MariaDB.

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{MySql, QueryBuilder, Transaction};
use waybill_core::{Message, MessageId};

use crate::error::{classify, OutboxError};
use crate::outbox::OutboxTransaction;
use crate::row::{created_at_ms, now_ms, shard_hash};

/// Rows per INSERT statement (7 bound values each, far below the 65,535 placeholders MySQL
/// allows in one statement).
const ROWS_PER_STATEMENT: usize = 500;

#[async_trait]
impl OutboxTransaction for Transaction<'_, MySql> {
    async fn insert_rows(
        &mut self,
        topic: &str,
        messages: &[Message],
        not_before: Option<i64>,
    ) -> Result<(), OutboxError> {
        // The wait from now, in microseconds: DATETIME columns carry no time zone, so the due
        // time is the server's UTC_TIMESTAMP plus the wait rather than a converted instant.
        let wait_us = not_before.map_or(0, |at| (at - now_ms()).max(0).saturating_mul(1000));
        // One multi-row INSERT per chunk: the auto-increment seq follows the VALUES order, so
        // the rows keep the order of `messages`.
        for chunk in messages.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<MySql>::new(
                "INSERT INTO waybill_outbox (message_id, topic, `key`, shard_hash, payload, \
                   headers, created_at_ms, enqueued_at, available_at) ",
            );
            insert.push_values(chunk, |mut row, message| {
                row.push_bind(*message.id().as_uuid())
                    .push_bind(topic)
                    .push_bind(message.key())
                    .push_bind(shard_hash(message))
                    .push_bind(message.payload().as_ref())
                    .push_bind(Json(message.headers()))
                    .push_bind(created_at_ms(message))
                    .push_unseparated(", UTC_TIMESTAMP(6), UTC_TIMESTAMP(6) + INTERVAL ")
                    .push_bind_unseparated(wait_us)
                    .push_unseparated(" MICROSECOND");
            });
            if let Err(e) = insert.build().execute(&mut **self).await {
                let unique = e
                    .as_database_error()
                    .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation);
                let duplicate = if unique {
                    duplicate_of(self, chunk).await
                } else {
                    None
                };
                return Err(classify(e, duplicate));
            }
        }
        Ok(())
    }
}

/// After a failed INSERT of `chunk` (MySQL undid only that statement, so the transaction
/// still answers): the id that is already queued, or repeated within the chunk, for the
/// error; the first id when neither is found.
async fn duplicate_of(tx: &mut Transaction<'_, MySql>, chunk: &[Message]) -> Option<MessageId> {
    let mut lookup =
        QueryBuilder::<MySql>::new("SELECT message_id FROM waybill_outbox WHERE message_id IN (");
    let mut ids = lookup.separated(", ");
    for message in chunk {
        ids.push_bind(*message.id().as_uuid());
    }
    lookup.push(") LIMIT 1");
    let queued: Option<uuid::Uuid> = lookup
        .build_query_scalar()
        .fetch_optional(&mut **tx)
        .await
        .ok()
        .flatten();
    if let Some(id) = queued {
        return Some(MessageId::from_uuid(id));
    }
    let mut seen = std::collections::HashSet::new();
    chunk
        .iter()
        .map(Message::id)
        .find(|id| !seen.insert(*id))
        .or_else(|| chunk.first().map(Message::id))
}
