//! Confirmed publishing: synchronous sends where only `SEND_OK` counts.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::join_all;
use rocketmq_client_rust::{ClientError, DefaultMQProducer, SendResult, SendStatus};
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message as RocketMessage;
use waybill_core::{
    BrokerError, BrokerPosition, FailedKeys, Health, Message, Outage, PublishError, PublishOutcome,
    Publisher, Receipt,
};

use tokio::sync::OnceCell;

use crate::admin::RocketAdmin;
use crate::config::RocketConfig;
use crate::error_class::{describe_at, is_no_route, publish_outcome};
use crate::names::check_topic;
use crate::queue_select::queue_for_key;
use crate::route_state::{RouteState, UnroutedMemory};
use crate::runtime::{client_runtime, Erased, RocketFuture};
use crate::wire;

/// Most messages in one batch request (the broker takes at most `maxMessageSize` bytes per
/// request; batches are cut by size too).
const MAX_BATCH_MESSAGES: usize = 256;

/// Publishes with synchronous sends; a message is confirmed only by `SEND_OK` (or a status
/// the configuration accepts, see [`crate::AcceptedStatuses`]).
///
/// - **Per-key order**: a keyed message goes to queue `abs(javaHash(key) % queues)` (the Java
///   client's `SelectMessageQueueByHash`), so one key's messages share a queue, in publish
///   order. Unkeyed messages go round-robin.
/// - **No hidden resends**: the client's internal send retries are off, so an error is
///   reported as it happened: *not sent* (nothing reached a broker, the broker refused it as
///   busy, or no route is known right now), *ambiguous* (it may be stored: a timeout after the
///   write, a non-OK status), *no destination* (a topic that does not exist yet) or
///   *permanent* (oversized, illegal header, invalid name). The message is always handed back.
/// - **A missing route is not a missing topic**: while a broker restarts or is cut off from
///   the name server, its topics have no route. The error is *not sent* when this publisher
///   has seen the topic routed before, when the name server knows no broker, or when this
///   publisher saw the cluster unable to route within the last
///   [`route_wait`](crate::RocketConfigBuilder::route_wait) (a broker that came back
///   registers its topics in several requests, and for a moment the name server knows it but
///   not all its topics); it is *no destination*, with a reason saying the topic "does not
///   exist", only when the name server, knowing brokers, has no route for a topic this
///   publisher never saw routed outside that window (or the broker answers that the topic
///   does not exist). Either way retrying is safe: nothing was stored.
/// - `publish_batch` groups messages by queue and sends each group as one batch request,
///   the groups in parallel.
pub struct RocketPublisher {
    producer: Erased<DefaultMQProducer>,
    config: RocketConfig,
    round_robin: AtomicUsize,
    closed: AtomicBool,
    /// Topics this publisher has found routed: a later missing route is an outage.
    routed: Mutex<HashSet<String>>,
    /// Asks the name server why a topic has no route; started on first need.
    /// (Erased like the client handles: a plain field would make proving `Send` for an
    /// application future that holds the publisher walk the client's types past the
    /// compiler's default recursion limit.)
    route_admin: Erased<OnceCell<RocketAdmin>>,
    /// When the health check began failing.
    outage: Outage,
    /// When a send last found the cluster unable to route (see [`UnroutedMemory`]).
    unrouted: UnroutedMemory,
}

