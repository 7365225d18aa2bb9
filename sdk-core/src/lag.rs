//! Consumer lag: how many messages a consumer group has not consumed yet, read from the broker.

use std::sync::Arc;

use async_trait::async_trait;
use metrics::gauge;

use crate::broker_error::BrokerError;
use crate::telemetry::{attributes, names};

/// The backlog of one partition (Kafka), message queue (RocketMQ) or queue (RabbitMQ).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic the partition belongs to (a group's retry topic has its own lines).
    pub destination: String,
    /// The partition number, message queue (`broker:queue id`) or queue name.
    pub partition: String,
    /// Messages not yet consumed: log end minus committed offset, or messages ready plus
    /// unacknowledged.
    pub lag: u64,
}

/// A consumer group's backlog, read from the broker at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerLag {
    /// `kafka`, `rabbitmq`, `rocketmq` or `memory`.
    pub system: &'static str,
    /// The consumer group.
    pub group: String,
    /// One line per partition or queue the group consumes.
    pub partitions: Vec<PartitionLag>,
    /// Messages waiting in the group's dead-letter queue, where the broker keeps one per group
    /// and can count it (RabbitMQ); `None` elsewhere.
    pub dead_letter_depth: Option<u64>,
}

impl ConsumerLag {
    /// The sum over every partition.
    pub fn total(&self) -> u64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }

    /// Sets the `waybill.consumer.lag` gauge of every partition and, when known,
    /// `waybill.consumer.dead_letter_depth` (labelled by the first partition's destination).
    #[allow(clippy::cast_precision_loss)] // a gauge is an f64
    pub fn record(&self) {
        for p in &self.partitions {
            gauge!(
                names::CONSUMER_LAG,
                attributes::SYSTEM => self.system,
                attributes::DESTINATION => p.destination.clone(),
                attributes::GROUP => self.group.clone(),
                attributes::PARTITION => p.partition.clone()
            )
            .set(p.lag as f64);
        }
        if let (Some(depth), Some(first)) = (self.dead_letter_depth, self.partitions.first()) {
            gauge!(
                names::DEAD_LETTER_DEPTH,
                attributes::SYSTEM => self.system,
                attributes::DESTINATION => first.destination.clone(),
                attributes::GROUP => self.group.clone()
            )
            .set(depth as f64);
        }
    }
}

/// Reads a consumer group's lag from the broker, apart from the subscriber that consumes
/// (which a running processor owns). Get one from [`crate::Subscriber::lag_probe`].
#[async_trait]
pub trait LagProbe: Send + Sync {
    /// The group's lag now.
    ///
    /// # Errors
    /// [`BrokerError`] when the broker cannot be asked (transient) or refuses (permanent).
    async fn lag(&self) -> Result<ConsumerLag, BrokerError>;
}

#[async_trait]
impl<P: LagProbe + ?Sized> LagProbe for Arc<P> {
    async fn lag(&self) -> Result<ConsumerLag, BrokerError> {
        (**self).lag().await
    }
}
