//! The relay: publishes committed outbox rows with confirms, then deletes them.

mod config;
mod instruments;
mod leases;
mod overlap;
mod running;
mod waiting;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use tracing::{debug, error, info, warn};
use waybill_core::{
    BrokerPosition, DeadLetterMode, Health, Message, Outage, PublishError, PublishOutcome,
    Publisher,
};

pub use config::{RelayConfig, RelayConfigBuilder};
use leases::Leases;
pub use running::RunningRelay;
use waiting::{verdict, Verdict, WaitAlerts};

use crate::error::OutboxError;
use crate::inspect::{Backlog, DeadFilter};
use crate::ready::{ReadyRow, Undecodable};
use crate::row::OutboxRow;
use crate::store::{Confirmed, Failure, RelayStore};
use instruments::{RelayInstruments, BACKLOG_SAMPLE_EVERY};

/// How often the relay deletes dead rows past their retention.
const CLEANUP_EVERY: Duration = Duration::from_secs(300);

/// Counts of what a relay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Rows published with a confirm and deleted.
    pub published: u64,
    /// Publish attempts that failed (the row stays, parked with backoff).
    pub failed: u64,
    /// Of the failed attempts, those that found no destination (topic, exchange or queue not
    /// there yet): the row waits for it, up to `destination_wait`. Alert when it grows.
    pub destination_missing: u64,
    /// Rows marked dead (attempt cap reached, a permanent failure, a destination still
    /// missing after `destination_wait`, or a row that does not decode into a message).
    pub dead: u64,
    /// Batches claimed.
    pub batches: u64,
    /// Rows confirmed although an earlier row of their key failed in the same pipelined
    /// batch (see [`Publisher::keeps_key_order_in_batch`]); never expected.
    pub order_breaches: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    failed: AtomicU64,
    destination_missing: AtomicU64,
    dead: AtomicU64,
    batches: AtomicU64,
    order_breaches: AtomicU64,
}

/// Publishes committed outbox rows through any [`Publisher`], deleting each only after its
/// confirm (a crash in between republishes it: at-least-once, same message id).
///
/// **Order.** Rows are taken in `seq` order, and different keys go in parallel. A key's rows
/// go out in one of two ways:
/// - **pipelined**, when the publisher keeps a key's order within one batch also across
///   failures ([`Publisher::keeps_key_order_in_batch`]: the Kafka, RabbitMQ and RocketMQ
///   backends and the in-memory broker do). All rows of a key in the batch are handed to one
///   `publish_batch` call in `seq` order (up to the first row on another topic); the leading
///   rows that were confirmed are deleted, the first failed row is parked, and the rows after
///   it are left pending behind it, whatever their outcome, since the backend guarantees that
///   none of them was stored without it. An ambiguous failure in the middle (a connection lost,
///   a broker killed) therefore resends the failed row and everything after it, in order: at
///   worst the consumer's inbox drops copies, the first copies stay in order.
/// - **in rounds**, otherwise: one row per key in flight at a time; a row is published only
///   after the previous row of its key was confirmed.
///
/// On PostgreSQL a row is taken only once every older transaction
/// has finished (`txid < pg_snapshot_xmin`), so a slow transaction can never let a later row
/// of a key overtake its earlier one; SQLite has one writer at a time, so `seq` is commit
/// order there. On MySQL and MariaDB a row is taken only once every transaction that was
/// running when it was first seen committed has finished, as listed in
/// `information_schema.innodb_trx` (the relay's user needs the `PROCESS` privilege).
///
/// **Several relays.** Keys hash into `shard_count` shards; each relay publishes only the
/// shards it holds a lease on, renews them every third of the lease time, takes a fair share
/// (`ceil(shards / live relays)`) and gives back the rest, and takes over the shards of a relay
/// that stopped renewing once their leases lapse. Each relay sends a key's rows in `seq`
/// order, and a later row only behind the earlier ones (after their confirm, or pipelined
/// on an order-keeping path), so when two relays send a key during a handover each of them
/// puts it in order and the first copies stay in order: a handover can at worst publish a
/// row twice (the inbox drops the copy), never out of order.
///
/// **Failures.** A key whose row fails is parked with backoff while other keys flow; after
/// `max_attempts` (or a permanent failure) the row is marked dead and the key moves on —
/// or, under [`DeadLetterMode::HoldKey`] (see [`RelayConfigBuilder::dead_letter_mode`]), its
/// later rows stay pending behind the dead one until it is replayed or purged. A
/// destination that does not exist yet ([`PublishOutcome::NoDestination`]: a topic not
/// created, a queue not bound yet) is not permanent: the row and its key wait for it with
/// backoff and a `warn` log (at most one per topic every 30 s) for up to `destination_wait`
/// (see [`RelayConfigBuilder::destination_wait`]), without using up attempts, and are marked
/// dead only when it is still missing then. A row
/// that does not decode into a message (headers that are not a JSON object of strings,
/// written by another tool, say) is marked dead at once with the decode error, and the rest
/// of the batch goes on. Dead rows are kept for `dead_retention`, listed, replayed and purged
/// with [`crate::OutboxInspector`].
///
/// **Wake-ups.** On PostgreSQL an idle relay wakes on the insert trigger's `NOTIFY` (polling
/// every `poll_interval` stays as the fallback). SQLite and MySQL poll every `poll_interval`;
/// on MySQL every 200 ms at most while committed rows wait for the commit-order horizon, so a
/// row committed on an idle system is relayed within `poll_interval` plus about a second. Its `LISTEN` session is read by a task of its
/// own at all times, also while the relay publishes or hangs on a broker, so the server's
/// notification queue never waits for it; any number of notifications make one wake-up.
///
/// PostgreSQL transaction ids are server-wide, and so is MySQL's list of running
/// transactions: a transaction left open anywhere on the server (any database) holds
/// relaying back until it ends. Keep business transactions short and
/// watch `waybill.relay.oldest_pending_age` (`waybill_relay_oldest_pending_age` in Prometheus).
pub struct Relay {
    store: Arc<dyn RelayStore>,
    publisher: Arc<dyn Publisher>,
    config: RelayConfig,
    counters: Counters,
    leases: Leases,
    wait_alerts: WaitAlerts,
    instruments: RelayInstruments,
    /// When the database, and the lease rounds, began failing health checks.
    database_outage: Outage,
    lease_outage: Outage,
}

