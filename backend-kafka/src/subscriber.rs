//! Consuming a topic in a consumer group, with the group's retry topic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{ClientContext, Message as _};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::Instant;
use waybill_core::{
    header_names, wire_time, BrokerError, Delivery, IncomingMessage, Origin, Subscriber,
};

use crate::admin::ensure_group_topics;
use crate::config::KafkaConfig;
use crate::error_class::broker_error;
use crate::names::check_topic;
use crate::offsets::{Offsets, Position};
use crate::publisher::KafkaPublisher;
use crate::settler::{KafkaSettler, SettleLink};
use crate::wire;

/// Tracks partition assignments so that acknowledgements of a partition this consumer lost
/// never store offsets for its new owner.
pub(crate) struct TrackingContext {
    offsets: Arc<Offsets>,
}

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            // Commit what is stored before the partitions move.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "nothing committed on revoke");
            }
            for p in partitions.elements() {
                self.offsets.revoked(p.topic(), p.partition());
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            for p in partitions.elements() {
                self.offsets.assigned(p.topic(), p.partition());
            }
        }
    }
}

/// A retried copy waiting for its not-before time.
struct Delayed {
    due: Instant,
    seq: u64,
    incoming: IncomingMessage,
    position: Position,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Consumes `topic` (and the group's retry topic) in a consumer group.
///
/// - **Acknowledgement**: an offset is stored only up to the lowest offset still in flight on
///   its partition, so out-of-order completion never commits past unfinished work; stored
///   offsets are committed every `commit_interval`, on partition revoke and on close. A crash
///   re-delivers at most the uncommitted tail (at-least-once).
/// - **Retry later**: the copy is published (confirmed) to `<topic>.<group>.retry` with a
///   `waybill-not-before` header, then the original is acknowledged; this subscriber reads the
///   retry topic too and holds each copy until it is due.
/// - **Dead letter**: the copy with the record headers goes to `<topic>.<group>.dlq`
///   (confirmed), then the original is acknowledged.
/// - A delivery dropped unsettled is delivered again by this subscriber.
pub struct KafkaSubscriber {
    consumer: Arc<StreamConsumer<TrackingContext>>,
    link: Arc<SettleLink>,
    group: Arc<str>,
    retry_topic: Option<String>,
    redelivered: UnboundedReceiver<(IncomingMessage, Position)>,
    delayed: BinaryHeap<Reverse<Delayed>>,
    delayed_seq: u64,
    max_delayed: usize,
    closed: bool,
}

impl KafkaSubscriber {
    /// Joins `group` on `topic`, creating the group's retry and dead-letter topics (with the
    /// topic's partition count) when missing.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent when `topic` does not exist or a name is invalid, transient
    /// when the cluster does not answer.
    pub async fn connect(
        config: KafkaConfig,
        topic: &str,
        group: &str,
    ) -> Result<Self, BrokerError> {
        let names = ensure_group_topics(&config, topic, group).await?;
        Self::open(
            config,
            &[names.topic.clone(), names.retry.clone()],
            group,
            Some(names.retry),
            Some(names.dead_letter),
        )
        .await
    }

    /// Reads the dead letters that `group` produced for `topic` (as consumer group
    /// `<group>.dlq-reader`). Deliveries can only be acknowledged.
    ///
    /// # Errors
    /// As for [`KafkaSubscriber::connect`].
    pub async fn dead_letters(
        config: KafkaConfig,
        topic: &str,
        group: &str,
    ) -> Result<Self, BrokerError> {
        let names = ensure_group_topics(&config, topic, group).await?;
        Self::open(
            config,
            std::slice::from_ref(&names.dead_letter),
            &format!("{group}.dlq-reader"),
            None,
            None,
        )
        .await
    }

    async fn open(
        config: KafkaConfig,
        topics: &[String],
        group: &str,
        retry_topic: Option<String>,
        dead_letter_topic: Option<String>,
    ) -> Result<Self, BrokerError> {
        for t in topics {
            check_topic(t).map_err(|e| BrokerError::permanent("subscribe", e.to_string()))?;
        }
        let offsets = Arc::new(Offsets::default());
        let consumer: StreamConsumer<TrackingContext> = config
            .consumer(group)
            .create_with_context(TrackingContext {
                offsets: Arc::clone(&offsets),
            })
            .map_err(|e| broker_error("subscribe", &e))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| broker_error("subscribe", &e))?;
        let (redeliver, redelivered) = unbounded_channel();
        let consumer = Arc::new(consumer);
        let publisher = Arc::new(KafkaPublisher::connect(config.clone()).await?);
        let link = Arc::new(SettleLink {
            consumer: Arc::clone(&consumer),
            offsets,
            publisher,
            retry_topic: retry_topic.clone(),
            dead_letter_topic,
            redeliver,
        });
        Ok(Self {
            consumer,
            link,
            group: Arc::from(group),
            retry_topic,
            redelivered,
            delayed: BinaryHeap::new(),
            delayed_seq: 0,
            max_delayed: config.max_delayed,
            closed: false,
        })
    }

    /// The underlying consumer (for the transactional producer's offsets).
    pub(crate) fn consumer(&self) -> &StreamConsumer<TrackingContext> {
        &self.consumer
    }

    fn delivery(&self, incoming: IncomingMessage, position: Position) -> Delivery {
        let settler = KafkaSettler::new(Arc::clone(&self.link), incoming.clone(), position);
        Delivery::new(incoming, Box::new(settler))
    }

    /// An abandoned delivery handed out again, marked as redelivered.
    fn redelivery(&self, incoming: IncomingMessage, position: Position) -> Delivery {
        let origin = incoming.origin().clone();
        let again = IncomingMessage::new(incoming.into_message(), origin, true);
        self.delivery(again, position)
    }

    /// When a retried copy may be handled (`None`: now).
    fn due(incoming: &IncomingMessage) -> Option<Instant> {
        let text = incoming.message().headers().get(header_names::NOT_BEFORE)?;
        let at = wire_time::parse_millis(text)?;
        let wait = at.duration_since(SystemTime::now()).ok()?;
        Some(Instant::now() + wait)
    }
}

#[async_trait]
impl Subscriber for KafkaSubscriber {
    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        if self.closed {
            return Ok(None);
        }
        loop {
            if let Ok((incoming, position)) = self.redelivered.try_recv() {
                return Ok(Some(self.redelivery(incoming, position)));
            }
            let next_due = self.delayed.peek().map(|Reverse(d)| d.due);
            if next_due.is_some_and(|due| due <= Instant::now()) {
                let Reverse(d) = self.delayed.pop().expect("peeked");
                return Ok(Some(self.delivery(d.incoming, d.position)));
            }
            let full = self.delayed.len() >= self.max_delayed;
            let sleep = async {
                match next_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some((incoming, position)) = self.redelivered.recv() => {
                    return Ok(Some(self.redelivery(incoming, position)));
                }
                () = sleep => continue,
                received = self.consumer.recv(), if !full => {
                    let record = received.map_err(|e| broker_error("receive", &e))?;
                    let message = wire::message(&record);
                    let topic: Arc<str> = Arc::from(record.topic());
                    let position = self.link.offsets.received(
                        record.topic(),
                        record.partition(),
                        record.offset(),
                    );
                    let from_retry = self.retry_topic.as_deref() == Some(record.topic());
                    let origin = Origin {
                        topic,
                        group: Arc::clone(&self.group),
                        partition: Some(record.partition()),
                        offset: Some(record.offset()),
                    };
                    drop(record);
                    let incoming = IncomingMessage::new(message, origin, false);
                    if from_retry {
                        if let Some(due) = Self::due(&incoming) {
                            self.delayed_seq += 1;
                            self.delayed.push(Reverse(Delayed {
                                due,
                                seq: self.delayed_seq,
                                incoming,
                                position,
                            }));
                            continue;
                        }
                    }
                    return Ok(Some(self.delivery(incoming, position)));
                }
            }
        }
    }

    /// Commits the stored offsets and leaves the group. Unsettled deliveries are delivered
    /// again to the group (from the last committed offset).
    async fn close(&mut self) -> Result<(), BrokerError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.delayed.clear();
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "nothing committed on close");
            }
            consumer.unsubscribe();
        })
        .await
        .map_err(|e| BrokerError::transient("close", e.to_string()))
    }
}
