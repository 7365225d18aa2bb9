//! Receiving from the in-memory broker.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use async_trait::async_trait;

use super::broker::BrokerState;
use super::group_queue::{Entry, GroupQueue, Take};
use super::settler::MemorySettler;
use crate::broker_error::BrokerError;
use crate::delivery::Delivery;
use crate::incoming::{IncomingMessage, Origin};
use crate::subscriber::Subscriber;

static NEXT_SUBSCRIBER_ID: AtomicU64 = AtomicU64::new(1);

/// A [`Subscriber`] of one topic and group of a [`super::MemoryBroker`].
pub struct MemorySubscriber {
    id: u64,
    queue: Arc<GroupQueue>,
    broker: Arc<BrokerState>,
    closed: bool,
}

impl MemorySubscriber {
    fn delivery(&self, tag: u64, entry: Entry) -> Delivery {
        let origin = Origin {
            topic: Arc::clone(&self.queue.topic),
            group: Arc::clone(&self.queue.group),
            partition: None,
            offset: i64::try_from(entry.offset).ok(),
        };
        let incoming = IncomingMessage::new(entry.message, origin, entry.redelivered);
        let settler = MemorySettler::new(Arc::clone(&self.queue), Arc::clone(&self.broker), tag);
        Delivery::new(incoming, Box::new(settler))
    }

    pub(crate) fn new(queue: Arc<GroupQueue>, broker: Arc<BrokerState>) -> Self {
        Self {
            id: NEXT_SUBSCRIBER_ID.fetch_add(1, Relaxed),
            queue,
            broker,
            closed: false,
        }
    }
}

#[async_trait]
impl Subscriber for MemorySubscriber {
    fn group(&self) -> Option<&str> {
        Some(&self.queue.group)
    }

    fn destination(&self) -> Option<&str> {
        Some(&self.queue.topic)
    }

    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        loop {
            if self.closed {
                return Ok(None);
            }
            // Fast path: take without registering for a wake-up.
            if let Take::Message { tag, entry } = self.queue.take(self.id, &self.broker.faults) {
                return Ok(Some(self.delivery(tag, entry)));
            }
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.queue.take(self.id, &self.broker.faults) {
                Take::Message { tag, entry } => return Ok(Some(self.delivery(tag, entry))),
                Take::Wait(Some(due)) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(due) => {}
                    }
                }
                Take::Wait(None) => notified.await,
            }
        }
    }

    async fn close(&mut self) -> Result<(), BrokerError> {
        if !self.closed {
            self.closed = true;
            self.queue.requeue_subscriber(self.id);
        }
        Ok(())
    }
}

impl Drop for MemorySubscriber {
    fn drop(&mut self) {
        if !self.closed {
            self.queue.requeue_subscriber(self.id);
        }
    }
}
