//! Names of the exchanges and queues a topic and consumer group use.

use std::time::Duration;

/// Where a topic's messages live for one consumer group.
///
/// - the topic is a durable fanout exchange named like the topic;
/// - each group has a durable quorum work queue `<topic>.<group>` bound to it;
/// - each retry tier is a durable quorum queue `<topic>.<group>.retry.<ms>ms` whose message TTL
///   dead-letters copies back (at-least-once) to the work queue through the default exchange;
/// - dead letters go to the durable quorum queue `<topic>.<group>.dlq`;
/// - a partitioned group ([`RabbitPartitionedSubscriber`](crate::RabbitPartitionedSubscriber)) has, instead of the work queue, a
///   topic exchange `<topic>.<group>.partitions` routing key routes to partition queues
///   `<topic>.<group>.p<n>` (its alternate exchange `<topic>.<group>.partitions.<n>.unrouted`
///   sends other routing keys to `p0`); its retry tiers dead-letter back to that exchange, and
///   its members hold exclusive slot queues `<topic>.<group>.member.<n>`.
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

    /// A partitioned group's topic exchange `<topic>.<group>.partitions`, bound to the
    /// topic's exchange; it sends each message to one partition queue by its key route.
    pub fn partition_exchange(&self) -> String {
        format!("{}.partitions", self.work)
    }

    /// The alternate exchange `<topic>.<group>.partitions.<partitions>.unrouted` of a group
    /// of `partitions` partitions: a fanout to partition 0 for messages whose routing key is
    /// no key route (from a producer that does not set one). Its name carries the partition
    /// count, so that declaring the group with another count is refused (the partition
    /// exchange's `alternate-exchange` argument differs) instead of binding a second scheme.
    pub fn partition_fallback_exchange(&self, partitions: u16) -> String {
        format!("{}.partitions.{partitions}.unrouted", self.work)
    }

    /// Partition `partition`'s work queue `<topic>.<group>.p<partition>` of a partitioned group.
    pub fn partition(&self, partition: u16) -> String {
        format!("{}.p{partition}", self.work)
    }

    /// Member slot `slot` of a partitioned group: an exclusive queue
    /// `<topic>.<group>.member.<slot>` that the member holding it keeps while connected.
    pub fn member_slot(&self, slot: u16) -> String {
        format!("{}.member.{slot}", self.work)
    }
}
