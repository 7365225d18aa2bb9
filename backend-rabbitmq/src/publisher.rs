//! Confirmed publishing to RabbitMQ.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::join_all;
use lapin::Connection;
use tokio::sync::{Mutex, Semaphore};
use tracing::warn;
use waybill_core::{
    BrokerError, BrokerPosition, FailedKeys, FailureClass, Health, Message, Outage, PublishError,
    PublishOutcome, Publisher, Receipt,
};

use crate::closing::bounded_close;
use crate::config::RabbitConfig;
use crate::confirm_channel::{confirmed, send, unroutable, ConfirmChannel, Refusal};
use crate::connect::connect;
use crate::error_class::broker_error;
use crate::key_route::key_routing_key;
use crate::name_rules::{validate_name, validate_target};
use crate::topology::declare_exchange;

/// A [`Publisher`] to RabbitMQ: persistent messages, publisher confirms, `mandatory` routing.
///
/// A topic is a durable fanout exchange; every consumer group's queue bound to it receives the
/// message. `publish` resolves on the broker's confirm: `basic.ack` is success, `basic.nack`
/// is `Ambiguous`, a `basic.return` (no queue bound yet) is a `NoDestination` "unroutable"
/// error, a missing exchange (404) is `NoDestination` too (nothing was stored; the publish
/// succeeds once a consumer group declared its queue), and a connection lost with the confirm
/// outstanding is `Ambiguous`.
///
/// Concurrent `publish` calls spread over a pool of confirm channels, one message in flight
/// per channel, so that a returned message is attributed exactly. `publish_batch` pipelines a
/// whole batch on one channel (in order, up to `max_in_flight` at once) and attributes returns
/// by message id. After a lost connection the next publish reconnects.
#[derive(Clone)]
pub struct RabbitPublisher {
    inner: Arc<Inner>,
}

struct Inner {
    config: RabbitConfig,
    link: Mutex<Option<Arc<Link>>>,
    in_flight: Semaphore,
    closed: AtomicBool,
    next_slot: AtomicUsize,
    /// When the health check began failing.
    outage: Outage,
}

struct Link {
    connection: Connection,
    slots: Vec<Mutex<ConfirmChannel>>,
}

impl RabbitPublisher {
    /// Connects to the broker.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent for refused credentials or an unknown vhost, transient when the
    /// broker is down or does not answer within the connect timeout.
    pub async fn connect(config: RabbitConfig) -> Result<Self, BrokerError> {
        let publisher = Self {
            inner: Arc::new(Inner {
                in_flight: Semaphore::new(config.max_in_flight),
                config,
                link: Mutex::new(None),
                closed: AtomicBool::new(false),
                next_slot: AtomicUsize::new(0),
                outage: Outage::default(),
            }),
        };
        publisher.link().await?;
        Ok(publisher)
    }

    /// Declares `topic` (a durable fanout exchange). Consumers declare it too; publishing to a
    /// topic nobody declared, or one no queue is bound to yet, fails as `NoDestination`.
    ///
    /// # Errors
    /// [`BrokerError`] when the name is unusable or the broker refuses.
    pub async fn declare_topic(&self, topic: &str) -> Result<(), BrokerError> {
        validate_name("topic", topic)
            .map_err(|e| BrokerError::permanent("declare", e.to_string()))?;
        let link = self.link().await?;
        let channel = link
            .connection
            .create_channel()
            .await
            .map_err(|e| broker_error("declare", e))?;
        declare_exchange(&channel, topic)
            .await
            .map_err(|e| broker_error("declare", e))?;
        let _ = channel.close(200, "OK".into()).await;
        Ok(())
    }

