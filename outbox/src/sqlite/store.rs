//! The relay's store on SQLite: ready rows, confirms, failures, shard leases, polling.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::SqlitePool;

use crate::error::{classify, OutboxError};
use crate::ready::{decode_ready, without_excluded, ReadyRow};
use crate::row::now_ms;
use crate::store::{Confirmed, Failure, LeasePlan, RelayStore};

/// Ready rows of the given shards (`?3`, a JSON array) in `seq` order. SQLite commits one
/// writer at a time, so a committed row never has an older row still to come. The two
/// "earlier row of its key" checks are apart so that each is answered by its partial index
/// (`(key, seq) WHERE dead = 0`, and `WHERE dead = 1` only in key-holding mode, `?5`): one
/// condition over both kinds of rows used neither and scanned the table for every row
/// (the relay ran at a third of its speed).
const SELECT_READY: &str = "\
SELECT seq, message_id, topic, key, payload, headers, created_at_ms, attempts, \
       ?1 - waiting_since_ms AS waited_ms \
FROM waybill_outbox o \
WHERE o.dead = 0 \
  AND o.available_at_ms <= ?1 \
  AND (o.shard_hash % ?2) IN (SELECT value FROM json_each(?3)) \
  AND NOT EXISTS ( \
      SELECT 1 FROM waybill_outbox p \
      WHERE p.key = o.key AND p.dead = 0 AND p.seq < o.seq AND p.available_at_ms > ?1) \
  AND NOT (?5 AND EXISTS ( \
      SELECT 1 FROM waybill_outbox p \
      WHERE p.key = o.key AND p.dead = 1 AND p.seq < o.seq)) \
ORDER BY seq \
LIMIT ?4";

/// Records the rows `?1` (a JSON array of `[seq, position]`) in the sent log, confirmed at
/// `?2` (Unix ms); a message already logged keeps its first entry.
const LOG_SENT: &str = "\
INSERT OR IGNORE INTO waybill_sent (message_id, topic, key, position, confirmed_at_ms) \
SELECT o.message_id, o.topic, o.key, c.value ->> '$[1]', ?2 \
FROM json_each(?1) AS c JOIN waybill_outbox o ON o.seq = c.value ->> '$[0]'";

/// The outbox tables of one SQLite database.
pub(crate) struct SqliteStore {
    pub(super) pool: SqlitePool,
}

impl SqliteStore {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn json_list(values: &[i64]) -> String {
    serde_json::to_string(values).unwrap_or_else(|_| "[]".into())
}

#[async_trait]
impl RelayStore for SqliteStore {
    async fn ready(
        &self,
        shard_count: i64,
        shards: &[i64],
        limit: i64,
        held_behind_dead: bool,
        exclude: &[i64],
    ) -> Result<Vec<ReadyRow>, OutboxError> {
        sqlx::query(SELECT_READY)
            .bind(now_ms())
            .bind(shard_count)
            .bind(json_list(shards))
            .bind(limit.saturating_add(exclude.len() as i64))
            .bind(held_behind_dead)
            // Decoded as they arrive: a batch's raw rows are not all held at once.
            .try_map(|row| decode_ready(&row))
            .fetch_all(&self.pool)
            .await
            .map_err(db)
            .map(|rows| without_excluded(rows, exclude, limit))
    }