impl RocketPublisher {
    /// Starts a producer for the name servers in `config`.
    ///
    /// The client does not contact the name server before the first send, so an unreachable
    /// cluster surfaces on the first publish as a *not sent* error.
    ///
    /// # Errors
    /// [`BrokerError`] when the producer cannot start (e.g. an invalid producer group).
    pub fn connect(config: RocketConfig) -> RocketFuture<'static, Result<Self, BrokerError>> {
        crate::runtime::boxed(async move {
            let mut builder =
                DefaultMQProducer::builder(client_runtime()?).client_config(config.client_config());
            if let Some(hook) = config.security.rpc_hook() {
                builder = builder.rpc_hook(hook);
            }
            let mut producer = builder
                .producer_group(config.producer_group.as_str())
                .name_server_addr(config.name_server.as_str())
                .send_msg_timeout(millis(config.send_timeout))
                .retry_times_when_send_failed(0)
                .retry_times_when_send_async_failed(0)
                .retry_another_broker_when_not_store_ok(false)
                .max_message_size(u32::try_from(config.max_message_bytes).unwrap_or(u32::MAX))
                .build();
            producer
                .start()
                .await
                .map_err(|e| crate::error_class::broker_error("connect", &e))?;
            Ok(Self {
                producer: Erased::new(producer),
                config,
                round_robin: AtomicUsize::new(0),
                closed: AtomicBool::new(false),
                routed: Mutex::new(HashSet::new()),
                route_admin: Erased::new(OnceCell::new()),
                outage: Outage::default(),
                unrouted: UnroutedMemory::default(),
            })
        })
    }

    /// Checks `message` and turns it into a RocketMQ message for `topic`.
    fn prepare(&self, topic: &str, message: &Message) -> Result<RocketMessage, String> {
        check_topic(topic).map_err(|e| e.to_string())?;
        let headers = wire::wire_headers(message).map_err(|e| e.to_string())?;
        let size = wire::wire_size(message, &headers);
        if size > self.config.max_message_bytes {
            return Err(format!(
                "message of {size} bytes (body and properties) exceeds the limit of {} bytes",
                self.config.max_message_bytes
            ));
        }
        if message.payload().is_empty() {
            return Err("RocketMQ refuses messages with an empty body".into());
        }
        wire::rocket_message(topic, message, &headers).map_err(|e| e.to_string())
    }

    /// The queues `topic` can be written to.
    async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        let mut producer = self.producer.get().clone();
        let queues = producer.fetch_publish_message_queues(topic).await?;
        if !queues.is_empty() {
            self.remember_routed(topic);
        }
        Ok(queues)
    }

    fn remember_routed(&self, topic: &str) {
        let mut routed = self.routed.lock().expect("routed topics lock");
        if !routed.contains(topic) {
            routed.insert(topic.to_owned());
        }
    }

    fn was_routed(&self, topic: &str) -> bool {
        self.routed
            .lock()
            .expect("routed topics lock")
            .contains(topic)
    }

    /// The outcome and reason of a send that found no route for `topic` (see the type docs).
    async fn no_route(&self, topic: &str, error: &ClientError) -> (PublishOutcome, String) {
        let client = describe_at(error, &self.config.described_name_servers());
        if self.was_routed(topic) {
            self.unrouted.saw_outage();
            return (
                PublishOutcome::NotSent,
                format!(
                    "no route for topic {topic} right now, though it was routed before (its \
                     broker is restarting or cut off from the name server): {client}"
                ),
            );
        }
        let admin = self
            .route_admin
            .get()
            .get_or_try_init(|| RocketAdmin::connect(&self.config))
            .await;
        let state = match admin {
            Ok(admin) => admin.route_state(topic, Duration::ZERO).await,
            Err(e) => Err(e),
        };
        match state {
            Ok(RouteState::Writable(_)) => {
                self.remember_routed(topic);
                (
                    PublishOutcome::NotSent,
                    format!("topic {topic} was not routed yet, and now is: {client}"),
                )
            }
            Ok(state) if state.is_authoritative_absence() => {
                if self.unrouted.absence_is_settled(self.config.route_wait) {
                    return (PublishOutcome::NoDestination, state.explain(topic));
                }
                let ago = self.unrouted.since_outage().unwrap_or_default();
                (
                    PublishOutcome::NotSent,
                    format!(
                        "no route for topic {topic}, but the cluster could not route {:.1} s \
                         ago: its brokers may still be registering their topics with the \
                         name server ({})",
                        ago.as_secs_f64(),
                        state.explain(topic)
                    ),
                )
            }
            Ok(state) => {
                self.unrouted.saw_outage();
                (PublishOutcome::NotSent, state.explain(topic))
            }
            Err(e) => {
                self.unrouted.saw_outage();
                (
                    PublishOutcome::NotSent,
                    format!("{client}; asking the name server why failed: {e}"),
                )
            }
        }
    }

    /// Turns a send's answer into a receipt for the message at `index` of the request.
    fn receipt(
        &self,
        topic: &str,
        message: &Message,
        result: &SendResult,
        index: usize,
    ) -> Result<Receipt, String> {
        let accepted = &self.config.accepted;
        let ok = match result.send_status {
            SendStatus::SendOk => true,
            SendStatus::FlushDiskTimeout => accepted.flush_disk_timeout,
            SendStatus::FlushSlaveTimeout => accepted.flush_slave_timeout,
            SendStatus::SlaveNotAvailable => accepted.slave_not_available,
        };
        if !ok {
            return Err(format!(
                "the broker stored the message but answered {} (not SEND_OK)",
                result.send_status
            ));
        }
        let queue = result.message_queue.as_ref();
        let ids = result
            .msg_id
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        let broker_message_id = ids.split(',').nth(index).unwrap_or_default().to_owned();
        Ok(Receipt {
            message_id: message.id(),
            topic: topic.to_owned(),
            position: BrokerPosition::QueueOffset {
                broker_message_id,
                queue_id: queue.map_or(-1, MessageQueue::queue_id),
                queue_offset: i64::try_from(result.queue_offset).unwrap_or(i64::MAX)
                    + i64::try_from(index).unwrap_or(0),
            },
        })
    }

    fn closed_error(&self, topic: &str, message: Message) -> Option<PublishError> {
        self.closed
            .load(Ordering::Acquire)
            .then(|| PublishError::not_sent(topic, message, "the publisher is closed"))
    }

    /// Sends one group of messages bound for the same queue as one batch request.
    async fn send_group(
        &self,
        topic: &str,
        queue: MessageQueue,
        group: Vec<(usize, Message, RocketMessage)>,
    ) -> Vec<(usize, Result<Receipt, PublishError>)> {
        let wire: Vec<RocketMessage> = group.iter().map(|(_, _, r)| r.clone()).collect();
        let sent = if wire.len() == 1 {
            let single = wire.into_iter().next().expect("one message");
            self.producer
                .get()
                .send_to_queue(single, queue)
                .await
                .and_then(|r| r.ok_or_else(|| ClientError::illegal_argument("no send result")))
        } else {
            self.producer.get().send_batch_to_queue(wire, queue).await
        };
        group
            .into_iter()
            .enumerate()
            .map(|(i, (slot, message, _))| (slot, self.outcome(topic, message, &sent, i)))
            .collect()
    }

    /// The result for the message at `index` of a request answered with `sent`.
    fn outcome(
        &self,
        topic: &str,
        message: Message,
        sent: &Result<SendResult, ClientError>,
        index: usize,
    ) -> Result<Receipt, PublishError> {
        match sent {
            Ok(result) => self
                .receipt(topic, &message, result, index)
                .map_err(|reason| PublishError::ambiguous(topic, message, reason)),
            Err(e) => Err(PublishError::new(
                publish_outcome(e),
                topic,
                message,
                describe_at(e, &self.config.described_name_servers()),
            )),
        }
    }
}

