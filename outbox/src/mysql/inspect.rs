//! Inspecting the outbox on MySQL and MariaDB.

use async_trait::async_trait;
use sqlx::{MySql, QueryBuilder};
use waybill_core::MessageId;

use super::store::{micros, MySqlStore};
use crate::error::{classify, OutboxError};
use crate::inspect::{DeadFilter, DeadRow, TopicBacklog};
use crate::store::InspectStore;

// Topic and key are cast to plain text for reading: sqlx takes a column of a binary
// collation (`utf8mb4_bin`, which compares them byte for byte) for bytes.

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

/// Appends the condition matching `filter`'s dead rows.
fn push_dead_match(query: &mut QueryBuilder<'_, MySql>, filter: &DeadFilter) {
    query.push(" WHERE dead");
    if let Some(topic) = &filter.topic {
        query.push(" AND topic = ").push_bind(topic.clone());
    }
    if !filter.ids.is_empty() {
        query.push(" AND message_id IN (");
        let mut ids = query.separated(", ");
        for id in filter.uuids() {
            ids.push_bind(id);
        }
        query.push(")");
    }
    let older = micros(filter.older_than.unwrap_or_default());
    query
        .push(" AND dead_at <= UTC_TIMESTAMP(6) - INTERVAL ")
        .push_bind(older)
        .push(" MICROSECOND");
}

fn seconds(micros: i64) -> f64 {
    micros.max(0) as f64 / 1e6
}

#[async_trait]
impl InspectStore for MySqlStore {
    async fn topics(&self) -> Result<Vec<TopicBacklog>, OutboxError> {
        let rows: Vec<(String, i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT CAST(topic AS CHAR), CAST(SUM(NOT dead) AS SIGNED), \
                    TIMESTAMPDIFF(MICROSECOND, MIN(IF(dead, NULL, enqueued_at)), \
                                  UTC_TIMESTAMP(6)), \
                    CAST(SUM(dead) AS SIGNED) \
             FROM waybill_outbox GROUP BY topic ORDER BY topic",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(topic, pending, oldest, dead)| TopicBacklog {
                topic,
                pending,
                oldest_age_seconds: oldest.map_or(0.0, seconds),
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
            i64,
        );
        let mut query = QueryBuilder::<MySql>::new(
            "SELECT seq, message_id, CAST(topic AS CHAR), CAST(`key` AS CHAR), attempts, \
                    last_error, \
                    TIMESTAMPDIFF(MICROSECOND, dead_at, UTC_TIMESTAMP(6)) \
             FROM waybill_outbox",
        );
        push_dead_match(&mut query, filter);
        query.push(" ORDER BY seq LIMIT ").push_bind(limit);
        let rows: Vec<Row> = query
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(
                |(seq, id, topic, key, attempts, last_error, dead_for)| DeadRow {
                    seq,
                    message_id: MessageId::from_uuid(id),
                    topic,
                    key,
                    attempts,
                    last_error,
                    dead_for_seconds: seconds(dead_for),
                },
            )
            .collect())
    }

    async fn replay(&self, filter: &DeadFilter) -> Result<u64, OutboxError> {
        let mut query = QueryBuilder::<MySql>::new(
            "UPDATE waybill_outbox SET dead = FALSE, dead_at = NULL, attempts = 0, \
               waiting_since = NULL, available_at = UTC_TIMESTAMP(6)",
        );
        push_dead_match(&mut query, filter);
        let done = query.build().execute(&self.pool).await.map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn purge(&self, filter: &DeadFilter) -> Result<u64, OutboxError> {
        let mut query = QueryBuilder::<MySql>::new("DELETE FROM waybill_outbox");
        push_dead_match(&mut query, filter);
        let done = query.build().execute(&self.pool).await.map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