    async fn delete(&self, confirmed: &[Confirmed], sent_log: bool) -> Result<(), OutboxError> {
        let seqs: Vec<i64> = confirmed.iter().map(|c| c.seq).collect();
        let mut tx = self.pool.begin().await.map_err(db)?;
        if sent_log {
            let pairs: Vec<(i64, &str)> = confirmed
                .iter()
                .map(|c| (c.seq, c.position.as_str()))
                .collect();
            sqlx::query(LOG_SENT)
                .bind(serde_json::to_string(&pairs).unwrap_or_else(|_| "[]".into()))
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("DELETE FROM waybill_outbox WHERE seq IN (SELECT value FROM json_each(?1))")
            .bind(json_list(&seqs))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn purge_sent(&self, retention: Duration) -> Result<u64, OutboxError> {
        let done = sqlx::query("DELETE FROM waybill_sent WHERE confirmed_at_ms < ?1")
            .bind(now_ms().saturating_sub(ms(retention)))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn park(&self, seq: i64, failure: &Failure<'_>) -> Result<(), OutboxError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE waybill_outbox SET attempts = ?2, last_error = ?3, dead = ?4, \
               dead_at_ms = CASE WHEN ?4 THEN ?5 END, available_at_ms = ?5 + ?6, \
               waiting_since_ms = CASE WHEN ?7 THEN COALESCE(waiting_since_ms, ?5) END \
             WHERE seq = ?1",
        )
        .bind(seq)
        .bind(failure.attempts)
        .bind(failure.error)
        .bind(failure.dead)
        .bind(now)
        .bind(ms(failure.backoff))
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
        let now = now_ms();
        let expires = now.saturating_add(ms(ttl));
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A write first, so that this transaction holds the write lock from the start and
        // never has to upgrade a read lock (which SQLite may refuse with SQLITE_BUSY).
        sqlx::query(
            "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?1) \
             INSERT OR IGNORE INTO waybill_shard_lease (shard, owner, expires_at_ms, shard_count) \
             SELECT n, '', 0, ?1 FROM g",
        )
        .bind(shard_count)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let foreign: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM waybill_shard_lease \
             WHERE expires_at_ms > ?3 AND owner <> ?1 AND (shard_count <> ?2 OR shard >= ?2)",
        )
        .bind(owner)
        .bind(shard_count)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if foreign > 0 {
            return Err(OutboxError::ShardLayout { shard_count });
        }
        sqlx::query("DELETE FROM waybill_shard_lease WHERE shard >= ?1")
            .bind(shard_count)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query("UPDATE waybill_shard_lease SET shard_count = ?1 WHERE shard_count <> ?1")
            .bind(shard_count)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let mut owned: Vec<i64> = sqlx::query_scalar(
            "UPDATE waybill_shard_lease SET expires_at_ms = ?2 WHERE owner = ?1 RETURNING shard",
        )
        .bind(owner)
        .bind(expires)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        owned.sort_unstable();
        sqlx::query(
            "INSERT INTO waybill_relay (name, expires_at_ms) VALUES (?1, ?2) \
             ON CONFLICT (name) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
        )
        .bind(owner)
        .bind(expires)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM waybill_relay WHERE expires_at_ms <= ?1")
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let live: i64 = sqlx::query_scalar("SELECT count(*) FROM waybill_relay")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        match LeasePlan::for_round(&mut owned, shard_count, live) {
            LeasePlan::GiveBack(extra) => {
                sqlx::query(
                    "UPDATE waybill_shard_lease SET owner = '', expires_at_ms = 0 \
                 WHERE shard IN (SELECT value FROM json_each(?1)) AND owner = ?2",
                )
                .bind(json_list(&extra))
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            }
            LeasePlan::Take(wanted) => {
                let taken: Vec<i64> = sqlx::query_scalar(
                    "UPDATE waybill_shard_lease SET owner = ?1, expires_at_ms = ?2 \
                 WHERE shard IN (SELECT shard FROM waybill_shard_lease \
                                 WHERE expires_at_ms <= ?3 ORDER BY shard LIMIT ?4) \
                 RETURNING shard",
                )
                .bind(owner)
                .bind(expires)
                .bind(now)
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
            "UPDATE waybill_shard_lease SET owner = '', expires_at_ms = 0 WHERE owner = ?1",
        )
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM waybill_relay WHERE name = ?1")
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn wait_for_rows(&self, pause: Duration) {
        // SQLite has no notifications: poll.
        tokio::time::sleep(pause).await;
    }
}
