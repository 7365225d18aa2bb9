//! Relay settings.

use std::time::Duration;

use waybill_core::{ConfigError, DeadLetterMode};

/// Relay settings; build with [`RelayConfig::builder`].
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub(crate) batch_size: i64,
    pub(crate) poll_interval: Duration,
    pub(crate) max_attempts: i32,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) shard_count: i64,
    pub(crate) lease_ttl: Duration,
    pub(crate) name: String,
    pub(crate) dead_retention: Option<Duration>,
    pub(crate) sent_log_retention: Option<Duration>,
    pub(crate) destination_wait: Duration,
    pub(crate) dead_letter_mode: DeadLetterMode,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            max_attempts: 10,
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            shard_count: 16,
            lease_ttl: Duration::from_secs(30),
            name: format!(
                "relay-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            dead_retention: Some(Duration::from_secs(7 * 24 * 3600)),
            sent_log_retention: None,
            destination_wait: Duration::from_secs(3600),
            dead_letter_mode: DeadLetterMode::MoveOn,
        }
    }
}

impl RelayConfig {
    /// A builder from the defaults: batches of 500, poll every second (PostgreSQL's
    /// LISTEN/NOTIFY wakes it sooner), 10 attempts per row, backoff 500 ms doubling to 60 s,
    /// 16 shards with 30 s leases, a unique name, dead rows kept 7 days, rows wait up to an
    /// hour for a destination that does not exist yet.
    pub fn builder() -> RelayConfigBuilder {
        RelayConfigBuilder(Self::default())
    }

    /// The name this relay holds its leases under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rows taken per batch.
    pub fn batch_size(&self) -> usize {
        usize::try_from(self.batch_size).unwrap_or(usize::MAX)
    }

    /// Shards the keys hash into.
    pub fn shard_count(&self) -> u32 {
        u32::try_from(self.shard_count).unwrap_or(u32::MAX)
    }

    /// How long a row may wait for a destination that does not exist yet.
    pub fn destination_wait(&self) -> Duration {
        self.destination_wait
    }

    /// What a dead row does to the later rows of its key.
    pub fn dead_letter_mode(&self) -> DeadLetterMode {
        self.dead_letter_mode
    }

    /// How late this relay can publish another copy of a message it published before: the
    /// backoffs between a row's `max_attempts` attempts at their longest, plus the
    /// destination wait (a publish whose outcome was ambiguous is tried again, and its first
    /// copy may have arrived). Give it to the consumers for their dedupe window check:
    /// `ProcessorBuilder::late_copies("outbox relay", config.longest_republish_span())`. A
    /// dead row that an operator replays later is not counted: add the age of the dead rows
    /// you would still replay.
    ///
    /// ```
    /// use std::time::Duration;
    /// use waybill_outbox::RelayConfig;
    ///
    /// let config = RelayConfig::builder()
    ///     .max_attempts(4)
    ///     .backoff(Duration::from_secs(1), Duration::from_secs(3))
    ///     .destination_wait(Duration::from_secs(60))
    ///     .build()
    ///     .unwrap();
    /// // 1 + 2 + 3 s of backoff, and the destination wait.
    /// assert_eq!(config.longest_republish_span(), Duration::from_secs(66));
    /// ```
    pub fn longest_republish_span(&self) -> Duration {
        let attempts = u32::try_from(self.max_attempts).unwrap_or(0);
        (1..attempts)
            .map(|failures| super::backoff(failures, self.backoff_min, self.backoff_max))
            .fold(self.destination_wait, Duration::saturating_add)
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

    /// Shards the keys hash into (1 to 4,096). Every relay of a database must use the same
    /// count; a relay whose count differs from live leases refuses to run.
    pub fn shard_count(mut self, n: u32) -> Self {
        self.0.shard_count = i64::from(n);
        self
    }

    /// How long a shard lease lasts without renewal (renewed every third of it). A relay
    /// that stops renewing loses its shards to the others after this long.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.0.lease_ttl = ttl;
        self
    }

