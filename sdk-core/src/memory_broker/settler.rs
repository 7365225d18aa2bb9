//! Settling deliveries of the in-memory broker.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use super::broker::{BrokerState, MemoryBroker};
use super::faults::{AckContext, AckFault};
use super::group_queue::{Entry, GroupQueue};
use super::publisher::MemoryPublisher;
use crate::broker_error::BrokerError;
use crate::dead_letter::DeadLetterRecord;
use crate::delivery::Settle;
use crate::incoming::IncomingMessage;
use crate::publish_error::PublishOutcome;
use crate::settlement::Settlement;

/// Settles one in-memory delivery; dropping it unsettled puts the message back.
pub(crate) struct MemorySettler {
    queue: Arc<GroupQueue>,
    broker: Arc<BrokerState>,
    tag: u64,
    settled: bool,
}

impl MemorySettler {
    pub fn new(queue: Arc<GroupQueue>, broker: Arc<BrokerState>, tag: u64) -> Self {
        Self {
            queue,
            broker,
            tag,
            settled: false,
        }
    }

    fn gone(operation: &'static str) -> BrokerError {
        BrokerError::permanent(
            operation,
            "delivery is no longer in flight (its subscriber closed); it will be delivered again",
        )
    }

    fn ack(&mut self, incoming: &IncomingMessage) -> Result<(), BrokerError> {
        let fault = self.broker.faults.ack_fault(&AckContext {
            topic: &self.queue.topic,
            group: &self.queue.group,
            message: incoming.message(),
        });
        if let Some(AckFault::Lost) = fault {
            self.settled = true;
            self.queue.requeue(self.tag);
            return Err(BrokerError::transient("ack", "injected fault: ack lost"));
        }
        self.settled = true;
        self.queue
            .complete(self.tag)
            .map(|_| ())
            .ok_or_else(|| Self::gone("ack"))
    }

    /// Publishes the dead-letter copy (confirmed), then acknowledges. On failure the delivery
    /// is dropped unsettled and the message is delivered again. A refused copy is retried
    /// (transient), one whose topic is missing says so.
    async fn dead_letter(
        mut self: Box<Self>,
        incoming: &IncomingMessage,
        record: DeadLetterRecord,
    ) -> Result<(), BrokerError> {
        if !self.queue.is_in_flight(self.tag) {
            self.settled = true;
            return Err(Self::gone("dead-letter"));
        }
        let mut message = incoming.message().clone();
        record.write_to(message.headers_mut());
        let topic = MemoryBroker::dead_letter_topic(&self.queue.topic);
        MemoryPublisher::store(&self.broker, &topic, message)
            .await
            .map_err(|e| match e.outcome() {
                PublishOutcome::NoDestination => {
                    BrokerError::destination_missing("dead-letter", e.to_string())
                }
                PublishOutcome::NotSent | PublishOutcome::Ambiguous | PublishOutcome::Permanent => {
                    BrokerError::transient("dead-letter", e.reason().to_owned())
                }
            })?;
        self.ack(incoming)
    }
}

#[async_trait]
impl Settle for MemorySettler {
    async fn settle(
        mut self: Box<Self>,
        incoming: &IncomingMessage,
        settlement: Settlement,
    ) -> Result<(), BrokerError> {
        match settlement {
            Settlement::Ack => self.ack(incoming),
            Settlement::Retry(request) => {
                let mut message = incoming.message().clone();
                request.apply_to(message.headers_mut());
                let copy = Entry {
                    message,
                    offset: incoming.origin().offset.unwrap_or_default() as u64,
                    redelivered: false,
                    fault_applied: false,
                };
                self.settled = true;
                if self
                    .queue
                    .replace_delayed(self.tag, copy, Instant::now() + request.delay)
                {
                    Ok(())
                } else {
                    Err(Self::gone("retry"))
                }
            }
            // Boxed: its publish makes the future large, and every settlement allocates the
            // future of this call; an acknowledgement's stays small.
            Settlement::DeadLetter(record) => Box::pin(self.dead_letter(incoming, record)).await,
        }
    }
}

impl Drop for MemorySettler {
    fn drop(&mut self) {
        if !self.settled {
            self.queue.requeue(self.tag);
        }
    }
}