    async fn link(&self) -> Result<Arc<Link>, BrokerError> {
        let mut guard = self.inner.link.lock().await;
        if let Some(link) = guard.as_ref() {
            if link.connection.status().connected() {
                return Ok(Arc::clone(link));
            }
            warn!("rabbitmq publisher connection lost; reconnecting");
        }
        let connection = connect(&self.inner.config, "waybill-publisher").await?;
        let slots = (0..self.inner.config.channels)
            .map(|_| Mutex::new(ConfirmChannel::default()))
            .collect();
        let link = Arc::new(Link { connection, slots });
        *guard = Some(Arc::clone(&link));
        Ok(link)
    }

    fn fail(topic: &str, message: Message, refusal: Refusal) -> PublishError {
        let error = PublishError::new(refusal.outcome, topic, message, refusal.reason);
        match refusal.source {
            Some(source) => error.with_source(source),
            None => error,
        }
    }

    fn check(&self, topic: &str, message: Message) -> Result<Message, PublishError> {
        if self.inner.closed.load(SeqCst) {
            return Err(PublishError::not_sent(
                topic,
                message,
                "publisher is closed",
            ));
        }
        if let Err(e) = validate_target("topic", topic) {
            return Err(PublishError::permanent(topic, message, e.to_string()));
        }
        Ok(message)
    }

    async fn publish_on_slot(
        &self,
        link: &Link,
        slot: &mut ConfirmChannel,
        topic: &str,
        message: &Message,
    ) -> Result<Receipt, Refusal> {
        let channel = slot.open(&link.connection).await.map_err(|e| Refusal {
            outcome: PublishOutcome::NotSent,
            reason: format!("cannot open a channel: {e}"),
            source: Some(e),
        })?;
        let route = key_routing_key(message.key());
        let confirm = send(channel, topic, &route, message, None).await?;
        let tag = slot.next_tag();
        let confirmation = confirmed(confirm, self.inner.config.confirm_timeout).await;
        if confirmation.is_err() {
            slot.discard();
        }
        match confirmation? {
            None => Ok(Receipt {
                message_id: message.id(),
                topic: topic.to_owned(),
                position: BrokerPosition::DeliveryTag(tag),
            }),
            Some(_) => Err(unroutable(topic, "")),
        }
    }
}

#[async_trait]
impl Publisher for RabbitPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        waybill_core::telemetry::metered("rabbitmq", topic, message, |m| {
            self.publish_unmetered(topic, m)
        })
        .await
    }

    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        waybill_core::telemetry::metered_batch("rabbitmq", topic, messages, |m| {
            self.publish_batch_unmetered(topic, m)
        })
        .await
    }

    /// `true`. The argument, for the messages of one key in one `publish_batch` call:
    /// - They all go to the topic's exchange, in chunks of `max_in_flight`, each chunk on one
    ///   channel, a chunk only after every confirm of the previous one came back. AMQP
    ///   delivers a channel's publishes in order, the broker routes them in order and a queue
    ///   appends them in that order; a connection lost mid-chunk loses a suffix. So what the
    ///   queues hold of them is a prefix, in order.
    /// - A message refused before it is sent (too large, publisher closed, the channel write
    ///   failed) or whose confirm fails makes the key's later messages fail as not sent, in
    ///   its chunk and in the chunks after it ([`waybill_core::FailedKeys`]).
    /// - A connection cut or a node killed mid-chunk fails every unconfirmed message of the
    ///   chunk as ambiguous (the channel's pending confirms all fail together).
    ///
    /// Where it can break (the relay counts each as an order breach): the broker nacks one
    /// message (an internal error, or a queue with `x-overflow: reject-publish` that is full)
    /// and acks a later message of the key in the same chunk, because the queue had room
    /// again; or one confirm times out while a later one arrives in time (the earlier message
    /// is then most likely stored too, and its resend is a duplicate).
    fn keeps_key_order_in_batch(&self) -> bool {
        true
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.inner.closed.store(true, SeqCst);
        let all = u32::try_from(self.inner.config.max_in_flight).unwrap_or(u32::MAX);
        let _drained = self.inner.in_flight.acquire_many(all).await;
        let link = self.inner.link.lock().await.take();
        if let Some(link) = link {
            if link.connection.status().connected() {
                let close = link.connection.close(200, "publisher closed".into());
                bounded_close(self.inner.config.confirm_timeout, close).await?;
            }
        }
        Ok(())
    }

    /// The publisher's AMQP connection, reconnected when it was lost (as the next publish
    /// would): `NotReady` with the outage's start while the broker cannot be reached,
    /// `Stopped` once closed.
    async fn health(&self) -> Health {
        if self.inner.closed.load(SeqCst) {
            return Health::stopped("publisher is closed");
        }
        self.inner.outage.judge(self.link().await.map(drop))
    }
}

