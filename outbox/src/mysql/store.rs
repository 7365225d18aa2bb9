//! The relay's store on MySQL and MariaDB: ready rows, confirms, failures, shard leases,
//! polling.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{MySql, MySqlPool, QueryBuilder};
use tokio::sync::OnceCell;

use super::horizon::Horizon;
use super::leases::LAPSED;
use crate::error::{classify, OutboxError};
use crate::ready::{decode_ready, without_excluded, ReadyRow};
use crate::store::{Confirmed, Failure, RelayStore};

/// Ready rows, in `seq` order. Its parameters, in order: the commit-order horizon (the
/// highest safe `seq`); whether a dead row holds back its key's later rows (key-holding
/// mode); the shard count; the shards, comma separated; the limit. A row waits while an
/// earlier row of its key is parked. Every earlier row of a key is below the horizon too, so
/// none of them can still be uncommitted. Topic and key are compared byte for byte
/// (`utf8mb4_bin`), and cast to plain text for reading (sqlx takes a binary collation's
/// column for bytes).
const SELECT_READY: &str = "\
SELECT seq, message_id, CAST(topic AS CHAR) AS topic, CAST(`key` AS CHAR) AS `key`, \
       payload, headers, created_at_ms, attempts, \
       TIMESTAMPDIFF(MICROSECOND, waiting_since, UTC_TIMESTAMP(6)) DIV 1000 AS waited_ms \
FROM waybill_outbox o \
WHERE o.seq <= ? AND NOT o.dead AND o.available_at <= UTC_TIMESTAMP(6) \
  AND NOT EXISTS ( \
      SELECT 1 FROM waybill_outbox p \
      WHERE p.`key` = o.`key` AND p.seq < o.seq \
        AND ((NOT p.dead AND p.available_at > UTC_TIMESTAMP(6)) OR (p.dead AND ?))) \
  AND FIND_IN_SET(MOD(o.shard_hash, ?), ?) \
ORDER BY seq \
LIMIT ?";

/// How often an idle relay looks again while committed rows wait for the horizon.
const HORIZON_POLL: Duration = Duration::from_millis(200);

/// The outbox tables of one MySQL or MariaDB database.
pub(crate) struct MySqlStore {
    pub(super) pool: MySqlPool,
    horizon: Horizon,
    /// The server check (version and the `PROCESS` privilege), made once before relaying.
    checked: OnceCell<()>,
}

impl MySqlStore {
    pub fn new(pool: MySqlPool) -> Self {
        Self {
            pool,
            horizon: Horizon::default(),
            checked: OnceCell::new(),
        }
    }
}

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

/// `d` in microseconds, for `INTERVAL ? MICROSECOND` (capped at about 100 years).
pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros())
        .unwrap_or(i64::MAX)
        .min(3_153_600_000_000_000)
}

#[async_trait]
impl RelayStore for MySqlStore {
    async fn ready(
        &self,
        shard_count: i64,
        shards: &[i64],
        limit: i64,
        held_behind_dead: bool,
        exclude: &[i64],
    ) -> Result<Vec<ReadyRow>, OutboxError> {
        self.checked
            .get_or_try_init(|| async {
                super::version::check_server(&self.pool).await?;
                super::horizon::check_access(&self.pool).await
            })
            .await?;
        let safe = self.horizon.advance(&self.pool).await?;
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let listed: Vec<String> = shards.iter().map(i64::to_string).collect();
        sqlx::query(SELECT_READY)
            .bind(safe)
            .bind(held_behind_dead)
            .bind(shard_count)
            .bind(listed.join(","))
            .bind(limit.saturating_add(exclude.len() as i64))
            // Decoded as they arrive: a batch's raw rows are not all held at once.
            .try_map(|row| decode_ready(&row))
            .fetch_all(&self.pool)
            .await
            .map_err(db)
            .map(|rows| without_excluded(rows, exclude, limit))
    }

    async fn delete(&self, confirmed: &[Confirmed], sent_log: bool) -> Result<(), OutboxError> {
        if confirmed.is_empty() {
            return Ok(());
        }
        let mut delete = QueryBuilder::<MySql>::new("DELETE FROM waybill_outbox WHERE seq IN (");
        let mut list = delete.separated(", ");
        for row in confirmed {
            list.push_bind(row.seq);
        }
        delete.push(")");
        if !sent_log {
            delete.build().execute(&self.pool).await.map_err(db)?;
            return Ok(());
        }
        // The positions come in as a derived table joined to the rows by seq.
        let mut log = QueryBuilder::<MySql>::new(
            "INSERT IGNORE INTO waybill_sent \
               (message_id, topic, `key`, position, confirmed_at) \
             SELECT o.message_id, o.topic, o.`key`, c.position, UTC_TIMESTAMP(6) \
             FROM waybill_outbox o JOIN (",
        );
        for (i, row) in confirmed.iter().enumerate() {
            log.push(if i == 0 {
                "SELECT "
            } else {
                " UNION ALL SELECT "
            });
            log.push_bind(row.seq);
            log.push(if i == 0 { " AS seq, " } else { ", " });
            log.push_bind(row.position.as_str());
            if i == 0 {
                log.push(" AS position");
            }
        }
        log.push(") c ON o.seq = c.seq");
        let mut tx = self.pool.begin().await.map_err(db)?;
        log.build().execute(&mut *tx).await.map_err(db)?;
        delete.build().execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn purge_sent(&self, retention: Duration) -> Result<u64, OutboxError> {
        let done = sqlx::query(
            "DELETE FROM waybill_sent \
             WHERE confirmed_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND",
        )
        .bind(micros(retention))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn park(&self, seq: i64, failure: &Failure<'_>) -> Result<(), OutboxError> {
        sqlx::query(
            "UPDATE waybill_outbox SET attempts = ?, last_error = ?, dead = ?, \
               dead_at = IF(?, UTC_TIMESTAMP(6), NULL), \
               available_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, \
               waiting_since = IF(?, COALESCE(waiting_since, UTC_TIMESTAMP(6)), NULL) \
             WHERE seq = ?",
        )
        .bind(failure.attempts)
        .bind(failure.error)
        .bind(failure.dead)
        .bind(failure.dead)
        .bind(micros(failure.backoff))
        .bind(failure.destination_missing)
        .bind(seq)
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
        super::leases::round(&self.pool, owner, shard_count, micros(ttl)).await
    }

    async fn release_leases(&self, owner: &str) -> Result<(), OutboxError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(
            "UPDATE waybill_shard_lease SET owner = '', expires_at = ? WHERE owner = ? \
             ORDER BY shard",
        )
        .bind(LAPSED)
        .bind(owner)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM waybill_relay WHERE name = ?")
            .bind(owner)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn wait_for_rows(&self, pause: Duration) {
        // No notifications on MySQL: poll, sooner while committed rows wait for the horizon.
        let pause = if self.horizon.waiting().await {
            pause.min(HORIZON_POLL)
        } else {
            pause
        };
        tokio::time::sleep(pause).await;
    }
}
