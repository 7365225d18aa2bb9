//! Processor configuration and its validating builder.

use std::sync::Arc;
use std::time::Duration;

use crate::config_error::{validate_name, ConfigError};
use crate::idempotency::IdempotencyStore;
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
    pub(crate) claim_lease: Duration,
    pub(crate) drain_timeout: Duration,
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
            .field("claim_lease", &self.claim_lease)
            .field("drain_timeout", &self.drain_timeout)
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
                claim_lease: Duration::from_secs(60),
                drain_timeout: Duration::from_secs(30),
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

    /// The retry policy (default [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// The idempotency store that turns redeliveries into skipped duplicates.
    pub fn idempotency(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.config.idempotency = Some(store);
        self
    }

    /// How long a claim protects a message being handled (default 60 s). It must exceed the
    /// longest handling time, or another instance may handle the message at the same time.
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

    /// Validates and returns the processor.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field: `group` (empty or unusable), `concurrency` (zero),
    /// `max_buffered` (below concurrency), `claim_lease` or `drain_timeout` (zero).
    pub fn build(self) -> Result<crate::Processor, ConfigError> {
        let mut config = self.config;
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
        if config.claim_lease.is_zero() {
            return Err(ConfigError::new("claim_lease", "must be greater than zero"));
        }
        if config.drain_timeout.is_zero() {
            return Err(ConfigError::new(
                "drain_timeout",
                "must be greater than zero",
            ));
        }
        Ok(crate::Processor::from_config(config))
    }
}