impl Relay {
    fn new(store: Arc<dyn RelayStore>, publisher: Arc<dyn Publisher>, config: RelayConfig) -> Self {
        Self {
            store,
            publisher,
            instruments: RelayInstruments::new(&config.name),
            config,
            counters: Counters::default(),
            leases: Leases::default(),
            wait_alerts: WaitAlerts::default(),
            database_outage: Outage::default(),
            lease_outage: Outage::default(),
        }
    }

    #[cfg(feature = "postgres")]
    /// A relay over a PostgreSQL database publishing through `publisher`.
    pub fn postgres(
        pool: sqlx::PgPool,
        publisher: Arc<dyn Publisher>,
        config: RelayConfig,
    ) -> Self {
        Self::new(
            Arc::new(crate::postgres::PgStore::new(pool)),
            publisher,
            config,
        )
    }

    #[cfg(feature = "sqlite")]
    /// A relay over a SQLite database publishing through `publisher`.
    pub fn sqlite(
        pool: sqlx::SqlitePool,
        publisher: Arc<dyn Publisher>,
        config: RelayConfig,
    ) -> Self {
        Self::new(
            Arc::new(crate::sqlite::SqliteStore::new(pool)),
            publisher,
            config,
        )
    }

    #[cfg(feature = "mysql")]
    /// A relay over a MySQL 8.0+ or MariaDB 10.6+ database publishing through `publisher`.
    ///
    /// Its database user needs the `PROCESS` privilege (commit order comes from
    /// `information_schema.innodb_trx`); without it, or on an older server, the first batch
    /// fails with [`OutboxError::Unsupported`] naming what is missing, and [`Relay::run`]
    /// stops with it.
    pub fn mysql(
        pool: sqlx::MySqlPool,
        publisher: Arc<dyn Publisher>,
        config: RelayConfig,
    ) -> Self {
        Self::new(
            Arc::new(crate::mysql::MySqlStore::new(pool)),
            publisher,
            config,
        )
    }

    /// The settings it runs with.
    pub fn config(&self) -> &RelayConfig {
        &self.config
    }