/// A publish that could not reach the broker: never sent; permanent when the broker refused
/// the connection for good (credentials, vhost).
fn unreachable_outcome(error: &BrokerError) -> PublishOutcome {
    match error.class() {
        FailureClass::Permanent => PublishOutcome::Permanent,
        FailureClass::Transient => PublishOutcome::NotSent,
    }
}

/// A chunk message's position in the input and its outcome.
type Decided = (usize, Result<Receipt, PublishError>);

impl RabbitPublisher {
    /// Publishes up to `max_in_flight` messages pipelined on one channel, in order.
    async fn publish_chunk(
        &self,
        topic: &str,
        messages: Vec<Message>,
        failed_keys: &mut FailedKeys,
    ) -> Vec<Result<Receipt, PublishError>> {
        let mut results: Vec<Option<Result<Receipt, PublishError>>> =
            Vec::with_capacity(messages.len());
        let mut ready = Vec::new();
        for (i, m) in messages.into_iter().enumerate() {
            match failed_keys
                .admit(topic, m)
                .and_then(|m| self.check(topic, m))
            {
                Ok(m) => {
                    results.push(None);
                    ready.push((i, m));
                }
                Err(e) => {
                    failed_keys.fail(e.message());
                    results.push(Some(Err(e)));
                }
            }
        }
        if !ready.is_empty() {
            for (i, outcome) in self.send_pipelined(topic, ready, failed_keys).await {
                failed_keys.record(&outcome);
                results[i] = Some(outcome);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every message of the chunk is decided"))
            .collect()
    }

    /// Sends every message on one channel, then awaits all confirms. The channel stays locked
    /// until the last confirm, so no other publish's returned message can ride on these.
    async fn send_pipelined(
        &self,
        topic: &str,
        ready: Vec<(usize, Message)>,
        failed_keys: &mut FailedKeys,
    ) -> Vec<Decided> {
        let refuse_all = |ready: Vec<(usize, Message)>, outcome, reason: String| -> Vec<Decided> {
            ready
                .into_iter()
                .map(|(i, m)| (i, Err(PublishError::new(outcome, topic, m, reason.clone()))))
                .collect()
        };
        let count = u32::try_from(ready.len()).unwrap_or(u32::MAX);
        let _permits = self.inner.in_flight.acquire_many(count).await;
        if self.inner.closed.load(SeqCst) {
            let reason = "publisher is closed".to_owned();
            return refuse_all(ready, PublishOutcome::NotSent, reason);
        }
        let link = match self.link().await {
            Ok(link) => link,
            Err(e) => return refuse_all(ready, unreachable_outcome(&e), e.to_string()),
        };
        let index = self.inner.next_slot.fetch_add(1, SeqCst) % link.slots.len();
        let mut slot = link.slots[index].lock().await;
        let channel = match slot.open(&link.connection).await {
            Ok(channel) => channel.clone(),
            Err(e) => {
                let reason = format!("cannot open a channel: {e}");
                return refuse_all(ready, PublishOutcome::NotSent, reason);
            }
        };
        let mut decided = Vec::with_capacity(ready.len());
        let mut sent = Vec::with_capacity(ready.len());
        for (i, m) in ready {
            let m = match failed_keys.admit(topic, m) {
                Ok(m) => m,
                Err(refused) => {
                    decided.push((i, Err(refused)));
                    continue;
                }
            };
            match send(&channel, topic, &key_routing_key(m.key()), &m, None).await {
                Ok(confirm) => sent.push((i, m, slot.next_tag(), confirm)),
                Err(refusal) => {
                    failed_keys.fail(&m);
                    decided.push((i, Err(Self::fail(topic, m, refusal))));
                }
            }
        }
        let timeout = self.inner.config.confirm_timeout;
        let confirmations = join_all(sent.into_iter().map(|(i, m, tag, confirm)| async move {
            (i, m, tag, confirmed(confirm, timeout).await)
        }))
        .await;
        let shared_failure =
            confirmations.len() > 1 && confirmations.iter().any(|(_, _, _, c)| c.is_err());
        if shared_failure {
            slot.discard();
        }
        drop(slot);
        // A returned message may ride on a neighbour's confirm: attribute returns by id.
        let returned: HashSet<String> = confirmations
            .iter()
            .filter_map(|(_, _, _, c)| c.as_ref().ok().cloned().flatten())
            .collect();
        for (i, m, tag, confirmation) in confirmations {
            let outcome = match confirmation {
                // A channel error fails every confirm pending on the channel, whichever message
                // caused it: only a missing exchange (404, `NoDestination`) concerns them all
                // alike; a permanent refusal of one message leaves the others' fate unknown.
                Err(mut refusal) if shared_failure => {
                    refusal.outcome = match refusal.outcome {
                        PublishOutcome::Permanent => PublishOutcome::Ambiguous,
                        kept @ (PublishOutcome::NotSent
                        | PublishOutcome::Ambiguous
                        | PublishOutcome::NoDestination) => kept,
                    };
                    Err(Self::fail(topic, m, refusal))
                }
                Err(refusal) => Err(Self::fail(topic, m, refusal)),
                Ok(_) if returned.contains(&m.id().to_string()) => {
                    Err(Self::fail(topic, m, unroutable(topic, "")))
                }
                Ok(_) => Ok(Receipt {
                    message_id: m.id(),
                    topic: topic.to_owned(),
                    position: BrokerPosition::DeliveryTag(tag),
                }),
            };
            decided.push((i, outcome));
        }
        decided
    }
}

/// The publishes themselves; the [`Publisher`] impl adds their metrics.
impl RabbitPublisher {
    pub(crate) async fn publish_unmetered(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<Receipt, PublishError> {
        let message = self.check(topic, message)?;
        let _permit = self.inner.in_flight.acquire().await;
        // Close may have begun while this publish waited for a slot.
        let message = self.check(topic, message)?;
        let link = match self.link().await {
            Ok(link) => link,
            Err(e) => {
                let outcome = unreachable_outcome(&e);
                return Err(
                    PublishError::new(outcome, topic, message, e.to_string()).with_source(e)
                );
            }
        };
        let start = self.inner.next_slot.fetch_add(1, SeqCst) % link.slots.len();
        let mut slot = match (0..link.slots.len())
            .find_map(|i| link.slots[(start + i) % link.slots.len()].try_lock().ok())
        {
            Some(slot) => slot,
            None => link.slots[start].lock().await,
        };
        match self
            .publish_on_slot(&link, &mut slot, topic, &message)
            .await
        {
            Ok(receipt) => Ok(receipt),
            Err(refusal) => Err(Self::fail(topic, message, refusal)),
        }
    }

    pub(crate) async fn publish_batch_unmetered(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        let mut results = Vec::with_capacity(messages.len());
        let mut failed_keys = FailedKeys::new();
        let mut pending = messages.into_iter().peekable();
        while pending.peek().is_some() {
            let chunk: Vec<Message> = pending
                .by_ref()
                .take(self.inner.config.max_in_flight)
                .collect();
            results.extend(self.publish_chunk(topic, chunk, &mut failed_keys).await);
        }
        results
    }
}
