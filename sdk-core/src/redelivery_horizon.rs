//! The dedupe window check: how late a copy of a handled message can still reach a consumer
//! group, from the configuration in use, against how long its idempotency store remembers.

use std::fmt;
use std::time::Duration;

/// What [`ProcessorBuilder::build`](crate::ProcessorBuilder::build) does when the idempotency
/// store forgets handled messages sooner than the [`RedeliveryHorizon`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DedupeWindowCheck {
    /// Build, with a warning naming the retention and the horizon's sources (the default).
    #[default]
    Warn,
    /// Refuse to build, with a [`ConfigError`](crate::ConfigError) on `idempotency`.
    Refuse,
    /// Do not compare.
    Off,
}

/// How late a copy of a message can reach a consumer group after the first one, and why:
/// the sum of every source's span (a relay's late republish can still go through a retry
/// tier, so the spans add up).
///
/// The Processor adds its own retry policy ([`RetryPolicy::longest_retry_span`](
/// crate::RetryPolicy::longest_retry_span)); what lies upstream is the application's to add
/// with [`ProcessorBuilder::late_copies`](crate::ProcessorBuilder::late_copies): the outbox
/// relay's republish span (`RelayConfig::longest_republish_span` in `waybill-outbox`), how
/// far back an operator may replay (a Kafka topic's retention, a dead-letter queue kept for
/// a week).
///
/// ```
/// use std::time::Duration;
/// use waybill_core::RedeliveryHorizon;
///
/// let mut horizon = RedeliveryHorizon::default();
/// horizon.add("retry policy", Duration::from_secs(62));
/// horizon.add("kafka retention", Duration::from_secs(7 * 24 * 3600));
/// assert_eq!(horizon.total(), Duration::from_secs(62 + 7 * 24 * 3600));
/// assert_eq!(horizon.to_string(), "604862 s (retry policy 62 s + kafka retention 604800 s)");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedeliveryHorizon {
    sources: Vec<(String, Duration)>,
}

impl RedeliveryHorizon {
    /// Adds a source of late copies and how late they can be.
    pub fn add(&mut self, source: impl Into<String>, late_by: Duration) {
        self.sources.push((source.into(), late_by));
    }

    /// The horizon: every source's span added up.
    pub fn total(&self) -> Duration {
        self.sources
            .iter()
            .fold(Duration::ZERO, |sum, (_, d)| sum.saturating_add(*d))
    }

    /// The sources, in the order they were added.
    pub fn sources(&self) -> &[(String, Duration)] {
        &self.sources
    }
}

impl fmt::Display for RedeliveryHorizon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s (", self.total().as_secs())?;
        for (i, (source, late_by)) in self.sources.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "{source} {} s", late_by.as_secs())?;
        }
        f.write_str(")")
    }
}