    /// The name leases are held under (unique per relay instance; default generated).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.0.name = name.into();
        self
    }

    /// Keeps a sent log: each confirmed row's id, topic, key and broker position is written
    /// to the `waybill_sent` table in the transaction that deletes the row, and entries older
    /// than `retention` are deleted with the dead-row clean-up. `waybill audit` compares this
    /// log with the consumers' inbox markers, so keep it at least as long as the windows you
    /// audit. Off (`None`) by default: it costs one more insert per relayed row.
    pub fn sent_log_retention(mut self, retention: Option<Duration>) -> Self {
        self.0.sent_log_retention = retention;
        self
    }

    /// How long dead rows are kept before the relay deletes them; `None` keeps them until
    /// they are purged or replayed by hand. Under [`DeadLetterMode::HoldKey`] the relay
    /// deletes no dead row by age (deleting one would silently release the rows it holds).
    pub fn dead_retention(mut self, retention: Option<Duration>) -> Self {
        self.0.dead_retention = retention;
        self
    }

    /// How long a row may wait for its destination to exist (default 1 hour): a publish that
    /// fails as [`waybill_core::PublishOutcome::NoDestination`] (an unknown topic, a RabbitMQ
    /// exchange nobody declared or one with no queue bound yet) parks the row, and so its key,
    /// with the usual backoff (`backoff`'s min doubling up to its max) and a `warn` log naming
    /// the topic and the time waited, instead of marking it dead: deploying a producer before
    /// its consumers loses nothing and keeps each key's order. Such failures do not use up
    /// `max_attempts`. The time counts from the first such failure, stored with the row, so it
    /// survives relay restarts; any other outcome ends the wait. A row still without a
    /// destination after this long is marked dead with an error saying for how long its
    /// destination was missing. Zero marks such rows dead at once (the behaviour for truly
    /// permanent failures: oversized, invalid, refused by policy).
    pub fn destination_wait(mut self, wait: Duration) -> Self {
        self.0.destination_wait = wait;
        self
    }

    /// What a dead row does to the later rows of its key (default
    /// [`DeadLetterMode::MoveOn`]: they are published). Under [`DeadLetterMode::HoldKey`] a
    /// key's rows after a dead one stay pending — held, in the outbox inspection — until the
    /// dead row is replayed (it is then published first, as its `seq` is the lowest) or
    /// purged; other keys flow on. Dead rows are then never deleted by age. See
    /// [`DeadLetterMode`] for the trade-off.
    pub fn dead_letter_mode(mut self, mode: DeadLetterMode) -> Self {
        self.0.dead_letter_mode = mode;
        self
    }

    /// Validates.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first unusable setting.
    pub fn build(self) -> Result<RelayConfig, ConfigError> {
        let c = self.0;
        let checks = [
            (
                !(1..=10_000).contains(&c.batch_size),
                "batch_size",
                "must be between 1 and 10000",
            ),
            (
                c.poll_interval.is_zero(),
                "poll_interval",
                "must be greater than zero",
            ),
            (c.max_attempts < 1, "max_attempts", "must be at least 1"),
            (
                c.backoff_min.is_zero() || c.backoff_max < c.backoff_min,
                "backoff",
                "min must be greater than zero and max at least min",
            ),
            (
                !(1..=4096).contains(&c.shard_count),
                "shard_count",
                "must be between 1 and 4096",
            ),
            (
                c.lease_ttl < Duration::from_millis(300),
                "lease_ttl",
                "must be at least 300 ms",
            ),
            (c.name.trim().is_empty(), "name", "must not be empty"),
        ];
        ConfigError::first_refused(checks)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_settings_are_named() {
        let field = |b: RelayConfigBuilder| b.build().unwrap_err().to_string();
        assert!(field(RelayConfig::builder().batch_size(0)).contains("batch_size"));
        assert!(field(RelayConfig::builder().shard_count(0)).contains("shard_count"));
        assert!(
            field(RelayConfig::builder().lease_ttl(Duration::from_millis(10)))
                .contains("lease_ttl")
        );
        assert!(field(RelayConfig::builder().name(" ")).contains("name"));
        assert!(RelayConfig::builder().build().is_ok());
        assert_eq!(
            RelayConfig::default().destination_wait(),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn default_names_differ() {
        assert_ne!(RelayConfig::default().name, RelayConfig::default().name);
    }
}
