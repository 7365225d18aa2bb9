//! The relay: publishes committed outbox rows with confirms, then deletes them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tracing::{debug, warn};
use waybill_core::{ConfigError, Message, PublishError, PublishOutcome, Publisher};

use super::rows::OutboxRow;
use crate::error::{classify, OutboxError};

/// Relay settings; build with [`RelayConfig::builder`].
#[derive(Clone, Debug)]
pub struct RelayConfig {
    batch_size: i64,
    poll_interval: Duration,
    max_attempts: i32,
    backoff_min: Duration,
    backoff_max: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            max_attempts: 10,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
        }
    }
}

impl RelayConfig {
    /// A builder from the defaults: batches of 500, poll every second (LISTEN/NOTIFY wakes it
    /// sooner), 10 attempts per row, backoff 500 ms doubling to 60 s.
    pub fn builder() -> RelayConfigBuilder {
        RelayConfigBuilder(Self::default())
    }
}

/// Builds a [`RelayConfig`]; `build()` validates.
#[derive(Clone, Debug)]
pub struct RelayConfigBuilder(RelayConfig);

impl RelayConfigBuilder {
    /// Rows claimed per batch (1 to 10,000).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.0.batch_size = i64::try_from(n).unwrap_or(i64::MAX);
        self
    }

    /// Longest sleep between polls when no notification arrives.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.0.poll_interval = d;
        self
    }

    /// Publish attempts per row before it is marked dead.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.0.max_attempts = i32::try_from(n).unwrap_or(i32::MAX);
        self
    }

    /// Backoff bounds for a row (and so its key) whose publish failed.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.0.backoff_min = min;
        self.0.backoff_max = max;
        self
    }

    /// Validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming `batch_size`, `poll_interval`, `max_attempts` or `backoff`.
    pub fn build(self) -> Result<RelayConfig, ConfigError> {
        let c = self.0;
        if !(1..=10_000).contains(&c.batch_size) {
            return Err(ConfigError::new(
                "batch_size",
                "must be between 1 and 10000",
            ));
        }
        if c.poll_interval.is_zero() {
            return Err(ConfigError::new(
                "poll_interval",
                "must be greater than zero",
            ));
        }
        if c.max_attempts < 1 {
            return Err(ConfigError::new("max_attempts", "must be at least 1"));
        }
        if c.backoff_min.is_zero() || c.backoff_max < c.backoff_min {
            return Err(ConfigError::new(
                "backoff",
                "min must be greater than zero and max at least min",
            ));
        }
        Ok(c)
    }
}

/// Counts of what a relay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Rows published with a confirm and deleted.
    pub published: u64,
    /// Publish attempts that failed (the row stays, parked with backoff).
    pub failed: u64,
    /// Rows marked dead (attempt cap reached, or a permanent failure).
    pub dead: u64,
    /// Batches claimed.
    pub batches: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    failed: AtomicU64,
    dead: AtomicU64,
    batches: AtomicU64,
}

/// Publishes committed outbox rows through any [`Publisher`], deleting each only after its
/// confirm (a crash in between republishes it: at-least-once, same message id).
///
/// Order: rows are taken in `seq` order, and only once every older transaction has finished
/// (`txid < pg_snapshot_xmin`), so a slow transaction can never let a later row of a key
/// overtake its earlier one. Within a batch each key has one message in flight at a time;
/// different keys go in parallel. A key whose row fails is parked with backoff while other keys
/// flow; after `max_attempts` (or a permanent failure) the row is marked dead and the key moves
/// on.
///
/// Transaction ids are server-wide: a transaction left open anywhere on the PostgreSQL server
/// (any database) holds relaying back until it ends. Keep business transactions short and
/// watch `waybill_outbox_oldest_pending_age_seconds`.
///
/// This relay is meant to run as a single instance per database for now: several instances
/// would need the shard leases (table `waybill_shard_lease`) to keep per-key order.
pub struct PgRelay {
    pool: PgPool,
    publisher: Arc<dyn Publisher>,
    config: RelayConfig,
    counters: Arc<Counters>,
}

