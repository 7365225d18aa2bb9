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