impl RocketPublisher {
    /// Sends checked messages: asks the name server for the topic's queues, groups the
    /// messages per queue and sends each queue's chunks in order, the queues in parallel.
    async fn send_prepared(&self, topic: &str, prepared: Vec<Prepared>) -> Vec<Slotted> {
        let queues = match self.queues(topic).await {
            Ok(queues) => queues,
            Err(e) => {
                let (outcome, reason) = if is_no_route(&e) {
                    self.no_route(topic, &e).await
                } else {
                    (
                        publish_outcome(&e),
                        describe_at(&e, &self.config.described_name_servers()),
                    )
                };
                return prepared
                    .into_iter()
                    .map(|(slot, message, _)| {
                        let error = PublishError::new(outcome, topic, message, reason.clone());
                        (slot, Err(error))
                    })
                    .collect();
            }
        };
        let turn = self
            .round_robin
            .fetch_add(prepared.len(), Ordering::Relaxed);
        let plan = plan_batches(&queues, prepared, turn, self.config.max_message_bytes / 2);
        let mut out: Vec<Slotted> = plan
            .unroutable
            .into_iter()
            .map(|(slot, message, _)| {
                let reason = "the topic has no writable queue";
                (slot, Err(PublishError::not_sent(topic, message, reason)))
            })
            .collect();
        let sends = plan
            .per_queue
            .into_iter()
            .map(|(q, chunks)| self.send_chunks_in_order(topic, queues[q].clone(), chunks));
        out.extend(join_all(sends).await.into_iter().flatten());
        out
    }

