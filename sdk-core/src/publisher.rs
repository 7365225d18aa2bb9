//! The producer-side contract.

use async_trait::async_trait;
use futures_util::future::join_all;

use crate::broker_error::BrokerError;
use crate::health::Health;
use crate::message::Message;
use crate::publish_error::PublishError;
use crate::receipt::Receipt;

/// Publishes messages and returns only once the broker confirmed them as durable.
///
/// Implementations: `MemoryPublisher` here, `KafkaPublisher`, `RabbitPublisher` and
/// `RocketPublisher` in the backend crates. The trait is object safe: hold an
/// `Arc<dyn Publisher>` where the broker is chosen at run time.
///
/// Guarantees: `Ok(receipt)` means the broker acknowledged durability under its strongest
/// setting (Kafka `acks=all` + idempotence, RabbitMQ publisher confirm of a persistent message,
/// RocketMQ `SEND_OK`). `Err` always hands the message back and says whether it is certainly not
/// stored, maybe stored, not storable until its destination exists, or never storable
/// ([`crate::PublishOutcome`]).
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes one message to `topic` and waits for the broker's confirm.
    ///
    /// # Errors
    /// [`PublishError`] with the message handed back.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled publish may or may not have reached the broker (the outcome
    /// is ambiguous, and only the message id lets consumers drop a duplicate).
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError>;

    /// Publishes many messages with their confirms pipelined (many in flight at once) and
    /// returns one result per message, in input order.
    ///
    /// The default runs [`Publisher::publish`] for all messages concurrently; backends with a
    /// cheaper native batch path override it. Per-key order within one batch is kept by
    /// backends whose broker preserves send order per key (Kafka with idempotence, RabbitMQ on
    /// one channel); see each backend's documentation.
    ///
    /// # Cancel safety
    /// Not cancel safe, as for `publish`.
    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        join_all(messages.into_iter().map(|m| self.publish(topic, m))).await
    }

    /// Whether [`Publisher::publish_batch`] keeps the messages of one key in one call in
    /// order *also when some of them fail*, so that a caller may hand over many messages of a
    /// key at once instead of awaiting each confirm before sending the next. The outbox relay
    /// pipelines a key's rows when this is `true` and sends one row per key at a time
    /// otherwise.
    ///
    /// A backend answers `true` only when, for the messages of one key in one call:
    /// - the broker stores them in input order, and what it stores of them is a prefix of them:
    ///   a later one is never stored without the earlier ones;
    /// - once one of them fails, every later one fails too (not handed over, or handed over
    ///   with an outcome that is not known).
    ///
    /// Each shipped backend documents its argument, and the narrow broker-side cases where a
    /// later message can still be confirmed after an earlier one failed; the relay logs and
    /// counts any such result (`waybill.relay.order_breaches`). The default is `false`.
    fn keeps_key_order_in_batch(&self) -> bool {
        false
    }

    /// Waits for every publish in flight to be confirmed or failed, then refuses new publishes
    /// with a `NotSent` error. Closing twice is harmless.
    ///
    /// # Errors
    /// [`BrokerError`] when the connection could not be shut down cleanly; publishes already
    /// confirmed stay confirmed.
    async fn close(&self) -> Result<(), BrokerError>;

    /// Whether the broker can be reached now, checked on demand (for readiness probes).
    ///
    /// The shipped backends check their own connection: RabbitMQ its AMQP connection
    /// (reconnecting when it was lost), Kafka a metadata request, RocketMQ the name servers;
    /// a failing check reports [`Health::not_ready`] with the outage's start. A closed
    /// publisher reports [`Health::stopped`]. The default, for publishers that cannot tell,
    /// answers `Degraded` (still ready) with a reason that says nothing was checked.
    async fn health(&self) -> Health {
        Health::degraded("this publisher does not check its broker connection")
    }
}
