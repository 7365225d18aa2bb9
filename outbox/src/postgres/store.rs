//! The relay's store on PostgreSQL: ready rows, confirms, failures, shard leases, NOTIFY.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::error::{classify, OutboxError};
use crate::ready::{decode_ready, ReadyRow};
use crate::store::{Confirmed, Failure, LeasePlan, RelayStore};

use super::wakeups::Wakeups;

/// Rows that are safe and ready, in `seq` order, with `$extra` added to their conditions.
/// A row (or an earlier row of its key) is not safe while a transaction older than its own
/// may still commit (`txid` not below xmin). An infinite creation time reads as NULL, so that
/// only its row fails to decode.
macro_rules! select_ready {
    ($extra:literal) => {
        concat!(
            "SELECT seq, message_id, topic, key, payload, headers, \
                    CASE WHEN isfinite(created_at) \
                         THEN (EXTRACT(EPOCH FROM created_at) * 1000)::bigint END \
                      AS created_at_ms, \
                    attempts, \
                    (EXTRACT(EPOCH FROM (now() - waiting_since)) * 1000)::bigint AS waited_ms \
             FROM waybill_outbox o \
             WHERE NOT o.dead \
               AND o.seq <> ALL($4) \
               AND o.available_at <= now() \
               AND o.txid < pg_snapshot_xmin(pg_current_snapshot()) \
               AND (o.shard_hash % $2) = ANY($3) \
               AND NOT EXISTS ( \
                   SELECT 1 FROM waybill_outbox p \
                   WHERE p.key = o.key AND NOT p.dead AND p.seq < o.seq \
                     AND (p.available_at > now() \
                          OR p.txid >= pg_snapshot_xmin(pg_current_snapshot()))) ",
            $extra,
            " ORDER BY seq LIMIT $1"
        )
    };
}

/// Ready rows when dead rows do not hold their key (the default).
///
/// Each mode has a statement of its own rather than a parameter that switches the dead rows'
/// check on: with such a parameter the server's generic plan carried the check, cost more
/// than a plan for known values, and every batch was planned again.
const SELECT_READY: &str = select_ready!("");

/// Ready rows in key-holding mode: an earlier dead row of its key also holds a row back. The
/// check stands apart from the live rows' one, so that the latter is still answered through
/// the migration's partial indexes (`WHERE NOT dead`).
const SELECT_READY_HOLDING: &str = select_ready!(
    "AND NOT EXISTS ( \
         SELECT 1 FROM waybill_outbox p WHERE p.key = o.key AND p.dead AND p.seq < o.seq)"
);

/// Deletes the confirmed rows `$1` and records them in the sent log with their positions `$2`,
/// in one statement (so one transaction); a message already logged keeps its first entry.
const LOG_AND_DELETE: &str = "\
WITH gone AS ( \
    DELETE FROM waybill_outbox o \
    USING unnest($1::bigint[], $2::text[]) AS c(seq, position) \
    WHERE o.seq = c.seq \
    RETURNING o.message_id, o.topic, o.key, c.position) \
INSERT INTO waybill_sent (message_id, topic, key, position) \
SELECT message_id, topic, key, position FROM gone \
ON CONFLICT (message_id) DO NOTHING";

/// The outbox tables of one PostgreSQL database.
pub(crate) struct PgStore {
    pub(super) pool: PgPool,
    wakeups: Wakeups,
}

impl PgStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            wakeups: Wakeups::default(),
        }
    }
}

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

#[async_trait]
impl RelayStore for PgStore {
    async fn ready(
        &self,
        shard_count: i64,
        shards: &[i64],
        limit: i64,
        held_behind_dead: bool,
        exclude: &[i64],
    ) -> Result<Vec<ReadyRow>, OutboxError> {
        let statement = if held_behind_dead {
            SELECT_READY_HOLDING
        } else {
            SELECT_READY
        };
        sqlx::query(statement)
            .bind(limit)
            .bind(shard_count)
            .bind(shards)
            .bind(exclude)
            // Decoded as they arrive: a batch's raw rows are not all held at once.
            .try_map(|row| decode_ready(&row))
            .fetch_all(&self.pool)
            .await
            .map_err(db)
    }