    /// Sends the chunks of one queue one after another (their order is the keys' order).
    /// Once a chunk fails, the later ones are not sent: they would put a key's later
    /// messages before its earlier ones.
    async fn send_chunks_in_order(
        &self,
        topic: &str,
        queue: MessageQueue,
        chunks: Vec<Vec<Prepared>>,
    ) -> Vec<Slotted> {
        let mut out = Vec::new();
        let mut failed: Option<(PublishOutcome, String)> = None;
        for chunk in chunks {
            if let Some((outcome, reason)) = &failed {
                let reason = format!("not sent after an earlier failure on its queue: {reason}");
                // Only a missing topic concerns these messages too; whatever else refused the
                // earlier chunk (its size, say) says nothing of them: they were just not sent.
                let outcome = match outcome {
                    PublishOutcome::NoDestination => PublishOutcome::NoDestination,
                    PublishOutcome::Permanent
                    | PublishOutcome::NotSent
                    | PublishOutcome::Ambiguous => PublishOutcome::NotSent,
                };
                out.extend(chunk.into_iter().map(|(slot, m, _)| {
                    (
                        slot,
                        Err(PublishError::new(outcome, topic, m, reason.clone())),
                    )
                }));
                continue;
            }
            let sent = self.send_group(topic, queue.clone(), chunk).await;
            if let Some((_, Err(e))) = sent.iter().find(|(_, r)| r.is_err()) {
                failed = Some((e.outcome(), e.reason().to_owned()));
            }
            out.extend(sent);
        }
        out
    }
}

/// A checked message: its slot in the caller's batch, the message, its wire form.
type Prepared = (usize, Message, RocketMessage);

/// A result for the message in a slot of the caller's batch.
type Slotted = (usize, Result<Receipt, PublishError>);

/// Messages of one batch call, grouped per queue into chunks that fit one request.
struct BatchPlan {
    /// Queue index to its chunks, in publish order.
    per_queue: BTreeMap<usize, Vec<Vec<Prepared>>>,
    /// Messages for which the topic had no queue.
    unroutable: Vec<Prepared>,
}

/// Groups `prepared` by queue, keeping publish order within each queue, and cuts each
/// queue's messages into chunks of at most [`MAX_BATCH_MESSAGES`] and about `max_bytes`.
/// Unkeyed messages go round-robin from `turn`.
fn plan_batches(
    queues: &[MessageQueue],
    prepared: Vec<Prepared>,
    turn: usize,
    max_bytes: usize,
) -> BatchPlan {
    let mut plan = BatchPlan {
        per_queue: BTreeMap::new(),
        unroutable: Vec::new(),
    };
    // Bytes in the open chunk of each queue.
    let mut open_bytes: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, item) in prepared.into_iter().enumerate() {
        let Some(q) = queue_index(queues.len(), item.1.key(), turn.wrapping_add(i)) else {
            plan.unroutable.push(item);
            continue;
        };
        let size = item.1.payload().len() + 256;
        let chunks = plan.per_queue.entry(q).or_default();
        let bytes = open_bytes.entry(q).or_insert(0);
        let starts_new = chunks
            .last()
            .is_none_or(|open| open.len() >= MAX_BATCH_MESSAGES || *bytes + size > max_bytes);
        if starts_new {
            chunks.push(Vec::new());
            *bytes = 0;
        }
        *bytes += size;
        chunks.last_mut().expect("an open chunk").push(item);
    }
    plan
}

