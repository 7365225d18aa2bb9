//! The receiving side of a log-structured subscriber: records become deliveries, retried
//! copies wait until due, deliveries dropped unsettled come back.

use std::hash::Hash;
use std::sync::Arc;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::Instant;

use super::delayed::{not_before, DelayedCopies};
use super::offsets::{InFlightOffsets, TrackedOffset};
use super::settler::{Abandoned, LogSettler, OffsetCommitter, SettleLink};
use crate::delivery::Delivery;
use crate::incoming::{IncomingMessage, Origin};
use crate::message::Message;
use crate::publisher::Publisher;

/// Where a record was read: its queue (partition) key, topic, queue number and offset.
pub struct RecordPosition<'a, Q> {
    /// The key the offset tracker uses for the queue.
    pub queue: Q,
    /// The topic the record was read from.
    pub topic: &'a str,
    /// The queue (partition) number within the topic.
    pub queue_id: i32,
    /// The record's offset within its queue.
    pub offset: i64,
}

/// Topics and limits of one subscriber's intake.
pub struct IntakeTopics {
    /// The consumer group.
    pub group: String,
    /// Where retry copies go (and are read from); `None` for a dead-letter reader.
    pub retry_topic: Option<String>,
    /// Where dead-letter copies go; `None` for a dead-letter reader.
    pub dead_letter_topic: Option<String>,
    /// Retried copies held at most before the subscriber stops reading.
    pub max_delayed: usize,
}

/// Turns records of a log-structured broker into deliveries settled by a [`LogSettler`].
///
/// Guarantees, whichever broker feeds it:
/// - every record's offset is tracked before its delivery exists, so no acknowledgement can
///   commit past it;
/// - a copy read from the retry topic is held until its `waybill-not-before` time (at most
///   `max_delayed` copies; [`is_full`](Self::is_full) tells the subscriber to stop reading);
/// - a delivery dropped unsettled is handed out again, marked as redelivered, before any new
///   record.
pub struct LogIntake<Q, C> {
    link: Arc<SettleLink<Q, C>>,
    group: Arc<str>,
    retry_topic: Option<String>,
    redelivered: UnboundedReceiver<Abandoned<Q>>,
    delayed: DelayedCopies<Abandoned<Q>>,
}

impl<Q, C> LogIntake<Q, C>
where
    Q: Hash + Eq + Clone + Send + Sync + 'static,
    C: OffsetCommitter<Q> + 'static,
{
    /// An intake whose settlements commit through `committer` and publish retry and
    /// dead-letter copies with `publisher`.
    pub fn new(
        offsets: Arc<InFlightOffsets<Q>>,
        committer: C,
        publisher: Arc<dyn Publisher>,
        topics: IntakeTopics,
    ) -> Self {
        let (redeliver, redelivered) = unbounded_channel();
        let link = Arc::new(SettleLink {
            offsets,
            committer,
            publisher,
            retry_topic: topics.retry_topic.clone(),
            dead_letter_topic: topics.dead_letter_topic,
            redeliver,
            commit_turn: tokio::sync::Mutex::new(()),
        });
        Self {
            link,
            group: Arc::from(topics.group),
            retry_topic: topics.retry_topic,
            redelivered,
            delayed: DelayedCopies::new(topics.max_delayed),
        }
    }

    /// The consumer group the deliveries are read for.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// A delivery dropped unsettled or a retried copy now due, if any.
    pub fn ready(&mut self) -> Option<Delivery> {
        if let Ok(abandoned) = self.redelivered.try_recv() {
            return Some(self.redelivery(abandoned));
        }
        let (incoming, position) = self.delayed.pop_due()?;
        Some(self.delivery(incoming, position))
    }

    /// Tracks a record read at `at` and returns its delivery, or `None` when it is a retried
    /// copy that is not due yet (it is held until then).
    pub fn accept(&mut self, at: RecordPosition<'_, Q>, message: Message) -> Option<Delivery> {
        let position = self.link.offsets.received(&at.queue, at.offset);
        let origin = Origin {
            topic: Arc::from(at.topic),
            group: Arc::clone(&self.group),
            partition: Some(at.queue_id),
            offset: Some(at.offset),
        };
        let incoming = IncomingMessage::new(message, origin, false);
        if self.retry_topic.as_deref() == Some(at.topic) {
            if let Some(due) = not_before(&incoming) {
                self.delayed.push(due, (incoming, position));
                return None;
            }
        }
        Some(self.delivery(incoming, position))
    }

    /// Whether the intake holds as many retried copies as it may: the subscriber should
    /// not read until [`wait`](Self::wait) hands something out.
    pub fn is_full(&self) -> bool {
        self.delayed.is_full()
    }

    /// When the earliest held copy is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.next_due()
    }

    /// Waits for a delivery dropped unsettled (returned) or for the earliest held copy to
    /// fall due (`None`: call [`ready`](Self::ready)). Cancel-safe.
    pub async fn wait(&mut self) -> Option<Delivery> {
        tokio::select! {
            Some(abandoned) = self.redelivered.recv() => Some(self.redelivery(abandoned)),
            () = self.delayed.wait_due() => None,
        }
    }

    /// Drops the held copies on close; their offsets stay uncommitted, so the group reads
    /// them again.
    pub fn clear(&mut self) {
        self.delayed.clear();
    }

    fn delivery(&self, incoming: IncomingMessage, position: TrackedOffset<Q>) -> Delivery {
        let settler = LogSettler::new(Arc::clone(&self.link), incoming.clone(), position);
        Delivery::new(incoming, Box::new(settler))
    }

    /// An abandoned delivery handed out again, marked as redelivered.
    fn redelivery(&self, (incoming, position): Abandoned<Q>) -> Delivery {
        let origin = incoming.origin().clone();
        let again = IncomingMessage::new(incoming.into_message(), origin, true);
        self.delivery(again, position)
    }
}