    async fn delete(&self, confirmed: &[Confirmed], sent_log: bool) -> Result<(), OutboxError> {
        let seqs: Vec<i64> = confirmed.iter().map(|c| c.seq).collect();
        if !sent_log {
            sqlx::query("DELETE FROM waybill_outbox WHERE seq = ANY($1)")
                .bind(&seqs)
                .execute(&self.pool)
                .await
                .map_err(db)?;
            return Ok(());
        }
        let positions: Vec<&str> = confirmed.iter().map(|c| c.position.as_str()).collect();
        sqlx::query(LOG_AND_DELETE)
            .bind(&seqs)
            .bind(&positions)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn purge_sent(&self, retention: Duration) -> Result<u64, OutboxError> {
        let done = sqlx::query(
            "DELETE FROM waybill_sent WHERE confirmed_at < now() - make_interval(secs => $1)",
        )
        .bind(retention.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn park(&self, seq: i64, failure: &Failure<'_>) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE waybill_outbox SET attempts = $2, last_error = $3, dead = $4, \
               dead_at = CASE WHEN $4 THEN now() END, \
               available_at = now() + make_interval(secs => $5), \
               waiting_since = CASE WHEN $6 THEN COALESCE(waiting_since, now()) END \
             WHERE seq = $1",
        )
        .bind(seq)
        .bind(failure.attempts)
        .bind(failure.error)
        .bind(failure.dead)
        .bind(failure.backoff.as_secs_f64())
        .bind(failure.destination_missing)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn lease_round(
        &self,
        owner: &str,
        shard_count: i64,
        ttl: Duration,
    ) -> Result<Vec<i64>, OutboxError> {
        let ttl = ttl.as_secs_f64();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "INSERT INTO waybill_shard_lease (shard, owner, expires_at, shard_count) \
             SELECT g, '', '-infinity', $1 FROM generate_series(0, $1 - 1) AS g \
             ON CONFLICT (shard) DO NOTHING",
        )
        .bind(shard_count)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let (foreign,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM waybill_shard_lease \
             WHERE expires_at > now() AND owner <> $1 AND (shard_count <> $2 OR shard >= $2)",
        )
        .bind(owner)
        .bind(shard_count)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if foreign > 0 {
            return Err(OutboxError::ShardLayout { shard_count });
        }
        // Lapsed leases of an older layout follow this one.
        sqlx::query("DELETE FROM waybill_shard_lease WHERE shard >= $1")
            .bind(shard_count)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE waybill_shard_lease SET shard_count = $1 WHERE shard_count <> $1")
            .bind(shard_count)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut owned: Vec<i64> = sqlx::query_scalar(
            "UPDATE waybill_shard_lease SET expires_at = now() + make_interval(secs => $2) \
             WHERE owner = $1 RETURNING shard::bigint",
        )
        .bind(owner)
        .bind(ttl)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        owned.sort_unstable();
        sqlx::query(
            "INSERT INTO waybill_relay (name, expires_at) \
             VALUES ($1, now() + make_interval(secs => $2)) \
             ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at",
        )
        .bind(owner)
        .bind(ttl)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM waybill_relay WHERE expires_at <= now()")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let (live,): (i64,) = sqlx::query_as("SELECT count(*) FROM waybill_relay")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        match LeasePlan::for_round(&mut owned, shard_count, live) {
            LeasePlan::GiveBack(extra) => {
                sqlx::query(
                    "UPDATE waybill_shard_lease SET owner = '', expires_at = '-infinity' \
                 WHERE shard = ANY($1::int[]) AND owner = $2",
                )
                .bind(extra.iter().map(|s| *s as i32).collect::<Vec<i32>>())
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            LeasePlan::Take(wanted) => {
                let taken: Vec<i64> = sqlx::query_scalar(
                    "UPDATE waybill_shard_lease \
                 SET owner = $1, expires_at = now() + make_interval(secs => $2) \
                 WHERE shard IN ( \
                     SELECT shard FROM waybill_shard_lease WHERE expires_at <= now() \
                     ORDER BY shard LIMIT $3 FOR UPDATE SKIP LOCKED) \
                 RETURNING shard::bigint",
                )
                .bind(owner)
                .bind(ttl)
                .bind(wanted)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                owned.extend(taken);
                owned.sort_unstable();
            }
            LeasePlan::Keep => {}
        }
        tx.commit().await.map_err(db)?;
        Ok(owned)
    }

    async fn release_leases(&self, owner: &str) -> Result<(), OutboxError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "UPDATE waybill_shard_lease SET owner = '', expires_at = '-infinity' WHERE owner = $1",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM waybill_relay WHERE name = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn wait_for_rows(&self, pause: Duration) {
        self.wakeups.wait(&self.pool, pause).await;
    }
}
