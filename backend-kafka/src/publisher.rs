//! Confirmed publishing: `acks=all`, the idempotent producer, pipelined batches.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::join_all;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use waybill_core::{
    BrokerError, BrokerPosition, FailedKeys, Health, Message, Outage, PublishError, PublishOutcome,
    Publisher, Receipt,
};

use crate::config::KafkaConfig;
use crate::connect_probe::check_reachable;
use crate::error_class::{broker_error, publish_outcome};
use crate::names::check_topic;
use crate::producer_slot::ProducerSlot;
use crate::wire::{identity_headers, record_headers, record_size};

/// How long a health check, or the producer's warm-up at connect, waits for a broker's
/// metadata answer.
const HEALTH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Publishes to Kafka and returns only once the leader confirmed the write to all in-sync
/// replicas (`acks=all`), with the idempotent producer on: librdkafka's own retries never
/// duplicate or reorder a partition's messages.
///
/// Keys are partitioned like the Java client's default partitioner (murmur2), so messages of
/// one key keep their order in one partition. A failed publish hands the message back as
/// *not sent*, *ambiguous*, *no destination* (the topic does not exist yet) or *permanent*
/// (see [`PublishOutcome`]).
///
/// **Fatal errors.** When librdkafka raises a fatal error (the idempotent producer lost its
/// sequence with the broker: `OutOfOrderSequenceNumber`, `UnknownProducerId`, ...), the
/// producer instance refuses everything from then on. The publisher notices (on the refusal,
/// on a failed delivery report, or before handing a message over), lets the failed instance
/// drain (every message handed to it gets its final report), then creates a new producer;
/// publishing works again without a restart. Meanwhile publishes fail as *not sent*. Messages
/// of the failed instance are classified as librdkafka documents: purged from its queue or
/// refused after the error: *not sent*; sent but failed: *ambiguous*. Because nothing is
/// handed to the new producer before the old one drained, a caller that publishes a key's
/// next message only after the previous confirm (the outbox relay) never lets a later message
/// of a key overtake the one it retries.
pub struct KafkaPublisher {
    slot: Arc<ProducerSlot>,
    config: KafkaConfig,
    closed: AtomicBool,
    /// When the health check began failing.
    outage: Outage,
}

impl KafkaPublisher {
    /// Creates the producer and checks that the cluster answers.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent for an invalid librdkafka setting, transient when no broker
    /// answers within 10 s (the message names the bootstrap servers).
    pub async fn connect(config: KafkaConfig) -> Result<Self, BrokerError> {
        let publisher = Self::connect_reached(config)?;
        check_reachable(&publisher.config).await?;
        publisher.warm_up().await;
        Ok(publisher)
    }

