//! Processor configuration and its validating builder.

use std::sync::Arc;
use std::time::Duration;

use crate::config_error::{validate_name, ConfigError};
use crate::idempotency::IdempotencyStore;
use crate::key_holds::{DeadLetterMode, KeyHoldStore};
use crate::redelivery_horizon::{DedupeWindowCheck, RedeliveryHorizon};
use crate::retry_policy::RetryPolicy;

/// How the processor orders handling.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ordering {
    /// Messages of one key are handled one at a time, in the order received; a key whose
    /// message is retrying waits on its own retries while other keys go on. Messages without a
    /// key are handled independently. The default.
    #[default]
    PerKey,
    /// Every message is handled as soon as a slot is free: highest throughput, no order.
    Unordered,
}

/// A validated processor configuration; build it with [`crate::Processor::builder`].
#[derive(Clone)]
pub struct ProcessorConfig {
    pub(crate) group: String,
    pub(crate) concurrency: usize,
    pub(crate) max_buffered: usize,
    pub(crate) ordering: Ordering,
    pub(crate) retry: RetryPolicy,
    pub(crate) idempotency: Option<Arc<dyn IdempotencyStore>>,
    pub(crate) at_least_once_effects: bool,
    pub(crate) claim_lease: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) redelivery_hold: Duration,
    pub(crate) degraded_failure_ratio: f64,
    pub(crate) lag_interval: Duration,
    pub(crate) dead_letter_mode: DeadLetterMode,
    pub(crate) key_holds: Option<Arc<dyn KeyHoldStore>>,
    pub(crate) dedupe_window_check: DedupeWindowCheck,
    /// The sources of late copies the application named; the retry policy is added at build.
    pub(crate) late_copies: RedeliveryHorizon,
    pub(crate) max_batch: usize,
    pub(crate) batch_window: Duration,
}

impl ProcessorConfig {
    /// The consumer group name recorded in dead letters and used as the idempotency scope.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Handlers running at once, at most.
    pub fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The ordering mode.
    pub fn ordering(&self) -> Ordering {
        self.ordering
    }

    /// Messages per call of a [`BatchHandler`](crate::BatchHandler), at most.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// How long a batch waits for more messages after its first.
    pub fn batch_window(&self) -> Duration {
        self.batch_window
    }

    /// What a dead letter does to the later messages of its key.
    pub fn dead_letter_mode(&self) -> DeadLetterMode {
        self.dead_letter_mode
    }

    /// How late a copy of a handled message can still arrive: the retry policy's
    /// [`longest_retry_span`](RetryPolicy::longest_retry_span) and every source named with
    /// [`ProcessorBuilder::late_copies`].
    pub fn redelivery_horizon(&self) -> RedeliveryHorizon {
        let mut horizon = RedeliveryHorizon::default();
        horizon.add("retry policy", self.retry.longest_retry_span());
        for (source, late_by) in self.late_copies.sources() {
            horizon.add(source.clone(), *late_by);
        }
        horizon
    }
}

impl std::fmt::Debug for ProcessorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorConfig")
            .field("group", &self.group)
            .field("concurrency", &self.concurrency)
            .field("max_buffered", &self.max_buffered)
            .field("ordering", &self.ordering)
            .field("retry", &self.retry)
            .field("idempotency", &self.idempotency.is_some())
            .field("at_least_once_effects", &self.at_least_once_effects)
            .field("claim_lease", &self.claim_lease)
            .field("drain_timeout", &self.drain_timeout)
            .field("redelivery_hold", &self.redelivery_hold)
            .field("dead_letter_mode", &self.dead_letter_mode)
            .field("max_batch", &self.max_batch)
            .field("batch_window", &self.batch_window)
            .finish()
    }
}

/// Builds a [`crate::Processor`]; `build()` validates every field.
///
/// ```
/// use std::sync::Arc;
/// use waybill_core::{InMemoryIdempotencyStore, Ordering, Processor};
///
/// let processor = Processor::builder("billing")
///     .concurrency(32)
///     .ordering(Ordering::PerKey)
///     .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
///     .build()
///     .unwrap();
/// # let _ = processor;
/// let err = Processor::builder("billing").concurrency(0).build().unwrap_err();
/// assert_eq!(err.field(), "concurrency");
/// ```
#[derive(Clone)]
pub struct ProcessorBuilder {
    config: ProcessorConfig,
    max_buffered: Option<usize>,
}