/// The index, among `queues` queues, of `key`'s queue (Java `SelectMessageQueueByHash`), or
/// the `turn`-th one round-robin for an unkeyed message; `None` when there is no queue.
fn queue_index(queues: usize, key: Option<&str>, turn: usize) -> Option<usize> {
    match key {
        _ if queues == 0 => None,
        Some(k) => Some(queue_for_key(k, queues)),
        None => Some(turn % queues),
    }
}

fn millis(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

#[async_trait]
impl Publisher for RocketPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        waybill_core::telemetry::metered("rocketmq", topic, message, |m| {
            self.publish_unmetered(topic, m)
        })
        .await
    }

    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        waybill_core::telemetry::metered_batch("rocketmq", topic, messages, |m| {
            self.publish_batch_unmetered(topic, m)
        })
        .await
    }

    /// `true`. The argument, for the messages of one key in one `publish_batch` call:
    /// - A key hashes to one message queue of the topic's route (as Java's
    ///   `SelectMessageQueueByHash`); a queue's messages go in chunks (RocketMQ batch
    ///   messages, each appended to the commit log as one unit), one chunk after the other,
    ///   the next only once the previous one returned `SEND_OK`. Once a chunk fails, the
    ///   queue's later chunks are not sent. So what the queue holds of the key's messages is a
    ///   prefix, in order.
    /// - A message refused before it is sent (too large, publisher closed) makes the key's
    ///   later messages fail as not sent ([`waybill_core::FailedKeys`]).
    /// - A broker killed or a connection cut mid-batch fails the chunk in flight (ambiguous:
    ///   it may be stored) and, unsent, every later chunk of its queue.
    ///
    /// Where it can break: a route change in the middle of a batch does not move a key, since
    /// one call reads the route once; between calls, a change in the topic's queue count
    /// moves keys to other queues (true of any RocketMQ producer that hashes keys).
    fn keeps_key_order_in_batch(&self) -> bool {
        true
    }

    /// Refuses further publishes and stops the producer.
    async fn close(&self) -> Result<(), BrokerError> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut producer = self.producer.get().clone();
        producer.shutdown().await;
        if let Some(admin) = self.route_admin.get().get() {
            admin.close().await;
        }
        Ok(())
    }

    /// Whether a name server accepts a connection (3 s at most each): `NotReady` with the
    /// outage's start when none does, `Stopped` once closed.
    async fn health(&self) -> Health {
        if self.closed.load(Ordering::Acquire) {
            return Health::stopped("publisher is closed");
        }
        let answer = crate::name_server_probe::any_name_server_answers(&self.config).await;
        self.outage.judge(answer)
    }
}