    /// Has the producer itself connect and fetch the cluster's metadata now, so that the
    /// first publish does not pay for it (the probe above used a client of its own). A
    /// failure here is only logged: the probe found the cluster reachable, and a publish
    /// reports whatever is wrong by then.
    async fn warm_up(&self) {
        let producer = self.slot.current();
        let fetched = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, HEALTH_TIMEOUT)
                .map(drop)
        })
        .await;
        if let Ok(Err(e)) = fetched {
            tracing::debug!(error = %e, "the producer's first metadata request failed");
        }
    }

    /// A publisher for a cluster the caller has just found reachable: no second probe.
    pub(crate) fn connect_reached(config: KafkaConfig) -> Result<Self, BrokerError> {
        let producer: FutureProducer = config
            .producer()
            .create()
            .map_err(|e| broker_error("connect", &e))?;
        Ok(Self::wrap(producer, config, true))
    }

    /// Wraps an existing producer; `recreate`: whether a fatal error replaces it (false for
    /// the transactional producer, whose fencing must stop it).
    pub(crate) fn wrap(producer: FutureProducer, config: KafkaConfig, recreate: bool) -> Self {
        Self {
            slot: ProducerSlot::new(producer, config.clone(), recreate),
            config,
            closed: AtomicBool::new(false),
            outage: Outage::default(),
        }
    }

    /// The producer currently in use. Test support only: lets a test drive the real client
    /// into states it cannot reach through the broker (a fatal error).
    #[cfg(feature = "testkit")]
    #[doc(hidden)]
    pub fn producer_for_tests(&self) -> FutureProducer {
        self.slot.current()
    }

    /// Hands `message` to librdkafka; the future resolves with its confirm.
    fn enqueue(&self, topic: &str, message: &Message) -> Result<Pending, (PublishOutcome, String)> {
        self.try_enqueue(topic, message)
            .map_err(Refusal::into_reason)
    }

    /// [`Self::enqueue`], telling a full local queue (room may come as confirms arrive) apart
    /// from other refusals.
    fn try_enqueue(&self, topic: &str, message: &Message) -> Result<Pending, Refusal> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refusal::Other(
                PublishOutcome::NotSent,
                "the publisher is closed".to_owned(),
            ));
        }
        if let Err(e) = check_topic(topic) {
            return Err(Refusal::Other(PublishOutcome::Permanent, e.to_string()));
        }
        let headers = identity_headers(message);
        let size = record_size(message, &headers);
        if size > self.config.message_max_bytes {
            return Err(Refusal::Other(
                PublishOutcome::Permanent,
                format!(
                    "message of {size} bytes exceeds message_max_bytes ({})",
                    self.config.message_max_bytes
                ),
            ));
        }
        let payload: &[u8] = message.payload().as_ref();
        let mut record = FutureRecord::<str, [u8]>::to(topic)
            .payload(payload)
            .headers(record_headers(&headers));
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        let producer = self
            .slot
            .producer()
            .map_err(|reason| Refusal::Other(PublishOutcome::NotSent, reason))?;
        match producer.send_result(record) {
            Ok(future) => Ok(Pending { future, producer }),
            // A refusal after a fatal error: the message was never queued.
            Err((e, _)) => Err(match self.slot.check(&producer) {
                Some(fatal) => {
                    Refusal::Other(PublishOutcome::NotSent, format!("not handed over: {fatal}"))
                }
                None if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    Refusal::QueueFull(e.to_string())
                }
                None => Refusal::Other(publish_outcome(&e), e.to_string()),
            }),
        }
    }

    async fn confirmed(
        &self,
        topic: &str,
        message: Message,
        pending: Result<Pending, (PublishOutcome, String)>,
    ) -> Result<Receipt, PublishError> {
        let outcome = match pending {
            Err((outcome, reason)) => Err((outcome, reason)),
            Ok(Pending { future, producer }) => match future.await {
                Ok(Ok(delivery)) => Ok(delivery),
                // A sent message that failed may be in the log (ambiguous), one purged from
                // the queue was never sent (not sent): `publish_outcome` tells them apart, also
                // after a fatal error, whose replacement starts here if nothing noticed it yet.
                Ok(Err((e, _))) => Err(match self.slot.check(&producer) {
                    Some(fatal) => (publish_outcome(&e), format!("{e}; {fatal}")),
                    None => (publish_outcome(&e), e.to_string()),
                }),
                Err(_) => Err((
                    PublishOutcome::Ambiguous,
                    "the producer dropped the delivery report".to_owned(),
                )),
            },
        };
        match outcome {
            Ok(delivery) => Ok(Receipt {
                message_id: message.id(),
                topic: topic.to_owned(),
                position: BrokerPosition::PartitionOffset {
                    partition: delivery.partition,
                    offset: delivery.offset,
                },
            }),
            Err((outcome, reason)) => Err(PublishError::new(outcome, topic, message, reason)),
        }
    }
}

/// Why librdkafka did not take a message.
enum Refusal {
    /// Its local queue is full (`queue.buffering.max.messages` / `.kbytes`): room comes back
    /// as the messages in it are confirmed.
    QueueFull(String),
    /// Anything else: the outcome and reason the caller gets.
    Other(PublishOutcome, String),
}

impl Refusal {
    fn into_reason(self) -> (PublishOutcome, String) {
        match self {
            Refusal::QueueFull(reason) => (PublishOutcome::NotSent, reason),
            Refusal::Other(outcome, reason) => (outcome, reason),
        }
    }
}

/// A message handed to librdkafka: its confirm, and the producer instance that holds it.
struct Pending {
    future: DeliveryFuture,
    producer: FutureProducer,
}