    /// What the relay did so far.
    pub fn stats(&self) -> RelayStats {
        RelayStats {
            published: self.counters.published.load(Relaxed),
            failed: self.counters.failed.load(Relaxed),
            destination_missing: self.counters.destination_missing.load(Relaxed),
            dead: self.counters.dead.load(Relaxed),
            batches: self.counters.batches.load(Relaxed),
            order_breaches: self.counters.order_breaches.load(Relaxed),
        }
    }

    /// How many shards this relay holds now.
    pub async fn shards_owned(&self) -> usize {
        self.leases.owned_count().await
    }

    /// Takes one batch of ready rows of the shards this relay holds and publishes it; returns
    /// how many rows it took. Renews the shard leases first when they are due.
    ///
    /// # Errors
    /// [`OutboxError`] when the database fails ([`OutboxError::ShardLayout`] when another
    /// relay runs with a different shard count); rows already confirmed stay deleted, the rest
    /// are taken again by the next batch.
    pub async fn relay_once(&self) -> Result<usize, OutboxError> {
        let shards = self.leases.current(&*self.store, &self.config).await?;
        if shards.is_empty() {
            return Ok(0);
        }
        let batch = self.take_batch(shards, &[]).await?;
        if batch.taken == 0 {
            return Ok(0);
        }
        self.counters.batches.fetch_add(1, Relaxed);
        let started = Instant::now();
        self.publish_rows(batch.rows).await?;
        self.instruments.batch_done(started.elapsed());
        Ok(batch.taken)
    }

    /// Publishes a batch's decoded rows key by key (pipelined or in rounds, see
    /// [`Relay`]); returns the keys that failed, whose later rows were left pending.
    async fn publish_rows(&self, rows: Vec<OutboxRow>) -> Result<HashSet<String>, OutboxError> {
        let pipelined = self.publisher.keeps_key_order_in_batch();
        let mut queues = key_queues(rows);
        let mut failed_keys = HashSet::new();
        while !queues.is_empty() {
            let round: Vec<Vec<OutboxRow>> = queues
                .iter_mut()
                .map(|queue| next_run(queue, pipelined))
                .collect();
            let failed_runs = self.publish_round(&round).await?;
            for ((queue, run), failed) in queues.iter_mut().zip(&round).zip(failed_runs) {
                if failed {
                    // The key is parked: its later rows wait for the failed one.
                    queue.clear();
                    failed_keys.extend(run.first().and_then(|row| row.key.clone()));
                }
            }
            queues.retain(|q| !q.is_empty());
        }
        Ok(failed_keys)
    }

    /// Publishes one run of rows per key (one topic per run, in `seq` order), deletes the
    /// confirmed ones, parks each key's first failed row. Returns, per run, whether its key
    /// failed.
    ///
    /// Within a run, the rows after a key's first failure are left as they are: they were not
    /// sent, or with an outcome the backend does not know, and the parked row holds them back
    /// until it is published. A confirm after a key's failure breaks the promise that made the
    /// run longer than one row ([`Publisher::keeps_key_order_in_batch`]): the row is stored,
    /// so it is deleted as published, and the breach is logged and counted.
    async fn publish_round(&self, round: &[Vec<OutboxRow>]) -> Result<Vec<bool>, OutboxError> {
        let mut by_topic: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        for (run, rows) in round.iter().enumerate() {
            if let Some(first) = rows.first() {
                let places = by_topic.entry(first.topic.as_str()).or_default();
                places.extend((0..rows.len()).map(|at| (run, at)));
            }
        }
        let publishes = by_topic.iter().map(|(topic, places)| {
            let messages: Vec<Message> = places
                .iter()
                .map(|(run, at)| round[*run][*at].message())
                .collect();
            async move { (places, self.publisher.publish_batch(topic, messages).await) }
        });
        let mut outcomes: Vec<Vec<Option<Result<BrokerPosition, PublishError>>>> = round
            .iter()
            .map(|rows| rows.iter().map(|_| None).collect())
            .collect();
        for (places, results) in join_all(publishes).await {
            for ((run, at), result) in places.iter().zip(results) {
                outcomes[*run][*at] = Some(result.map(|receipt| receipt.position));
            }
        }
        let sent_log = self.config.sent_log_retention.is_some();
        let mut confirmed = Vec::new();
        let mut failed = vec![false; round.len()];
        for (run, (rows, outcomes)) in round.iter().zip(outcomes).enumerate() {
            for (row, outcome) in rows.iter().zip(outcomes) {
                let outcome = outcome.unwrap_or_else(|| {
                    Err(PublishError::not_sent(
                        row.topic.clone(),
                        row.message(),
                        "publisher returned no result for this message",
                    ))
                });
                match outcome {
                    Ok(position) => {
                        if failed[run] {
                            self.order_breach(row);
                        }
                        confirmed.push(Confirmed {
                            seq: row.seq,
                            position: if sent_log {
                                position.to_string()
                            } else {
                                String::new()
                            },
                        });
                    }
                    Err(e) if !failed[run] => {
                        failed[run] = true;
                        self.park(row, &e).await?;
                    }
                    Err(e) => {
                        debug!(seq = row.seq, error = %e, "outbox row left pending behind its key's failed row");
                    }
                }
            }
        }
        if !confirmed.is_empty() {
            self.store.delete(&confirmed, sent_log).await?;
            self.counters
                .published
                .fetch_add(confirmed.len() as u64, Relaxed);
            self.instruments.published(confirmed.len());
        }
        Ok(failed)
    }

