//! Consuming a topic in a consumer group, with the group's retry topic.

use std::sync::Arc;

use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::ClientContext;
use waybill_core::backend_kit::{IntakeTopics, RecordPosition};
use waybill_core::{BrokerError, Delivery, LagProbe, Subscriber};

use crate::admin::ensure_group_topics;
use crate::config::KafkaConfig;
use crate::error_class::broker_error;
use crate::lag::KafkaLagProbe;
use crate::names::check_topic;
use crate::offsets::Offsets;
use crate::poller::{Flow, PollResult, Poller};
use crate::publisher::KafkaPublisher;
use crate::settler::{KafkaIntake, StoreOffsets};

/// Tracks partition assignments so that acknowledgements of a partition this consumer lost
/// never store offsets for its new owner, and records read before a revoke are dropped.
pub(crate) struct TrackingContext {
    offsets: Arc<Offsets>,
    flow: Arc<Flow>,
}

impl ClientContext for TrackingContext {}

impl ConsumerContext for TrackingContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            tracing::debug!(partitions = partitions.count(), "partitions revoked");
            // Commit what is stored before the partitions move.
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "nothing committed on revoke");
            }
            for p in partitions.elements() {
                let partition = (p.topic().to_owned(), p.partition());
                self.flow.on_revoked(partition.clone());
                self.offsets.revoked(&partition);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::debug!(partitions = partitions.count(), "partitions assigned");
            self.flow.on_assigned(consumer, partitions);
            for p in partitions.elements() {
                self.offsets
                    .assigned(&(p.topic().to_owned(), p.partition()));
            }
        }
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
/// - **Backpressure keeps the membership.** The consumer is polled all the time on a thread
///   of its own, also while nobody asks for the next delivery (a Processor whose buffer is
///   full behind a slow handler, or an intake holding `max_delayed` retried copies). A
///   partition with 4 MiB or 10,000 records waiting for the reader is *paused* (nothing more
///   of it is fetched) and resumed once the reader took it down to a quarter, so a handler slower than
///   `max.poll.interval.ms` never gets the member evicted from its group (which would deliver
///   everything uncommitted again), and memory stays bounded per partition.
pub struct KafkaSubscriber {
    consumer: Arc<StreamConsumer<TrackingContext>>,
    flow: Arc<Flow>,
    poller: Poller,
    polled: tokio::sync::mpsc::UnboundedReceiver<PollResult>,
    intake: KafkaIntake,
    closed: bool,
    /// The subscribed topics, for the lag probe.
    topics: Vec<String>,
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
        crate::connect_probe::check_reachable(&config).await?;
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
        crate::connect_probe::check_reachable(&config).await?;
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
        let flow = Arc::new(Flow::default());
        let consumer: StreamConsumer<TrackingContext> = config
            .consumer(group)
            .create_with_context(TrackingContext {
                offsets: Arc::clone(&offsets),
                flow: Arc::clone(&flow),
            })
            .map_err(|e| broker_error("subscribe", &e))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| broker_error("subscribe", &e))?;
        let consumer = Arc::new(consumer);
        // For retry and dead-letter copies only: the cluster was found reachable a moment
        // ago, and the first copy (rare) can fetch its metadata itself.
        let publisher = Arc::new(KafkaPublisher::connect_reached(config.clone())?);
        let intake = KafkaIntake::new(
            offsets,
            StoreOffsets(Arc::clone(&consumer)),
            publisher,
            IntakeTopics {
                group: group.to_owned(),
                retry_topic,
                dead_letter_topic,
                max_delayed: config.max_delayed,
            },
        );
        let (poller, polled) = Poller::spawn(Arc::clone(&consumer), Arc::clone(&flow))
            .map_err(|e| BrokerError::transient("subscribe", format!("no poll thread: {e}")))?;
        Ok(Self {
            consumer,
            flow,
            poller,
            polled,
            intake,
            closed: false,
            topics: topics.to_vec(),
        })
    }

    /// The underlying consumer (for the transactional producer's offsets).
    pub(crate) fn consumer(&self) -> &StreamConsumer<TrackingContext> {
        &self.consumer
    }
}

impl KafkaSubscriber {
    /// The partitions (topic, partition) paused now because their records wait for this
    /// subscriber's reader beyond the backlog bound (see the type's docs): nothing more of
    /// them is fetched until the reader catches up. For diagnostics; empty while the reader
    /// keeps up.
    pub fn paused_partitions(&self) -> Vec<(String, i32)> {
        self.flow.paused()
    }
}

#[async_trait]
impl Subscriber for KafkaSubscriber {
    fn group(&self) -> Option<&str> {
        Some(self.intake.group())
    }

    /// The topic subscribed to (the dead-letter topic, for a dead-letter reader).
    fn destination(&self) -> Option<&str> {
        self.topics.first().map(String::as_str)
    }

    /// Log end offset minus committed offset on every partition of the subscribed topics
    /// (see the crate's lag notes: up to one commit interval behind).
    fn lag_probe(&self) -> Option<Arc<dyn LagProbe>> {
        Some(Arc::new(KafkaLagProbe {
            consumer: Arc::clone(&self.consumer),
            topics: self.topics.clone(),
            group: self.intake.group().to_owned(),
        }))
    }

    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        if self.closed {
            return Ok(None);
        }
        loop {
            if let Some(delivery) = self.intake.ready() {
                return Ok(Some(delivery));
            }
            let full = self.intake.is_full();
            tokio::select! {
                biased;
                woken = self.intake.wait() => {
                    if let Some(delivery) = woken {
                        return Ok(Some(delivery));
                    }
                }
                polled = self.polled.recv(), if !full => {
                    let Some(polled) = polled else {
                        return Err(BrokerError::transient("receive", "the consumer's poll task stopped"));
                    };
                    self.flow.taken(&polled);
                    let record = polled.map_err(|e| broker_error("receive", &e))?;
                    if self.flow.is_stale(&record) {
                        continue;
                    }
                    let (topic, partition) = record.partition.clone();
                    let at = RecordPosition {
                        queue: record.partition,
                        topic: &topic,
                        queue_id: partition,
                        offset: record.offset,
                    };
                    if let Some(delivery) = self.intake.accept(at, record.message) {
                        return Ok(Some(delivery));
                    }
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
        let poll_thread = self.poller.stop();
        self.intake.clear();
        let consumer = Arc::clone(&self.consumer);
        tokio::task::spawn_blocking(move || {
            if let Some(thread) = poll_thread {
                let _ = thread.join();
            }
            if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
                tracing::debug!(error = %e, "nothing committed on close");
            }
            consumer.unsubscribe();
        })
        .await
        .map_err(|e| BrokerError::transient("close", e.to_string()))
    }
}