const SELECT_READY: &str = "\
SELECT seq, message_id, topic, key, payload, headers, \
       (EXTRACT(EPOCH FROM created_at) * 1000)::bigint AS created_at_ms, attempts \
FROM waybill_outbox o \
WHERE NOT o.dead \
  AND o.available_at <= now() \
  AND o.txid < pg_snapshot_xmin(pg_current_snapshot()) \
  AND NOT EXISTS ( \
      SELECT 1 FROM waybill_outbox p \
      WHERE p.key = o.key AND NOT p.dead AND p.seq < o.seq \
        AND (p.available_at > now() OR p.txid >= pg_snapshot_xmin(pg_current_snapshot()))) \
ORDER BY seq \
LIMIT $1";

impl PgRelay {
    /// A relay over `pool` publishing through `publisher`.
    pub fn new(pool: PgPool, publisher: Arc<dyn Publisher>, config: RelayConfig) -> Self {
        Self {
            pool,
            publisher,
            config,
            counters: Arc::default(),
        }
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            published: self.counters.published.load(Relaxed),
            failed: self.counters.failed.load(Relaxed),
            dead: self.counters.dead.load(Relaxed),
            batches: self.counters.batches.load(Relaxed),
        }
    }

    /// Claims one batch of ready rows and publishes it; returns how many rows it took.
    ///
    /// # Errors
    /// [`OutboxError`] when the database fails; rows already confirmed stay deleted, the rest
    /// are taken again by the next batch.
    pub async fn relay_once(&self) -> Result<usize, OutboxError> {
        let rows: Vec<OutboxRow> = sqlx::query_as(SELECT_READY)
            .bind(self.config.batch_size)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| classify(e, None))?;
        if rows.is_empty() {
            return Ok(0);
        }
        self.counters.batches.fetch_add(1, Relaxed);
        let taken = rows.len();
        // One queue per key, in seq order; unkeyed rows each get their own.
        let mut queues: Vec<std::collections::VecDeque<OutboxRow>> = Vec::new();
        let mut by_key: BTreeMap<String, usize> = BTreeMap::new();
        for row in rows {
            match row.key.clone() {
                Some(key) => {
                    let at = *by_key.entry(key).or_insert_with(|| {
                        queues.push(Default::default());
                        queues.len() - 1
                    });
                    queues[at].push_back(row);
                }
                None => queues.push([row].into()),
            }
        }
        while queues.iter().any(|q| !q.is_empty()) {
            let round: Vec<OutboxRow> = queues.iter_mut().filter_map(|q| q.pop_front()).collect();
            let failed_keys = self.publish_round(round).await?;
            for (queue, failed) in queues.iter_mut().zip(failed_keys) {
                if failed {
                    // The key is parked: its later rows wait for the failed one.
                    queue.clear();
                }
            }
            queues.retain(|q| !q.is_empty());
        }
        Ok(taken)
    }

    /// Publishes one row per key, deletes the confirmed ones, parks the failed ones. Returns,
    /// per input position, whether that key failed.
    async fn publish_round(&self, round: Vec<OutboxRow>) -> Result<Vec<bool>, OutboxError> {
        let mut by_topic: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, row) in round.iter().enumerate() {
            by_topic.entry(row.topic.clone()).or_default().push(i);
        }
        let publishes = by_topic.iter().map(|(topic, positions)| {
            let messages: Vec<Message> = positions.iter().map(|i| round[*i].message()).collect();
            async move {
                (
                    positions,
                    self.publisher.publish_batch(topic, messages).await,
                )
            }
        });
        let mut outcomes: Vec<Option<Result<(), PublishError>>> =
            (0..round.len()).map(|_| None).collect();
        for (positions, results) in join_all(publishes).await {
            for (i, result) in positions.iter().zip(results) {
                outcomes[*i] = Some(result.map(|_| ()));
            }
        }
        let mut confirmed = Vec::new();
        let mut failed = vec![false; round.len()];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome.expect("every row has an outcome") {
                Ok(()) => confirmed.push(round[i].seq),
                Err(e) => {
                    failed[i] = true;
                    self.park(&round[i], &e).await?;
                }
            }
        }
        if !confirmed.is_empty() {
            sqlx::query("DELETE FROM waybill_outbox WHERE seq = ANY($1)")
                .bind(&confirmed)
                .execute(&self.pool)
                .await
                .map_err(|e| classify(e, None))?;
            self.counters
                .published
                .fetch_add(confirmed.len() as u64, Relaxed);
        }
        Ok(failed)
    }

    async fn park(&self, row: &OutboxRow, error: &PublishError) -> Result<(), OutboxError> {
        self.counters.failed.fetch_add(1, Relaxed);
        let attempts = row.attempts.saturating_add(1);
        let dead =
            attempts >= self.config.max_attempts || error.outcome() == PublishOutcome::Permanent;
        let exponent = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(0)
            .min(20);
        let backoff = self
            .config
            .backoff_min
            .saturating_mul(1 << exponent)
            .min(self.config.backoff_max);
        if dead {
            self.counters.dead.fetch_add(1, Relaxed);
            warn!(seq = row.seq, attempts, error = %error, "outbox row marked dead");
        } else {
            debug!(seq = row.seq, attempts, ?backoff, error = %error, "outbox row parked");
        }
        sqlx::query(
            "UPDATE waybill_outbox SET attempts = $2, last_error = $3, dead = $4, \
             available_at = now() + make_interval(secs => $5) WHERE seq = $1",
        )
        .bind(row.seq)
        .bind(attempts)
        .bind(error.to_string())
        .bind(dead)
        .bind(backoff.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(|e| classify(e, None))?;
        Ok(())
    }

    /// Relays until `shutdown` completes: batch after batch while rows are ready, then waits
    /// for a notification (or the poll interval). The batch in flight finishes before it stops.
    ///
    /// # Errors
    /// Only errors that make relaying impossible (tables missing, credentials refused);
    /// transient database errors are logged and retried.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), OutboxError> {
        tokio::pin!(shutdown);
        let mut listener: Option<PgListener> = None;
        let mut failures = 0u32;
        loop {
            // Between batches: stop if asked (the batch in flight has finished).
            if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
                return Ok(());
            }
            if listener.is_none() {
                listener = self.listen().await;
            }
            let idle = match self.relay_once().await {
                Ok(n) => {
                    failures = 0;
                    (n as i64) < self.config.batch_size
                }
                Err(e) if e.is_transient() => {
                    failures = failures.saturating_add(1);
                    warn!(error = %e, "relay batch failed; retrying");
                    true
                }
                Err(e) => return Err(e),
            };
            if !idle {
                continue;
            }
            let pause = if failures > 0 {
                self.config
                    .backoff_min
                    .saturating_mul(1 << failures.min(10))
                    .min(self.config.backoff_max)
            } else {
                self.config.poll_interval
            };
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                woke = wait(&mut listener, pause) => if !woke { listener = None },
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen("waybill_outbox").await.ok()?;
        Some(listener)
    }
}