/// The publishes themselves; the [`Publisher`] impl adds their metrics.
impl RocketPublisher {
    /// One synchronous send; the queue is chosen from the client's cached route (no name
    /// server round trip per message).
    pub(crate) async fn publish_unmetered(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<Receipt, PublishError> {
        if let Some(e) = self.closed_error(topic, message.clone()) {
            return Err(e);
        }
        let wire = match self.prepare(topic, &message) {
            Ok(wire) => wire,
            Err(reason) => return Err(PublishError::permanent(topic, message, reason)),
        };
        let key = message.key().map(str::to_owned);
        let turn = self.round_robin.fetch_add(1, Ordering::Relaxed);
        let sent = self
            .producer
            .get()
            .send_with_selector(
                wire,
                move |queues: &[MessageQueue], _: &RocketMessage, (): &()| {
                    queue_index(queues.len(), key.as_deref(), turn).map(|i| queues[i].clone())
                },
                (),
            )
            .await
            .and_then(|r| r.ok_or_else(|| ClientError::illegal_argument("no send result")));
        if sent.as_ref().is_err_and(is_no_route) {
            // The message passed this crate's checks, so the client refused it for want of a
            // route (it then says only "select message queue return null"): ask the name
            // server, whose answer says why (no route right now, an unknown topic, or no name
            // server reachable).
            let mut results = self.publish_batch_unmetered(topic, vec![message]).await;
            return results.pop().expect("one result per message");
        }
        if sent.is_ok() {
            self.remember_routed(topic);
        }
        self.outcome(topic, message, &sent, 0)
    }

    pub(crate) async fn publish_batch_unmetered(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        let total = messages.len();
        let mut results: Vec<Option<Result<Receipt, PublishError>>> =
            (0..total).map(|_| None).collect();
        let mut prepared = Vec::with_capacity(total);
        let mut failed_keys = FailedKeys::new();
        for (slot, message) in messages.into_iter().enumerate() {
            let message = match failed_keys.admit(topic, message) {
                Ok(message) => message,
                Err(refused) => {
                    results[slot] = Some(Err(refused));
                    continue;
                }
            };
            if let Some(e) = self.closed_error(topic, message.clone()) {
                failed_keys.fail(&message);
                results[slot] = Some(Err(e));
                continue;
            }
            match self.prepare(topic, &message) {
                Ok(wire) => prepared.push((slot, message, wire)),
                Err(reason) => {
                    failed_keys.fail(&message);
                    results[slot] = Some(Err(PublishError::permanent(topic, message, reason)));
                }
            }
        }
        if !prepared.is_empty() {
            for (slot, result) in self.send_prepared(topic, prepared).await {
                results[slot] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|r| r.expect("every message has a result"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: i32) -> Vec<MessageQueue> {
        (0..n)
            .map(|id| MessageQueue::from_parts("t", "b", id))
            .collect()
    }

    fn prepared(items: &[(Option<&str>, usize)]) -> Vec<Prepared> {
        items
            .iter()
            .enumerate()
            .map(|(slot, (key, bytes))| {
                let mut message = Message::new(vec![b'x'; *bytes]);
                if let Some(k) = key {
                    message = message.with_key(*k);
                }
                let headers = wire::wire_headers(&message).expect("headers");
                let wire = wire::rocket_message("t", &message, &headers).expect("wire");
                (slot, message, wire)
            })
            .collect()
    }

    fn slots(plan: &BatchPlan, q: usize) -> Vec<Vec<usize>> {
        plan.per_queue[&q]
            .iter()
            .map(|chunk| chunk.iter().map(|(slot, _, _)| *slot).collect())
            .collect()
    }

    #[test]
    fn a_key_stays_on_its_queue_in_publish_order() {
        let items: Vec<(Option<&str>, usize)> = (0..6)
            .map(|i| (Some(if i % 2 == 0 { "even" } else { "odd" }), 10))
            .collect();
        let plan = plan_batches(&queues(8), prepared(&items), 0, 1 << 20);
        let even = queue_for_key("even", 8);
        let odd = queue_for_key("odd", 8);
        assert_ne!(even, odd, "the test keys must land on different queues");
        assert_eq!(slots(&plan, even), vec![vec![0, 2, 4]]);
        assert_eq!(slots(&plan, odd), vec![vec![1, 3, 5]]);
        assert!(plan.unroutable.is_empty());
    }

    #[test]
    fn chunks_are_cut_by_count_and_by_size() {
        let many: Vec<(Option<&str>, usize)> = vec![(Some("k"), 1); MAX_BATCH_MESSAGES + 1];
        let plan = plan_batches(&queues(4), prepared(&many), 0, 1 << 30);
        let q = queue_for_key("k", 4);
        let lens: Vec<usize> = plan.per_queue[&q].iter().map(Vec::len).collect();
        assert_eq!(lens, vec![MAX_BATCH_MESSAGES, 1]);

        let big = vec![(Some("k"), 700), (Some("k"), 700), (Some("k"), 10)];
        let plan = plan_batches(&queues(4), prepared(&big), 0, 1_300);
        assert_eq!(slots(&plan, q), vec![vec![0], vec![1, 2]]);
    }

    #[test]
    fn unkeyed_messages_go_round_robin_and_nothing_routes_without_queues() {
        let items = vec![(None, 1), (None, 1), (None, 1)];
        let plan = plan_batches(&queues(2), prepared(&items), 1, 1 << 20);
        assert_eq!(slots(&plan, 1), vec![vec![0, 2]]);
        assert_eq!(slots(&plan, 0), vec![vec![1]]);

        let plan = plan_batches(&[], prepared(&items), 0, 1 << 20);
        assert!(plan.per_queue.is_empty());
        assert_eq!(plan.unroutable.len(), 3);
    }
}