impl ProcessorBuilder {
    pub(crate) fn new(group: String) -> Self {
        Self {
            config: ProcessorConfig {
                group,
                concurrency: 64,
                max_buffered: 0,
                ordering: Ordering::PerKey,
                retry: RetryPolicy::default(),
                idempotency: None,
                at_least_once_effects: false,
                claim_lease: Duration::from_secs(60),
                drain_timeout: Duration::from_secs(30),
                redelivery_hold: Duration::from_secs(30),
                degraded_failure_ratio: 0.5,
                lag_interval: Duration::from_secs(15),
                dead_letter_mode: DeadLetterMode::MoveOn,
                key_holds: None,
                dedupe_window_check: DedupeWindowCheck::Warn,
                late_copies: RedeliveryHorizon::default(),
                max_batch: 64,
                batch_window: Duration::ZERO,
            },
            max_buffered: None,
        }
    }

    /// Handlers running at once, at most (default 64).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n;
        self
    }

    /// Messages received but not yet settled, at most (default 4 × concurrency under `PerKey`,
    /// where messages wait behind their key; equal to concurrency under `Unordered`).
    pub fn max_buffered(mut self, n: usize) -> Self {
        self.max_buffered = Some(n);
        self
    }

    /// The ordering mode (default [`Ordering::PerKey`]).
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.config.ordering = ordering;
        self
    }

    /// Messages per call of a [`BatchHandler`](crate::BatchHandler), at most (default 64;
    /// only for [`Processor::start_batch`](crate::Processor::start_batch)). A batch never holds
    /// more than [`concurrency`](Self::concurrency) messages, because each of its messages
    /// holds a handler slot: give a concurrency of two to four batches, so that the next batch
    /// is gathered while one commits (batches run at once up to concurrency / `max_batch`).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.config.max_batch = n;
        self
    }

    /// How long a batch waits for more messages after its first (default zero: a batch takes
    /// the messages ready at that moment, and those that arrive while earlier batches run
    /// make the next one larger). A longer window makes batches larger under light load, at
    /// that much more latency.
    pub fn batch_window(mut self, window: Duration) -> Self {
        self.config.batch_window = window;
        self
    }

    /// The retry policy (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// The idempotency store that turns redeliveries into skipped duplicates. A processor
    /// needs one, or an explicit [`at_least_once_effects`](Self::at_least_once_effects).
    pub fn idempotency(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.config.idempotency = Some(store);
        self
    }

    /// Runs without an idempotency store, accepting **at-least-once effects**: a message
    /// delivered again (after a crash, a rebalance, a lost ack, an ambiguous publish) is
    /// handled again, and around a rebalance two copies may be handled at once, out of key
    /// order. Only for handlers that are idempotent by themselves. Without this call or a
    /// store, [`build`](Self::build) refuses.
    pub fn at_least_once_effects(mut self) -> Self {
        self.config.at_least_once_effects = true;
        self
    }

    /// How long a claim protects a message being handled without renewal (default 60 s).
    /// While the handler runs the processor renews the claim every third of the lease, so a
    /// slow handler keeps it; the lease is what a crashed consumer's claim lasts before
    /// another instance takes the message over. The claim's fencing token stops a holder that
    /// lost it (e.g. paused longer than the lease) from recording a second effect.
    pub fn claim_lease(mut self, lease: Duration) -> Self {
        self.config.claim_lease = lease;
        self
    }

    /// How long shutdown waits for in-flight messages (default 30 s). Shutdown then closes the
    /// subscriber and returns; handlers still running are not interrupted, but their
    /// settlement fails and the broker delivers those messages again (the idempotency claim
    /// keeps a second consumer from handling one while its lease lasts).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// How long a key waits, at most, for a message whose retry or dead-letter copy could not
    /// be published to be delivered again, before the key's later messages go on (default
    /// 30 s). The broker delivers such a message again (at once on the log brokers, after a
    /// requeue or reconnect on RabbitMQ); until it does, its successors wait so they cannot
    /// overtake it.
    pub fn redelivery_hold(mut self, hold: Duration) -> Self {
        self.config.redelivery_hold = hold;
        self
    }

    /// The share of handler runs that must fail, over the last 30 to 60 s and at least 10
    /// runs, for [`RunningProcessor::health`](crate::RunningProcessor::health) to report
    /// `Degraded` (default 0.5). A degraded processor still works (it stays ready); the state
    /// is for dashboards and alerts.
    pub fn degraded_failure_ratio(mut self, ratio: f64) -> Self {
        self.config.degraded_failure_ratio = ratio;
        self
    }

    /// How often the consumer lag is read from the broker into the `waybill.consumer.lag`
    /// gauge (default 15 s), when the subscriber offers a
    /// [`lag_probe`](crate::Subscriber::lag_probe).
    pub fn lag_interval(mut self, interval: Duration) -> Self {
        self.config.lag_interval = interval;
        self
    }

    /// What a dead letter does to the later messages of its key (default
    /// [`DeadLetterMode::MoveOn`]; see [`DeadLetterMode`] for the trade-off).
    /// [`DeadLetterMode::HoldKey`] needs [`key_holds`](Self::key_holds) and
    /// [`Ordering::PerKey`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// use waybill_core::{DeadLetterMode, InMemoryIdempotencyStore, InMemoryKeyHolds, Ordering, Processor};
    ///
    /// let store = Arc::new(InMemoryIdempotencyStore::default());
    /// let holding = Processor::builder("billing")
    ///     .idempotency(store.clone())
    ///     .dead_letter_mode(DeadLetterMode::HoldKey)
    ///     .key_holds(Arc::new(InMemoryKeyHolds::new()))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(holding.config().dead_letter_mode(), DeadLetterMode::HoldKey);
    ///
    /// let without_store = Processor::builder("billing")
    ///     .idempotency(store.clone())
    ///     .dead_letter_mode(DeadLetterMode::HoldKey)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(without_store.field(), "dead_letter_mode");
    /// let unordered = Processor::builder("billing")
    ///     .idempotency(store)
    ///     .ordering(Ordering::Unordered)
    ///     .dead_letter_mode(DeadLetterMode::HoldKey)
    ///     .key_holds(Arc::new(InMemoryKeyHolds::new()))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(unordered.to_string().contains("PerKey"), "{unordered}");
    /// ```
    pub fn dead_letter_mode(mut self, mode: DeadLetterMode) -> Self {
        self.config.dead_letter_mode = mode;
        self
    }

    /// Where the group records its held keys under [`DeadLetterMode::HoldKey`]: a store
    /// shared by every member of the group (the SQL inboxes of `waybill-outbox` are one).
    pub fn key_holds(mut self, store: Arc<dyn KeyHoldStore>) -> Self {
        self.config.key_holds = Some(store);
        self
    }

    /// Names a source of late copies of a message and how late they can come, for the dedupe
    /// window check: the outbox relay's republish span (`RelayConfig::longest_republish_span`
    /// in `waybill-outbox`), how far back an operator may replay (a Kafka topic's retention,
    /// the age of the dead letters you would still replay). Repeatable; the spans add up.
    pub fn late_copies(mut self, source: impl Into<String>, late_by: Duration) -> Self {
        self.config.late_copies.add(source, late_by);
        self
    }

    /// What [`build`](Self::build) does when the idempotency store's
    /// [`retention`](IdempotencyStore::retention) is shorter than the
    /// [`redelivery_horizon`](ProcessorConfig::redelivery_horizon): warn (the default),
    /// refuse, or nothing. A copy arriving after the store forgot its message is handled again.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use waybill_core::{DedupeWindowCheck, InMemoryIdempotencyStore, Processor};
    ///
    /// let one_hour = Arc::new(InMemoryIdempotencyStore::new(Duration::from_secs(3600), 1_000));
    /// let refused = Processor::builder("billing")
    ///     .idempotency(one_hour.clone())
    ///     .late_copies("kafka retention", Duration::from_secs(7 * 24 * 3600))
    ///     .dedupe_window_check(DedupeWindowCheck::Refuse)
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(refused.field(), "idempotency");
    /// assert!(refused.to_string().contains("kafka retention"), "{refused}");
    ///
    /// let within = Processor::builder("billing")
    ///     .idempotency(one_hour)
    ///     .late_copies("outbox relay", Duration::from_secs(600))
    ///     .dedupe_window_check(DedupeWindowCheck::Refuse)
    ///     .build();
    /// assert!(within.is_ok());
    /// ```
    pub fn dedupe_window_check(mut self, check: DedupeWindowCheck) -> Self {
        self.config.dedupe_window_check = check;
        self
    }

    /// Validates and returns the processor.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field: `group` (empty or unusable), `idempotency` (neither a
    /// store nor [`at_least_once_effects`](Self::at_least_once_effects)), `concurrency`
    /// (zero), `max_buffered` (below concurrency), `claim_lease` or `drain_timeout` (zero),
    /// `degraded_failure_ratio` (not above 0 and at most 1), `lag_interval` (zero),
    /// `max_batch` (zero),
    /// `dead_letter_mode` ([`DeadLetterMode::HoldKey`] without a
    /// [`key_holds`](Self::key_holds) store, or with [`Ordering::Unordered`]), and
    /// `idempotency` again under [`DedupeWindowCheck::Refuse`] when the store's retention is
    /// shorter than the redelivery horizon.
    pub fn build(self) -> Result<crate::Processor, ConfigError> {
        let mut config = self.config;
        if config.group.is_empty() {
            return Err(ConfigError::new(
                "group",
                "must not be empty (a subscriber that names no consumer group needs \
                 Processor::builder(group))",
            ));
        }
        validate_name("group", &config.group)?;
        if config.concurrency == 0 {
            return Err(ConfigError::new("concurrency", "must be at least 1"));
        }
        config.max_buffered = match (self.max_buffered, config.ordering) {
            (Some(n), _) => n,
            (None, Ordering::PerKey) => config.concurrency.saturating_mul(4),
            (None, Ordering::Unordered) => config.concurrency,
        };
        if config.max_buffered < config.concurrency {
            return Err(ConfigError::new(
                "max_buffered",
                format!(
                    "{} is below concurrency {}",
                    config.max_buffered, config.concurrency
                ),
            ));
        }
        if config.max_batch == 0 {
            return Err(ConfigError::new("max_batch", "must be at least 1"));
        }
        if config.claim_lease.is_zero() {
            return Err(ConfigError::new("claim_lease", "must be greater than zero"));
        }
        if config.drain_timeout.is_zero() {
            return Err(ConfigError::new(
                "drain_timeout",
                "must be greater than zero",
            ));
        }
        if config.lag_interval.is_zero() {
            return Err(ConfigError::new(
                "lag_interval",
                "must be greater than zero",
            ));
        }
        if !(config.degraded_failure_ratio > 0.0 && config.degraded_failure_ratio <= 1.0) {
            return Err(ConfigError::new(
                "degraded_failure_ratio",
                format!(
                    "{} is not above 0 and at most 1",
                    config.degraded_failure_ratio
                ),
            ));
        }
        if config.idempotency.is_none() && !config.at_least_once_effects {
            return Err(ConfigError::new(
                "idempotency",
                "no idempotency store: give one with .idempotency(store), or call \
                 .at_least_once_effects() to accept that a redelivered message is handled again",
            ));
        }
        if config.dead_letter_mode == DeadLetterMode::HoldKey {
            if config.key_holds.is_none() {
                return Err(ConfigError::new(
                    "dead_letter_mode",
                    "HoldKey needs a store for the held keys, shared by the group: give one \
                     with .key_holds(store) (the SQL inbox stores of waybill-outbox, or \
                     InMemoryKeyHolds for a single instance)",
                ));
            }
            if config.ordering == Ordering::Unordered {
                return Err(ConfigError::new(
                    "dead_letter_mode",
                    "HoldKey keeps a key's order through a repair, so it needs \
                     Ordering::PerKey",
                ));
            }
        }
        check_dedupe_window(&config)?;
        Ok(crate::Processor::from_config(config))
    }
}

/// Compares the store's retention with the redelivery horizon, as the configuration asks.
fn check_dedupe_window(config: &ProcessorConfig) -> Result<(), ConfigError> {
    let Some(retention) = config.idempotency.as_ref().and_then(|s| s.retention()) else {
        return Ok(());
    };
    let horizon = config.redelivery_horizon();
    if config.dedupe_window_check == DedupeWindowCheck::Off || retention >= horizon.total() {
        return Ok(());
    }
    let problem = format!(
        "the idempotency store remembers handled messages for {} s, but a copy can arrive up \
         to {horizon} later: such a copy would be handled again; keep markers longer, or \
         shorten what arrives late",
        retention.as_secs()
    );
    if config.dedupe_window_check == DedupeWindowCheck::Refuse {
        return Err(ConfigError::new("idempotency", problem));
    }
    tracing::warn!(group = %config.group, "{problem}");
    Ok(())
}