/// Waits for a notification or `pause`; false when the listener broke.
async fn wait(listener: &mut Option<PgListener>, pause: Duration) -> bool {
    match listener {
        Some(l) => match tokio::time::timeout(pause, l.recv()).await {
            Ok(Ok(_)) | Err(_) => true,
            Ok(Err(e)) => {
                warn!(error = %e, "outbox notifications lost; polling");
                false
            }
        },
        None => {
            tokio::time::sleep(pause).await;
            true
        }
    }
}

/// Outbox backlog figures for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backlog {
    /// Rows waiting to be relayed (not dead).
    pub pending: i64,
    /// Age of the oldest waiting row, in seconds (0 when none).
    pub oldest_age_seconds: f64,
    /// Rows marked dead.
    pub dead: i64,
}

impl PgRelay {
    /// Reads the backlog: pending rows, the oldest one's age, dead rows.
    ///
    /// # Errors
    /// A database error.
    pub async fn backlog(&self) -> Result<Backlog, OutboxError> {
        let (pending, oldest, dead): (i64, f64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE NOT dead), \
                    COALESCE(EXTRACT(EPOCH FROM now() - min(enqueued_at) FILTER (WHERE NOT dead)), 0)::float8, \
                    count(*) FILTER (WHERE dead) \
             FROM waybill_outbox",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| classify(e, None))?;
        Ok(Backlog {
            pending,
            oldest_age_seconds: oldest,
            dead,
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}
