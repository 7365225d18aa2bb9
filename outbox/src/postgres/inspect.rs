//! Inspecting the outbox on PostgreSQL.

use async_trait::async_trait;
use waybill_core::MessageId;

use super::store::PgStore;
use crate::error::{classify, OutboxError};
use crate::inspect::{DeadFilter, DeadRow, TopicBacklog};
use crate::store::InspectStore;

/// Matches dead rows by `$1` topic (or any), `$2` ids (or any), `$3` seconds dead.
const DEAD_MATCH: &str = "dead AND ($1::text IS NULL OR topic = $1) \
     AND (cardinality($2::uuid[]) = 0 OR message_id = ANY($2)) \
     AND dead_at <= now() - make_interval(secs => $3)";

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

#[async_trait]
impl InspectStore for PgStore {
    async fn topics(&self) -> Result<Vec<TopicBacklog>, OutboxError> {
        let rows: Vec<(String, i64, f64, i64)> = sqlx::query_as(
            "SELECT topic, count(*) FILTER (WHERE NOT dead), \
                    COALESCE(EXTRACT(EPOCH FROM now() - min(enqueued_at) FILTER (WHERE NOT dead)), 0)::float8, \
                    count(*) FILTER (WHERE dead) \
             FROM waybill_outbox GROUP BY topic ORDER BY topic",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(topic, pending, oldest_age_seconds, dead)| TopicBacklog {
                topic,
                pending,
                oldest_age_seconds,
                dead,
            })
            .collect())
    }

    async fn dead(&self, filter: &DeadFilter, limit: i64) -> Result<Vec<DeadRow>, OutboxError> {
        type Row = (
            i64,
            uuid::Uuid,
            String,
            Option<String>,
            i32,
            Option<String>,
            f64,
        );
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT seq, message_id, topic, key, attempts, last_error, \
                    EXTRACT(EPOCH FROM now() - dead_at)::float8 \
             FROM waybill_outbox WHERE {DEAD_MATCH} ORDER BY seq LIMIT $4"
        ))
        .bind(filter.topic.as_deref())
        .bind(filter.uuids())
        .bind(filter.older_than_secs())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(
                |(seq, id, topic, key, attempts, last_error, dead_for_seconds)| DeadRow {
                    seq,
                    message_id: MessageId::from_uuid(id),
                    topic,
                    key,
                    attempts,
                    last_error,
                    dead_for_seconds,
                },
            )
            .collect())
    }

    async fn replay(&self, filter: &DeadFilter) -> Result<u64, OutboxError> {
        let done = sqlx::query(&format!(
            "UPDATE waybill_outbox SET dead = false, dead_at = NULL, attempts = 0, \
               waiting_since = NULL, available_at = now() WHERE {DEAD_MATCH}"
        ))
        .bind(filter.topic.as_deref())
        .bind(filter.uuids())
        .bind(filter.older_than_secs())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn purge(&self, filter: &DeadFilter) -> Result<u64, OutboxError> {
        let done = sqlx::query(&format!("DELETE FROM waybill_outbox WHERE {DEAD_MATCH}"))
            .bind(filter.topic.as_deref())
            .bind(filter.uuids())
            .bind(filter.older_than_secs())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
