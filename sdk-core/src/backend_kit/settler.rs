//! Settling deliveries of a log-structured broker: commit the position, retry through a retry
//! topic, dead-letter to a dead-letter topic, redeliver when dropped unsettled.

use std::hash::Hash;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedSender;

use super::offsets::{InFlightOffsets, TrackedOffset};
use crate::broker_error::BrokerError;
use crate::delivery::Settle;
use crate::incoming::IncomingMessage;
use crate::message::Message;
use crate::publisher::Publisher;
use crate::settlement::Settlement;

/// Makes a completed position durable: stores or commits "next offset to read" for a queue.
#[async_trait]
pub trait OffsetCommitter<Q>: Send + Sync {
    /// Records that everything of `queue` below `next` is done.
    async fn commit(&self, queue: &Q, next: i64);
}

/// A delivery handed back for redelivery, with its position.
pub type Abandoned<Q> = (IncomingMessage, TrackedOffset<Q>);

/// What the settlements of one subscriber share.
pub struct SettleLink<Q, C> {
    /// In-flight positions of the subscriber's queues.
    pub offsets: Arc<InFlightOffsets<Q>>,
    /// Commits completed positions.
    pub committer: C,
    /// Publishes retry and dead-letter copies (confirmed).
    pub publisher: Arc<dyn Publisher>,
    /// Retry topic; `None` for a dead-letter reader, which can only acknowledge.
    pub retry_topic: Option<String>,
    /// Dead-letter topic; `None` for a dead-letter reader.
    pub dead_letter_topic: Option<String>,
    /// Abandoned deliveries go back to the subscriber, which delivers them again.
    pub redeliver: UnboundedSender<Abandoned<Q>>,
    /// Completions and their commits take turns (see [`SettleLink::complete`]).
    pub(crate) commit_turn: tokio::sync::Mutex<()>,
}

impl<Q: Hash + Eq + Clone + Send + Sync, C: OffsetCommitter<Q>> SettleLink<Q, C> {
    /// Marks `position` done and commits the committable offset of its queue.
    ///
    /// Completions take turns with their commits: a commit computed earlier (lower) can
    /// otherwise land after a later (higher) one of the same queue when the committer awaits,
    /// and the queue's committed offset stays behind what was done (read again after a
    /// restart; a lag that never reaches 0).
    async fn complete(&self, position: &TrackedOffset<Q>) {
        let _turn = self.commit_turn.lock().await;
        // `None`: the queue was reassigned; its new owner reads from the committed offset.
        if let Some(next) = self.offsets.completed(position) {
            self.committer.commit(&position.queue, next).await;
        }
    }

    async fn publish_copy(
        &self,
        operation: &'static str,
        topic: Option<&str>,
        copy: Message,
    ) -> Result<(), BrokerError> {
        let topic = topic.ok_or_else(|| {
            BrokerError::permanent(operation, "a dead-letter reader can only acknowledge")
        })?;
        self.publisher
            .publish(topic, copy)
            .await
            .map(|_| ())
            .map_err(|e| BrokerError::from_publish(operation, e.outcome(), e.to_string()))
    }
}

/// Settles one delivery; dropped unsettled, it hands the message back to its subscriber.
///
/// - ack: the position completes;
/// - retry: a confirmed copy with the retry headers goes to the retry topic, then the
///   position completes;
/// - dead letter: a confirmed copy with the `waybill-dl-*` record goes to the dead-letter
///   topic, then the position completes.
///
/// If the copy cannot be published, the settlement fails and the position stays in flight;
/// a copy whose topic does not exist yet fails with
/// [`BrokerError::is_destination_missing`] set, and the processor tries again with backoff.
pub struct LogSettler<Q, C> {
    link: Arc<SettleLink<Q, C>>,
    pending: Option<Abandoned<Q>>,
}

impl<Q, C> LogSettler<Q, C> {
    /// A settler for `incoming`, received at `position`.
    pub fn new(
        link: Arc<SettleLink<Q, C>>,
        incoming: IncomingMessage,
        position: TrackedOffset<Q>,
    ) -> Self {
        Self {
            link,
            pending: Some((incoming, position)),
        }
    }
}

#[async_trait]
impl<Q, C> Settle for LogSettler<Q, C>
where
    Q: Hash + Eq + Clone + Send + Sync + 'static,
    C: OffsetCommitter<Q> + 'static,
{
    async fn settle(
        mut self: Box<Self>,
        incoming: &IncomingMessage,
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        match settlement {
            Settlement::Ack => {}
            Settlement::Retry(request) => {
                let mut copy = incoming.message().clone();
                request.apply_to(copy.headers_mut());
                let topic = self.link.retry_topic.clone();
                self.link
                    .publish_copy("retry", topic.as_deref(), copy)
                    .await?;
            }
            Settlement::DeadLetter(record) => {
                let mut copy = incoming.message().clone();
                record.write_to(copy.headers_mut());
                let topic = self.link.dead_letter_topic.clone();
                self.link
                    .publish_copy("dead-letter", topic.as_deref(), copy)
                    .await?;
            }
        }
        let (_, position) = self.pending.take().expect("settled once");
        self.link.complete(&position).await;
        Ok(())
    }
}

impl<Q, C> Drop for LogSettler<Q, C> {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            // Its offset stays in flight; the subscriber delivers it again.
            let _ = self.link.redeliver.send(pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::mpsc::unbounded_channel;

    use super::*;
    use crate::memory_broker::MemoryBroker;

    /// Records each commit; the first one takes a while to land (a committer that awaits the
    /// client), so a later completion's commit would land before it unless commits take turns.
    #[derive(Default)]
    struct SlowFirstCommit {
        calls: Mutex<u32>,
        landed: Mutex<Vec<i64>>,
    }

    #[async_trait]
    impl OffsetCommitter<&'static str> for SlowFirstCommit {
        async fn commit(&self, _queue: &&'static str, next: i64) {
            let first = {
                let mut calls = self.calls.lock().unwrap();
                *calls += 1;
                *calls == 1
            };
            if first {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            self.landed.lock().unwrap().push(next);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queue_s_commits_land_in_the_order_they_were_computed() {
        let offsets = Arc::new(InFlightOffsets::default());
        let (redeliver, _redelivered) = unbounded_channel();
        let link = Arc::new(SettleLink {
            offsets: Arc::clone(&offsets),
            committer: SlowFirstCommit::default(),
            publisher: Arc::new(MemoryBroker::new().publisher()),
            retry_topic: None,
            dead_letter_topic: None,
            redeliver,
            commit_turn: tokio::sync::Mutex::new(()),
        });
        let first = offsets.received(&"q", 0);
        let second = offsets.received(&"q", 1);
        // Offset 0 completes first (commit 1, slow to land), then offset 1 (commit 2).
        let slow = tokio::spawn({
            let link = Arc::clone(&link);
            async move { link.complete(&first).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        link.complete(&second).await;
        slow.await.unwrap();
        let landed = link.committer.landed.lock().unwrap().clone();
        assert_eq!(
            landed.last(),
            Some(&2),
            "the last commit to land is the highest, or the queue reads its tail again after \
             a restart and its lag never reaches 0: {landed:?}"
        );
    }
}
