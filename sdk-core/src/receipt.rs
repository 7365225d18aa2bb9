//! What a broker says back when it confirmed a message.

use crate::message_id::MessageId;

/// Proof that the broker confirmed a message as durable, with where it put it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// Id of the confirmed message.
    pub message_id: MessageId,
    /// Topic, exchange or queue it was published to.
    pub topic: String,
    /// The broker's position for it.
    pub position: BrokerPosition,
}

/// Where a broker stored a confirmed message. Variants describe shapes, not brokers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerPosition {
    /// A partitioned log (Kafka): partition and offset.
    PartitionOffset {
        /// Partition number.
        partition: i32,
        /// Offset within the partition.
        offset: i64,
    },
    /// A channel-scoped confirm (RabbitMQ publisher confirms): the delivery tag.
    DeliveryTag(u64),
    /// A queue-based log (RocketMQ): broker message id, queue id and queue offset.
    QueueOffset {
        /// The broker-assigned message id.
        broker_message_id: String,
        /// Queue number within the topic.
        queue_id: i32,
        /// Offset within the queue.
        queue_offset: i64,
    },
    /// A single ordered log (the in-memory broker): sequence number within the topic.
    Sequence(u64),
}

/// A short, stable text for logs and the outbox's sent log: `partition 2 offset 17`,
/// `delivery tag 5`, `queue 3 offset 40 (broker id …)`, `sequence 9`.
impl std::fmt::Display for BrokerPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PartitionOffset { partition, offset } => {
                write!(f, "partition {partition} offset {offset}")
            }
            Self::DeliveryTag(tag) => write!(f, "delivery tag {tag}"),
            Self::QueueOffset {
                broker_message_id,
                queue_id,
                queue_offset,
            } => write!(
                f,
                "queue {queue_id} offset {queue_offset} (broker id {broker_message_id})"
            ),
            Self::Sequence(n) => write!(f, "sequence {n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BrokerPosition;

    #[test]
    fn positions_read_as_text() {
        let log = BrokerPosition::PartitionOffset {
            partition: 2,
            offset: 17,
        };
        assert_eq!(log.to_string(), "partition 2 offset 17");
        assert_eq!(BrokerPosition::DeliveryTag(5).to_string(), "delivery tag 5");
        let queue = BrokerPosition::QueueOffset {
            broker_message_id: "AC1".into(),
            queue_id: 3,
            queue_offset: 40,
        };
        assert_eq!(queue.to_string(), "queue 3 offset 40 (broker id AC1)");
        assert_eq!(BrokerPosition::Sequence(9).to_string(), "sequence 9");
    }
}