    /// A row confirmed after an earlier row of its key failed in the same run.
    fn order_breach(&self, row: &OutboxRow) {
        self.counters.order_breaches.fetch_add(1, Relaxed);
        self.instruments.order_breach();
        error!(
            alert = true,
            seq = row.seq,
            topic = %row.topic,
            "outbox row confirmed although an earlier row of its key failed in the same batch: \
             the backend broke its key-order promise, and if the earlier row was not stored, \
             consumers see this key out of order"
        );
    }

    /// Marks the rows that do not decode dead, with the decode error, before anything of the
    /// batch is published; returns the others. Like any dead row, a quarantined one no longer
    /// holds its key back, and it can be listed, replayed (once repaired) and purged.
    async fn quarantine(&self, rows: Vec<ReadyRow>) -> Result<Vec<OutboxRow>, OutboxError> {
        let mut decoded = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                Ok(row) => decoded.push(row),
                Err(Undecodable {
                    seq,
                    attempts,
                    error,
                }) => {
                    warn!(seq, error = %error, "outbox row quarantined: marked dead");
                    let failure = Failure {
                        attempts,
                        error: &error,
                        dead: true,
                        backoff: Duration::ZERO,
                        destination_missing: false,
                    };
                    self.store.park(seq, &failure).await?;
                    self.counters.dead.fetch_add(1, Relaxed);
                }
            }
        }
        Ok(decoded)
    }

    async fn park(&self, row: &OutboxRow, error: &PublishError) -> Result<(), OutboxError> {
        self.counters.failed.fetch_add(1, Relaxed);
        let failure = match error.outcome() {
            PublishOutcome::NoDestination => return self.park_for_destination(row, error).await,
            PublishOutcome::Permanent => (row.attempts.saturating_add(1), true),
            PublishOutcome::NotSent | PublishOutcome::Ambiguous => {
                let attempts = row.attempts.saturating_add(1);
                (attempts, attempts >= self.config.max_attempts)
            }
        };
        let (attempts, dead) = failure;
        let backoff = backoff(
            u32::try_from(attempts).unwrap_or(0),
            self.config.backoff_min,
            self.config.backoff_max,
        );
        if dead {
            self.counters.dead.fetch_add(1, Relaxed);
            warn!(seq = row.seq, attempts, error = %error, "outbox row marked dead");
        } else {
            debug!(seq = row.seq, attempts, ?backoff, error = %error, "outbox row parked");
        }
        let text = error.to_string();
        self.store
            .park(
                row.seq,
                &Failure {
                    attempts,
                    error: &text,
                    dead,
                    backoff,
                    destination_missing: false,
                },
            )
            .await
    }

    /// Parks a row whose destination does not exist yet, for up to `destination_wait` counted
    /// from its first such failure (stored with the row); marks it dead after that.
    async fn park_for_destination(
        &self,
        row: &OutboxRow,
        error: &PublishError,
    ) -> Result<(), OutboxError> {
        self.counters.destination_missing.fetch_add(1, Relaxed);
        let waited = Duration::from_millis(row.waited_ms.map_or(0, |ms| ms.max(0) as u64));
        let limit = self.config.destination_wait;
        let topic = &row.topic;
        let (text, dead, backoff) = match verdict(
            waited,
            limit,
            self.config.backoff_min,
            self.config.backoff_max,
        ) {
            Verdict::GiveUp => {
                self.counters.dead.fetch_add(1, Relaxed);
                error!(
                    seq = row.seq,
                    topic = %topic,
                    waited_secs = waited.as_secs(),
                    error = %error,
                    "outbox row marked dead: its destination is still missing after the \
                     destination wait"
                );
                let text = format!(
                    "destination {topic:?} was missing for {} s (destination_wait {} s): {error}",
                    waited.as_secs(),
                    limit.as_secs()
                );
                (text, true, Duration::ZERO)
            }
            Verdict::Wait(backoff) => {
                if self.wait_alerts.due(topic) {
                    warn!(
                        alert = true,
                        topic = %topic,
                        seq = row.seq,
                        waited_secs = waited.as_secs(),
                        destination_wait_secs = limit.as_secs(),
                        error = %error,
                        "outbox rows wait for their destination, which does not exist (yet): \
                         create the topic or start its consumers; their keys are held until \
                         then, and rows still waiting after the destination wait go dead"
                    );
                } else {
                    debug!(seq = row.seq, topic = %topic, ?waited, ?backoff, "outbox row waits for its destination");
                }
                let text = format!(
                    "waiting for destination {topic:?} for {} s: {error}",
                    waited.as_secs()
                );
                (text, false, backoff)
            }
        };
        self.store
            .park(
                row.seq,
                &Failure {
                    attempts: row.attempts,
                    error: &text,
                    dead,
                    backoff,
                    destination_missing: true,
                },
            )
            .await
    }

    /// Relays until `shutdown` completes: batch after batch while rows are ready, each next
    /// batch taken from the database while the previous one awaits its confirms (without
    /// taking a row twice or letting a key overtake a row that failed), then waits for a
    /// notification (or the poll interval). Renews the shard leases meanwhile and
    /// deletes dead rows past their retention. On shutdown the batch in flight finishes and
    /// the leases are given back, so other relays take the shards at once.
    ///
    /// # Errors
    /// Only errors that make relaying impossible (tables missing, credentials refused, a
    /// shard layout mismatch); transient database errors are logged and retried.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) -> Result<(), OutboxError> {
        info!(relay = %self.config.name, shards = self.config.shard_count, "relay starting");
        let outcome = tokio::select! {
            outcome = self.relay_until(shutdown) => outcome,
            () = self.leases.keep(&*self.store, &self.config) => unreachable!("renews forever"),
        };
        self.leases.release(&*self.store, &self.config).await;
        outcome
    }

    async fn relay_until(
        &self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), OutboxError> {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        let mut last_cleanup: Option<Instant> = None;
        let mut last_sample: Option<Instant> = None;
        // The next batch, taken while the previous one was published.
        let mut prefetched = None;
        loop {
            // Between batches: stop if asked (the batch in flight has finished).
            if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
                return Ok(());
            }
            if last_cleanup.is_none_or(|at| at.elapsed() >= CLEANUP_EVERY) {
                last_cleanup = Some(Instant::now());
                self.clean_up().await;
            }
            let idle = match self.relay_overlapped(&mut prefetched).await {
                Ok(n) => {
                    failures = 0;
                    (n as i64) < self.config.batch_size && prefetched.is_none()
                }
                Err(e) if e.is_transient() => {
                    prefetched = None;
                    failures = failures.saturating_add(1);
                    warn!(error = %e, "relay batch failed; retrying");
                    true
                }
                Err(e) => return Err(e),
            };
            if last_sample.is_none_or(|at| at.elapsed() >= BACKLOG_SAMPLE_EVERY) {
                last_sample = Some(Instant::now());
                // After the batch (the first one takes the leases): sets the backlog and
                // health gauges; a failure shows in the batch that follows.
                if let Err(e) = self.backlog().await {
                    debug!(error = %e, "backlog sample failed");
                }
                let health = self.health().await;
                if !health.is_ready() {
                    warn!(relay = %self.config.name, %health, "relay not ready");
                }
            }
            if !idle {
                continue;
            }
            let pause = if failures > 0 {
                backoff(failures, self.config.backoff_min, self.config.backoff_max)
            } else {
                self.config.poll_interval
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = self.store.wait_for_rows(pause) => {}
            }
        }
    }

    /// Deletes dead rows and sent-log entries past their retention (errors are logged; the
    /// next round retries).
    async fn clean_up(&self) {
        if let Some(retention) = self.config.sent_log_retention {
            match self.store.purge_sent(retention).await {
                Ok(0) => {}
                Ok(n) => info!(
                    entries = n,
                    ?retention,
                    "deleted sent-log entries past retention"
                ),
                Err(e) => warn!(error = %e, "sent-log cleanup failed"),
            }
        }
        let Some(retention) = self.config.dead_retention else {
            return;
        };
        if self.config.dead_letter_mode == DeadLetterMode::HoldKey {
            // A dead row holds its key's later rows: deleting it by age would release them.
            return;
        }
        let filter = DeadFilter {
            older_than: Some(retention),
            ..DeadFilter::default()
        };
        match self.store.purge(&filter).await {
            Ok(0) => {}
            Ok(n) => info!(
                rows = n,
                ?retention,
                "deleted dead outbox rows past retention"
            ),
            Err(e) => warn!(error = %e, "dead-row cleanup failed"),
        }
    }

    /// Reads the backlog: pending rows, the oldest one's age, dead rows.
    ///
    /// # Errors
    /// A database error.
    pub async fn backlog(&self) -> Result<Backlog, OutboxError> {
        let backlog = Backlog::total(&self.store.topics().await?);
        self.instruments.backlog(&backlog);
        Ok(backlog)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.store.ping().await
    }

    /// How the relay is doing, checked now: the database answers, the broker answers (the
    /// publisher's own check, see [`Publisher::health`]), and the last shard lease round is
    /// recent enough that its leases hold. The worst of the three decides; a `NotReady` part
    /// says since when. A relay that was never run reports `NotReady` ("no shard lease round
    /// has succeeded yet"); holding no shard (more relays than shards) is still ready.
    ///
    /// Also sets the `waybill.relay.ready` and `waybill.relay.shards_owned` gauges; a running
    /// relay checks every 15 s so the gauges stay current without a probe.
    pub async fn health(&self) -> Health {
        let database = self.database_outage.judge(if self.ping().await {
            Ok(())
        } else {
            Err("the outbox database does not answer")
        });
        let broker = self.publisher.health().await;
        let leases = self.lease_outage.judge(self.leases.round_current().await);
        let health = database.worst(broker).worst(leases);
        self.instruments
            .health(health.is_ready(), self.shards_owned().await);
        health
    }
}

