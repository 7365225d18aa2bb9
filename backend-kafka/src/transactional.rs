//! Kafka transactions: several messages, and optionally the consumer offsets they were made
//! from, committed atomically (consume-transform-produce).

use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use waybill_core::{BrokerError, FailureClass, Message, PublishError, Receipt};

use crate::config::KafkaConfig;
use crate::error_class::broker_error;
use crate::publisher::KafkaPublisher;
use crate::subscriber::KafkaSubscriber;

/// A transactional producer (`transactional.id`): messages sent between
/// [`TransactionalPublisher::begin`] and [`TransactionalPublisher::commit`] become visible to
/// `read_committed` consumers (waybill's subscribers) all together or not at all; with
/// [`TransactionalPublisher::send_offsets`] the consumed offsets commit in the same
/// transaction.
///
/// This is an **addition to the idempotency store, not a replacement**: a transaction covers
/// what happens inside Kafka, but a handler's effects in a database or another system are
/// outside it, and a zombie producer fenced after its timeout may still have acted. Keep the
/// store (or the transactional inbox) for effects outside Kafka.
///
/// **Fencing is final.** When another instance starts with the same `transactional.id`, the
/// broker fences this one (zombie fencing): librdkafka raises a fatal error, `begin`,
/// `send_offsets`, `commit` and `abort` then fail with a *permanent* [`BrokerError`] and
/// `send` with a *not sent* [`PublishError`], both saying the producer is fatal and not
/// recreated. Unlike [`KafkaPublisher`], which replaces its producer after a fatal error, this
/// publisher never recreates itself: the newer instance owns the id, and a fenced zombie that
/// came back to life would write next to it. Drop it; create a new one only where this
/// instance is known to be the rightful owner again.
///
/// Not every Kafka-protocol broker implements transactions; a broker that does not answers
/// `begin`/`commit` with an error, which is returned as is.
pub struct TransactionalPublisher {
    inner: KafkaPublisher,
    producer: FutureProducer,
    timeout: Duration,
}

fn txn_error(operation: &'static str, e: &KafkaError) -> BrokerError {
    if let KafkaError::Transaction(t) = e {
        if t.is_fatal() {
            return BrokerError::permanent(
                operation,
                format!(
                    "{e}: fatal, this producer can no longer be used (fenced by a newer \
                     instance with the same transactional.id, or its producer state was lost); \
                     it is not recreated"
                ),
            );
        }
    }
    let class = match e {
        KafkaError::Transaction(t) if t.is_retriable() || t.txn_requires_abort() => {
            FailureClass::Transient
        }
        KafkaError::Transaction(_) => FailureClass::Permanent,
        _ => broker_error(operation, e).class(),
    };
    BrokerError::new(class, operation, e.to_string())
}

impl TransactionalPublisher {
    /// Creates the producer with `transactional_id` (stable per producer instance: a restart
    /// with the same id fences the old one) and initialises transactions.
    ///
    /// # Errors
    /// [`BrokerError`] when the broker is unreachable or does not support transactions.
    pub async fn connect(config: KafkaConfig, transactional_id: &str) -> Result<Self, BrokerError> {
        crate::connect_probe::check_reachable(&config).await?;
        let mut client = config.producer();
        client.set("transactional.id", transactional_id);
        let producer: FutureProducer = client.create().map_err(|e| broker_error("connect", &e))?;
        let timeout = config.delivery_timeout;
        let init = producer.clone();
        tokio::task::spawn_blocking(move || init.init_transactions(timeout))
            .await
            .map_err(|e| BrokerError::transient("init transactions", e.to_string()))?
            .map_err(|e| txn_error("init transactions", &e))?;
        Ok(Self {
            inner: KafkaPublisher::wrap(producer.clone(), config, false),
            producer,
            timeout,
        })
    }

    /// The producer. Test support only: lets a test drive the real client into a fatal error.
    #[cfg(feature = "testkit")]
    #[doc(hidden)]
    pub fn producer_for_tests(&self) -> FutureProducer {
        self.producer.clone()
    }

    /// Opens a transaction.
    ///
    /// # Errors
    /// [`BrokerError`] when one is already open, or *permanent* for good once the producer
    /// was fenced (or hit another fatal error).
    pub fn begin(&self) -> Result<(), BrokerError> {
        self.usable("begin transaction")?;
        self.producer
            .begin_transaction()
            .map_err(|e| txn_error("begin transaction", &e))
    }

    /// Sends `message` inside the open transaction. Its receipt says where it will be once
    /// the transaction commits.
    ///
    /// # Errors
    /// [`PublishError`] with the message handed back; then abort the transaction. After a
    /// fatal error (fenced) every send fails as *not sent*: nothing of an unfinished
    /// transaction of a fenced producer becomes visible.
    pub async fn send(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        waybill_core::Publisher::publish(&self.inner, topic, message).await
    }

    /// Adds the offsets `subscriber` consumed up to (`next offset to read` per partition) to
    /// the open transaction: they commit with it, as the group's committed offsets.
    ///
    /// # Errors
    /// [`BrokerError`] when the subscriber has no group metadata yet or the broker refuses.
    pub async fn send_offsets(
        &self,
        subscriber: &KafkaSubscriber,
        offsets: &[(String, i32, i64)],
    ) -> Result<(), BrokerError> {
        self.usable("send offsets")?;
        let consumer = subscriber.consumer();
        let metadata = consumer.group_metadata().ok_or_else(|| {
            BrokerError::transient(
                "send offsets",
                "the subscriber has not joined its group yet",
            )
        })?;
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next))
                .map_err(|e| broker_error("send offsets", &e))?;
        }
        let producer = self.producer.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            producer.send_offsets_to_transaction(&tpl, &metadata, timeout)
        })
        .await
        .map_err(|e| BrokerError::transient("send offsets", e.to_string()))?
        .map_err(|e| txn_error("send offsets", &e))
    }

    /// Commits the open transaction: every message sent in it (and the offsets) at once.
    ///
    /// # Errors
    /// [`BrokerError`]: transient ones mean abort and try the whole transaction again;
    /// *permanent* for good once the producer was fenced.
    pub async fn commit(&self) -> Result<(), BrokerError> {
        self.usable("commit transaction")?;
        let producer = self.producer.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || producer.commit_transaction(timeout))
            .await
            .map_err(|e| BrokerError::transient("commit transaction", e.to_string()))?
            .map_err(|e| txn_error("commit transaction", &e))
    }

    /// Aborts the open transaction: nothing sent in it becomes visible to `read_committed`
    /// consumers.
    ///
    /// # Errors
    /// [`BrokerError`] when the broker cannot be told.
    pub async fn abort(&self) -> Result<(), BrokerError> {
        self.usable("abort transaction")?;
        let producer = self.producer.clone();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || producer.abort_transaction(timeout))
            .await
            .map_err(|e| BrokerError::transient("abort transaction", e.to_string()))?
            .map_err(|e| txn_error("abort transaction", &e))
    }
}

impl TransactionalPublisher {
    /// Refuses (permanently) once the producer hit a fatal error: it is never recreated.
    fn usable(&self, operation: &'static str) -> Result<(), BrokerError> {
        match self.producer.client().fatal_error() {
            None => Ok(()),
            Some((code, reason)) => Err(BrokerError::permanent(
                operation,
                format!(
                    "fatal producer error {code:?} ({reason}): this producer can no longer be \
                     used (fenced by a newer instance with the same transactional.id, or its \
                     producer state was lost); it is not recreated"
                ),
            )),
        }
    }
}

impl std::fmt::Debug for TransactionalPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalPublisher")
            .finish_non_exhaustive()
    }
}
