//! Inspecting the outbox on SQLite.

use async_trait::async_trait;
use waybill_core::MessageId;

use super::store::SqliteStore;
use crate::error::{classify, OutboxError};
use crate::inspect::{DeadFilter, DeadRow, TopicBacklog};
use crate::row::now_ms;
use crate::store::InspectStore;

/// Matches dead rows by `?1` topic (or any), `?2` ids as a JSON array of UUID strings (or
/// any), `?3` the latest death time in Unix ms. An id is stored as 16 bytes, or as UUID text
/// by another writer (such a row is quarantined: it is dead, and found here too).
const DEAD_MATCH: &str = "dead = 1 AND (?1 IS NULL OR topic = ?1) \
     AND (json_array_length(?2) = 0 \
          OR (CASE WHEN typeof(message_id) = 'text' THEN lower(replace(message_id, '-', '')) \
                   ELSE lower(hex(message_id)) END) \
             IN (SELECT replace(value, '-', '') FROM json_each(?2))) \
     AND dead_at_ms <= ?3";

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

/// The filter's bind values: topic, ids as a JSON array, latest death time.
fn binds(filter: &DeadFilter) -> (Option<String>, String, i64) {
    let ids: Vec<String> = filter.uuids().iter().map(|u| u.to_string()).collect();
    let older = filter
        .older_than
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    (
        filter.topic.clone(),
        serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()),
        now_ms().saturating_sub(older),
    )
}

/// The UUID of a stored message id: 16 bytes as waybill writes it, or the text form another
/// writer may have used; the nil UUID when it is neither.
fn stored_uuid(stored: &[u8]) -> uuid::Uuid {
    uuid::Uuid::from_slice(stored)
        .ok()
        .or_else(|| {
            std::str::from_utf8(stored)
                .ok()
                .and_then(|text| uuid::Uuid::parse_str(text.trim()).ok())
        })
        .unwrap_or_default()
}

#[async_trait]
impl InspectStore for SqliteStore {
    async fn topics(&self) -> Result<Vec<TopicBacklog>, OutboxError> {
        let rows: Vec<(String, i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT topic, sum(dead = 0), min(CASE WHEN dead = 0 THEN enqueued_at_ms END), \
                    sum(dead = 1) \
             FROM waybill_outbox GROUP BY topic ORDER BY topic",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let now = now_ms();
        Ok(rows
            .into_iter()
            .map(|(topic, pending, oldest, dead)| TopicBacklog {
                topic,
                pending,
                oldest_age_seconds: oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0),
                dead,
            })
            .collect())
    }

    async fn dead(&self, filter: &DeadFilter, limit: i64) -> Result<Vec<DeadRow>, OutboxError> {
        type Row = (
            i64,
            Vec<u8>,
            String,
            Option<String>,
            i32,
            Option<String>,
            i64,
        );
        let (topic, ids, before) = binds(filter);
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT seq, message_id, topic, key, attempts, last_error, dead_at_ms \
             FROM waybill_outbox WHERE {DEAD_MATCH} ORDER BY seq LIMIT ?4"
        ))
        .bind(topic)
        .bind(ids)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let now = now_ms();
        Ok(rows
            .into_iter()
            .map(
                |(seq, id, topic, key, attempts, last_error, dead_at)| DeadRow {
                    seq,
                    message_id: MessageId::from_uuid(stored_uuid(&id)),
                    topic,
                    key,
                    attempts,
                    last_error,
                    dead_for_seconds: (now - dead_at).max(0) as f64 / 1000.0,
                },
            )
            .collect())
    }

    async fn replay(&self, filter: &DeadFilter) -> Result<u64, OutboxError> {
        let (topic, ids, before) = binds(filter);
        let done = sqlx::query(&format!(
            "UPDATE waybill_outbox SET dead = 0, dead_at_ms = NULL, attempts = 0, \
               waiting_since_ms = NULL, available_at_ms = ?4 WHERE {DEAD_MATCH}"
        ))
        .bind(topic)
        .bind(ids)
        .bind(before)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn purge(&self, filter: &DeadFilter) -> Result<u64, OutboxError> {
        let (topic, ids, before) = binds(filter);
        let done = sqlx::query(&format!("DELETE FROM waybill_outbox WHERE {DEAD_MATCH}"))
            .bind(topic)
            .bind(ids)
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
