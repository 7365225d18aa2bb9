//! Consuming a topic in a consumer group, with the group's retry topic.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use async_trait::async_trait;
use rocketmq_client_rust::DefaultLitePullConsumer;
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use waybill_core::backend_kit::{
    InFlightOffsets, IntakeTopics, LogIntake, OffsetCommitter, RecordPosition,
};
use waybill_core::{BrokerError, Delivery, LagProbe, Subscriber};

use crate::admin::RocketAdmin;
use crate::config::{RocketConfig, StartFrom};
use crate::error_class::broker_error;
use crate::lag::RocketLagProbe;
use crate::names::GroupTopics;
use crate::publisher::RocketPublisher;
use crate::queue_tracker::QueueTracker;
use crate::runtime::{pull_consumer, Erased, RocketFuture};
use crate::wire;

/// Commits "next offset to read" of a queue in the consumer's offset store; the client
/// persists it to the broker every 5 s, when a rebalance takes the queue away, and on close.
pub(crate) struct CommitOffsets(Erased<DefaultLitePullConsumer>);

#[async_trait]
impl OffsetCommitter<MessageQueue> for CommitOffsets {
    async fn commit(&self, queue: &MessageQueue, next: i64) {
        self.0
            .get()
            .commit_with_map(HashMap::from([(queue.clone(), next)]), false)
            .await;
    }
}

/// Turns polled messages into deliveries settled with offsets committed in the client.
type RocketIntake = LogIntake<MessageQueue, CommitOffsets>;

/// Consumes `topic` (and the group's retry topic) in a consumer group, with
/// acknowledgements the SDK controls (a lite pull consumer with automatic commit off).
///
/// - **Acknowledgement**: a queue's offset is committed only up to the lowest offset still in
///   flight on it, so out-of-order completion never commits past unfinished work. The client
///   persists committed offsets to the broker every 5 s, when a rebalance moves a queue and on
///   close; a crash re-delivers at most the uncommitted tail (at-least-once).
/// - **Retry later**: a confirmed copy goes to `<topic>_<group>_RETRY` with a
///   `waybill-not-before` header, then the original is acknowledged; this subscriber reads
///   the retry topic too and holds each copy until it is due.
/// - **Dead letter**: a confirmed copy with the `waybill-dl-*` record goes to
///   `<topic>_<group>_DLQ`, then the original is acknowledged.
/// - A delivery dropped unsettled is delivered again by this subscriber.
///
/// RocketMQ's own `%RETRY%`/`%DLQ%` path is not used: its retry count lives in the broker, it
/// cannot carry the dead-letter record, and an orderly consumer on it can retry forever. The
/// Processor's retry policy caps attempts on every broker alike.
pub struct RocketSubscriber {
    consumer: Erased<DefaultLitePullConsumer>,
    intake: RocketIntake,
    polled: VecDeque<MessageExt>,
    poll_timeout_ms: u64,
    closed: bool,
    /// For the lag probe: the config, the subscribed topics and, for a group's own
    /// subscriber, its dead-letter topic with the group that reads it.
    config: RocketConfig,
    topics: Vec<String>,
    dead_letters: Option<(String, String)>,
}

