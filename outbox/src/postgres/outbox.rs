//! Inserting outbox rows on PostgreSQL.

use async_trait::async_trait;
use sqlx::types::Json;
use sqlx::{Postgres, Transaction};
use waybill_core::Message;

use crate::error::{classify, OutboxError};
use crate::outbox::OutboxTransaction;
use crate::row::{created_at_ms, shard_hash};

#[async_trait]
impl OutboxTransaction for Transaction<'_, Postgres> {
    async fn insert_rows(
        &mut self,
        topic: &str,
        messages: &[Message],
        not_before: Option<i64>,
    ) -> Result<(), OutboxError> {
        let first = messages.first().map(Message::id);
        if let [message] = messages {
            sqlx::query(
                "INSERT INTO waybill_outbox \
                   (message_id, topic, key, shard_hash, payload, headers, created_at, \
                    available_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, to_timestamp($7::double precision / 1000), \
                         GREATEST(now(), to_timestamp($8::double precision / 1000)))",
            )
            .bind(message.id().as_uuid())
            .bind(topic)
            .bind(message.key())
            .bind(shard_hash(message))
            .bind(message.payload().as_ref())
            .bind(Json(message.headers()))
            .bind(created_at_ms(message))
            .bind(not_before)
            .execute(&mut **self)
            .await
            .map_err(|e| classify(e, first))?;
            return Ok(());
        }
        let ids: Vec<uuid::Uuid> = messages.iter().map(|m| *m.id().as_uuid()).collect();
        let keys: Vec<Option<&str>> = messages.iter().map(Message::key).collect();
        let hashes: Vec<i64> = messages.iter().map(shard_hash).collect();
        let payloads: Vec<&[u8]> = messages.iter().map(|m| m.payload().as_ref()).collect();
        let headers: Vec<Json<&waybill_core::Headers>> =
            messages.iter().map(|m| Json(m.headers())).collect();
        let created: Vec<i64> = messages.iter().map(created_at_ms).collect();
        sqlx::query(
            "INSERT INTO waybill_outbox \
               (message_id, topic, key, shard_hash, payload, headers, created_at, \
                available_at) \
             SELECT id, $2, key, hash, payload, headers, \
                    to_timestamp(created::double precision / 1000), \
                    GREATEST(now(), to_timestamp($8::double precision / 1000)) \
             FROM UNNEST($1::uuid[], $3::text[], $4::bigint[], $5::bytea[], $6::jsonb[], \
                         $7::bigint[]) \
                  WITH ORDINALITY AS t(id, key, hash, payload, headers, created, n) \
             ORDER BY n",
        )
        .bind(&ids)
        .bind(topic)
        .bind(&keys)
        .bind(&hashes)
        .bind(&payloads)
        .bind(&headers)
        .bind(&created)
        .bind(not_before)
        .execute(&mut **self)
        .await
        .map_err(|e| classify(e, first))?;
        Ok(())
    }
}