/// One queue per key, in `seq` order; unkeyed rows each get their own.
fn key_queues(rows: Vec<OutboxRow>) -> Vec<VecDeque<OutboxRow>> {
    // Each row's queue first, by borrowed key, then the rows moved in: no key is copied.
    let mut count = 0;
    let mut next_queue = || {
        count += 1;
        count - 1
    };
    let mut by_key: foldhash::HashMap<&str, usize> = foldhash::HashMap::default();
    let queue_of: Vec<usize> = rows
        .iter()
        .map(|row| match row.key.as_deref() {
            Some(key) => *by_key.entry(key).or_insert_with(&mut next_queue),
            None => next_queue(),
        })
        .collect();
    drop(by_key);
    let mut queues: Vec<VecDeque<OutboxRow>> = (0..count).map(|_| VecDeque::new()).collect();
    for (row, at) in rows.into_iter().zip(queue_of) {
        queues[at].push_back(row);
    }
    queues
}

/// The rows of `queue` to publish next: the front row alone, or, when `pipelined`, the front
/// row and every row after it up to the first on another topic (a key's rows on two topics go
/// in two rounds, so that a failure on the first holds the second back).
fn next_run(queue: &mut VecDeque<OutboxRow>, pipelined: bool) -> Vec<OutboxRow> {
    let Some(first) = queue.pop_front() else {
        return Vec::new();
    };
    let mut run = vec![first];
    while pipelined && queue.front().is_some_and(|next| next.topic == run[0].topic) {
        run.extend(queue.pop_front());
    }
    run
}

/// The backoff after `attempts` failures: `min` doubling up to `max`.
fn backoff(attempts: u32, min: Duration, max: Duration) -> Duration {
    min.saturating_mul(1 << attempts.saturating_sub(1).min(20))
        .min(max)
}