impl RocketSubscriber {
    /// Joins `group` on `topic`. The topic must exist; the group and its retry and dead-letter
    /// topics (with the topic's queue count) are created when missing, so a brand-new group
    /// receives from its first poll.
    ///
    /// # Errors
    /// [`BrokerError`]: permanent when `topic` does not exist or a name is invalid, transient
    /// when the cluster does not answer.
    pub fn connect<'a>(
        config: RocketConfig,
        topic: &'a str,
        group: &'a str,
    ) -> RocketFuture<'a, Result<Self, BrokerError>> {
        crate::runtime::boxed(async move {
            let names = prepare_group(&config, topic, group, None).await?;
            Self::open(
                config,
                &[names.topic.clone(), names.retry.clone()],
                group,
                Some(names.retry),
                Some(names.dead_letter),
            )
            .await
        })
    }

    /// Reads the dead letters that `group` produced for `topic` (as consumer group
    /// `<group>_dlq_reader`). Deliveries can only be acknowledged.
    ///
    /// # Errors
    /// As for [`RocketSubscriber::connect`].
    pub fn dead_letters<'a>(
        config: RocketConfig,
        topic: &'a str,
        group: &'a str,
    ) -> RocketFuture<'a, Result<Self, BrokerError>> {
        crate::runtime::boxed(async move {
            let reader = dead_letter_reader(group);
            let names = prepare_group(&config, topic, group, Some(&reader)).await?;
            Self::open(
                config,
                std::slice::from_ref(&names.dead_letter),
                &reader,
                None,
                None,
            )
            .await
        })
    }

    async fn open(
        config: RocketConfig,
        topics: &[String],
        group: &str,
        retry_topic: Option<String>,
        dead_letter_topic: Option<String>,
    ) -> Result<Self, BrokerError> {
        let start = match config.start_from {
            StartFrom::Earliest => ConsumeFromWhere::ConsumeFromFirstOffset,
            StartFrom::Latest => ConsumeFromWhere::ConsumeFromLastOffset,
        };
        let consumer = pull_consumer(&config, group)?
            .consume_from_where(start)
            .poll_timeout_millis(millis(config.poll_timeout))
            // Long polls are held by the broker for at most 2 s, so that closing (which
            // waits for the pull in flight) takes seconds, not the default 20.
            .broker_suspend_max_time_millis(2_000)
            .consumer_timeout_millis_when_suspend(5_000)
            .build()
            .map_err(|e| broker_error("subscribe", &e))?;
        let offsets = Arc::new(InFlightOffsets::default());
        // The client keeps one listener per consumer (each subscribe replaces it), called
        // with each topic's assignment in turn: one tracker follows every topic.
        let tracker = QueueTracker::new(Arc::clone(&offsets));
        for topic in topics {
            consumer
                .subscribe_with_listener(topic, "*", tracker.clone())
                .await
                .map_err(|e| broker_error("subscribe", &e))?;
        }
        consumer
            .start()
            .await
            .map_err(|e| broker_error("subscribe", &e))?;
        let consumer = Erased::new(consumer);
        let publisher = Arc::new(RocketPublisher::connect(config.clone()).await?);
        let dead_letters = dead_letter_topic
            .as_ref()
            .map(|topic| (topic.clone(), dead_letter_reader(group)));
        let intake = RocketIntake::new(
            offsets,
            CommitOffsets(consumer.clone()),
            publisher,
            IntakeTopics {
                group: group.to_owned(),
                retry_topic,
                dead_letter_topic,
                max_delayed: config.max_delayed,
            },
        );
        Ok(Self {
            consumer,
            intake,
            polled: VecDeque::new(),
            poll_timeout_ms: millis(config.poll_timeout),
            closed: false,
            config,
            topics: topics.to_vec(),
            dead_letters,
        })
    }

    /// Tracks a polled message and turns it into a delivery (`None`: a retried copy held
    /// until due).
    fn accept(&mut self, ext: MessageExt) -> Option<Delivery> {
        let at = RecordPosition {
            queue: MessageQueue::from_parts(
                ext.topic().clone(),
                ext.broker_name.clone(),
                ext.queue_id,
            ),
            topic: ext.topic().as_str(),
            queue_id: ext.queue_id,
            offset: ext.queue_offset,
        };
        self.intake.accept(at, wire::message(&ext))
    }
}
/// Creates `group` with its retry and dead-letter topics for `topic` (and the `reader` group,
/// if any) through a short-lived admin client.
async fn prepare_group(
    config: &RocketConfig,
    topic: &str,
    group: &str,
    reader: Option<&str>,
) -> Result<GroupTopics, BrokerError> {
    let admin = RocketAdmin::connect(config).await?;
    let mut names = admin.ensure_group_topics(topic, group).await;
    if let (Ok(_), Some(reader)) = (&names, reader) {
        names = admin.create_group(reader).await.and(names);
    }
    admin.close().await;
    names
}

/// The consumer group that reads `group`'s dead letters ([`RocketSubscriber::dead_letters`]).
fn dead_letter_reader(group: &str) -> String {
    format!("{group}_dlq_reader")
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl Subscriber for RocketSubscriber {
    fn group(&self) -> Option<&str> {
        Some(self.intake.group())
    }

    /// The topic subscribed to (the dead-letter topic, for a dead-letter reader).
    fn destination(&self) -> Option<&str> {
        self.topics.first().map(String::as_str)
    }

    /// Max offset minus committed offset on every message queue of the subscribed topics
    /// (the topic and the group's retry topic; the dead-letter topic for
    /// [`RocketSubscriber::dead_letters`]), read from the brokers' consume stats through an
    /// admin client of the probe's own, started at its first reading. A queue the group never
    /// committed on counts from its min offset. Commits reach the broker up to 5 s late, the
    /// first ones 10 s after the subscriber connected. `dead_letter_depth` is what the
    /// dead-letter reader group has not read of the group's dead-letter topic (`None` for the
    /// reader itself, or when it cannot be read).
    fn lag_probe(&self) -> Option<Arc<dyn LagProbe>> {
        Some(Arc::new(RocketLagProbe::new(
            self.config.clone(),
            self.intake.group().to_owned(),
            self.topics.clone(),
            self.dead_letters.clone(),
        )))
    }

    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        if self.closed {
            return Ok(None);
        }
        loop {
            if let Some(delivery) = self.intake.ready() {
                return Ok(Some(delivery));
            }
            if self.intake.is_full() {
                if let Some(delivery) = self.intake.wait().await {
                    return Ok(Some(delivery));
                }
                continue;
            }
            if let Some(ext) = self.polled.pop_front() {
                if let Some(delivery) = self.accept(ext) {
                    return Ok(Some(delivery));
                }
                continue;
            }
            // A poll is never cancelled half-way (it would drop what it took from the
            // client's cache); it is kept short instead, and no longer than the wait for the
            // next retried copy.
            let until_due = self
                .intake
                .next_due()
                .map(|due| due.saturating_duration_since(tokio::time::Instant::now()));
            let timeout = until_due.map_or(self.poll_timeout_ms, |d| {
                millis(d).clamp(1, self.poll_timeout_ms)
            });
            let batch = self.consumer.get().poll_with_timeout(timeout).await;
            self.polled.extend(batch);
        }
    }

    /// Commits what is done and leaves the group (the client persists the committed offsets
    /// to the broker). Unsettled deliveries are delivered again to the group.
    async fn close(&mut self) -> Result<(), BrokerError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.intake.clear();
        self.polled.clear();
        self.consumer.get().shutdown().await;
        Ok(())
    }
}