#[async_trait]
impl Publisher for KafkaPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        waybill_core::telemetry::metered("kafka", topic, message, |m| {
            self.publish_unmetered(topic, m)
        })
        .await
    }

    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        waybill_core::telemetry::metered_batch("kafka", topic, messages, |m| {
            self.publish_batch_unmetered(topic, m)
        })
        .await
    }

    /// `true`. The argument, for the messages of one key in one `publish_batch` call:
    /// - A key hashes to one partition (`murmur2_random`), and the producer runs with
    ///   `enable.idempotence=true`: librdkafka sends a partition's messages in the order they
    ///   were handed over, retries a failed request together with those after it, in order,
    ///   and the broker refuses a batch whose sequence number does not follow the last one it
    ///   wrote. So a later message of the key is not written while an earlier one is lost, and
    ///   what the log holds of them is a prefix.
    /// - A message refused before it is handed over makes the key's later ones fail as not
    ///   sent ([`waybill_core::FailedKeys`]).
    /// - A connection cut or a broker killed mid-batch: librdkafka retries the in-flight
    ///   requests in order until the delivery timeout; what is still unconfirmed then fails as
    ///   ambiguous, and the key's later messages, handed over after it, time out after it.
    ///
    /// Where it can break (the relay counts each as an order breach): an earlier message
    /// fails on its delivery timeout, and the broker comes back within the few milliseconds
    /// before a later message of the key times out (librdkafka's gapless guarantee does not
    /// cover timeouts: it bumps the producer epoch and sends the later one); or the broker
    /// refuses one record batch for good (a record over the topic's `max.message.bytes`) and
    /// takes the next.
    fn keeps_key_order_in_batch(&self) -> bool {
        true
    }

    /// Refuses further publishes (as not sent), then waits until every message handed over
    /// was confirmed or failed (at most the delivery timeout).
    async fn close(&self) -> Result<(), BrokerError> {
        self.closed.store(true, Ordering::Release);
        let producer = self.slot.current();
        let timeout = self.config.delivery_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| BrokerError::transient("close", e.to_string()))?
            .map_err(|e| broker_error("close", &e))
    }

    /// A metadata request through the producer's own connections (3 s at most): `NotReady`
    /// with the outage's start when no broker answers, `Stopped` once closed.
    async fn health(&self) -> Health {
        if self.closed.load(Ordering::Acquire) {
            return Health::stopped("publisher is closed");
        }
        let producer = self.slot.current();
        let brokers = self.config.brokers().to_owned();
        let answer = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, HEALTH_TIMEOUT)
                .map(drop)
                .map_err(|e| {
                    format!("no Kafka broker of {brokers} answered a metadata request: {e}")
                })
        })
        .await
        .unwrap_or_else(|e| Err(format!("the health check's task failed: {e}")));
        self.outage.judge(answer)
    }
}

/// The publishes themselves; the [`Publisher`] impl adds their metrics.
impl KafkaPublisher {
    pub(crate) async fn publish_unmetered(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<Receipt, PublishError> {
        let pending = self.enqueue(topic, &message);
        self.confirmed(topic, message, pending).await
    }

    /// Hands every message to librdkafka first, then waits for all confirms: one round trip
    /// per producer batch instead of one per message. Results are in input order.
    ///
    /// A batch larger than librdkafka's local queue waits for room: when the queue is full,
    /// the batch's oldest message still in it is awaited (its result kept) before the next one
    /// is handed over, in input order. Only when none of the batch's own messages is left in
    /// the queue (other publishes fill it, or the message alone exceeds its byte limit) does a
    /// full queue fail the message as *not sent*.
    ///
    /// Per-key order: once a keyed message fails before the rest of its key is handed over
    /// (librdkafka refuses it: its local queue is full with nothing of this batch to wait for,
    /// the message is too large, ...; or its confirm, awaited for room, failed), the key's
    /// later messages in the batch are not handed over either and fail as *not sent*;
    /// otherwise a later message could be written before the one the caller will retry. See
    /// [`Publisher::keeps_key_order_in_batch`] on this type for what holds once they are.
    pub(crate) async fn publish_batch_unmetered(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        let mut results: Vec<Option<Result<Receipt, PublishError>>> =
            messages.iter().map(|_| None).collect();
        let mut in_queue: VecDeque<(usize, Message, Pending)> = VecDeque::new();
        let mut refused_keys = FailedKeys::new();
        for (slot, message) in messages.into_iter().enumerate() {
            let message = match refused_keys.admit(topic, message) {
                Ok(message) => message,
                Err(refused) => {
                    results[slot] = Some(Err(refused));
                    continue;
                }
            };
            let handed = loop {
                match self.try_enqueue(topic, &message) {
                    Ok(pending) => break Ok(pending),
                    Err(Refusal::QueueFull(reason)) => match in_queue.pop_front() {
                        // Room comes back with the batch's oldest confirm.
                        Some((earlier, sent, pending)) => {
                            let result = self.confirmed(topic, sent, Ok(pending)).await;
                            refused_keys.record(&result);
                            results[earlier] = Some(result);
                            if refused_keys.holds(&message) {
                                let reason = FailedKeys::REFUSAL.to_owned();
                                break Err((PublishOutcome::NotSent, reason));
                            }
                        }
                        None => break Err((PublishOutcome::NotSent, reason)),
                    },
                    Err(Refusal::Other(outcome, reason)) => break Err((outcome, reason)),
                }
            };
            match handed {
                Ok(pending) => in_queue.push_back((slot, message, pending)),
                Err((outcome, reason)) => {
                    refused_keys.fail(&message);
                    results[slot] = Some(Err(PublishError::new(outcome, topic, message, reason)));
                }
            }
        }
        let confirmed = join_all(
            in_queue
                .into_iter()
                .map(|(slot, m, p)| async move { (slot, self.confirmed(topic, m, Ok(p)).await) }),
        )
        .await;
        for (slot, result) in confirmed {
            results[slot] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.expect("every message has a result"))
            .collect()
    }
}
