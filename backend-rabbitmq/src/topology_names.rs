//! Names of the exchanges and queues a topic and consumer group use.

use std::time::Duration;

/// Where a topic's messages live for one consumer group.
///
/// - the topic is a durable fanout exchange named like the topic;
/// - each group has a durable quorum work queue `<topic>.<group>` bound to it;
/// - each retry tier is a durable quorum queue `<topic>.<group>.retry.<ms>ms` whose message TTL
///   dead-letters copies back (at-least-once) to the work queue through the default exchange;
/// - dead letters go to the durable quorum queue `<topic>.<group>.dlq`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueNames {
    /// The exchange (the topic name).
    pub exchange: String,
    /// The group's work queue.
    pub work: String,
    /// The group's dead-letter queue.
    pub dead_letter: String,
}

impl QueueNames {
    /// Names for `topic` and `group`.
    pub fn new(topic: &str, group: &str) -> Self {
        Self {
            exchange: topic.to_owned(),
            work: format!("{topic}.{group}"),
            dead_letter: format!("{topic}.{group}.dlq"),
        }
    }

    /// The retry queue of the tier `tier`.
    pub fn retry_tier(&self, tier: Duration) -> String {
        format!("{}.retry.{}ms", self.work, tier.as_millis())
    }
}
