//! Publishing into the in-memory broker.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::broker::{AppendError, BrokerState};
use super::faults::{PublishContext, PublishFault};
use crate::broker_error::BrokerError;
use crate::config_error::validate_name;
use crate::failed_keys::FailedKeys;
use crate::message::Message;
use crate::publish_error::PublishError;
use crate::publisher::Publisher;
use crate::receipt::{BrokerPosition, Receipt};

/// A [`Publisher`] into a [`super::MemoryBroker`]. The "confirm" is the append to the topic's
/// log; faults injected through the broker can fail, lose or delay it.
#[derive(Clone)]
pub struct MemoryPublisher {
    broker: Arc<BrokerState>,
    lifecycle: Arc<Lifecycle>,
}

#[derive(Default)]
struct Lifecycle {
    closed: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
}

struct InFlight<'a>(&'a Lifecycle);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl MemoryPublisher {
    pub(crate) fn new(broker: Arc<BrokerState>) -> Self {
        Self {
            broker,
            lifecycle: Arc::default(),
        }
    }

    /// Counts a publish in flight until the returned guard is dropped (`close` waits for it).
    fn in_flight(&self) -> InFlight<'_> {
        self.lifecycle.in_flight.fetch_add(1, SeqCst);
        InFlight(&self.lifecycle)
    }

    /// Stores a message, or refuses it as not sent once the publisher is closed.
    async fn store_unless_closed(
        &self,
        topic: &str,
        message: Message,
    ) -> Result<Receipt, PublishError> {
        if self.lifecycle.closed.load(SeqCst) {
            return Err(PublishError::not_sent(
                topic,
                message,
                "publisher is closed",
            ));
        }
        Self::store(&self.broker, topic, message).await
    }

    /// Stores a message without the closed check: the path dead letters take too.
    pub(crate) async fn store(
        broker: &BrokerState,
        topic: &str,
        message: Message,
    ) -> Result<Receipt, PublishError> {
        if let Err(e) = validate_name("topic", topic) {
            return Err(PublishError::permanent(topic, message, e.to_string()));
        }
        let size = message.payload().len()
            + message
                .headers()
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        if size > broker.max_message_bytes {
            let reason = format!(
                "message of {size} bytes exceeds the limit of {} bytes",
                broker.max_message_bytes
            );
            return Err(PublishError::permanent(topic, message, reason));
        }
        let fault = broker.faults.publish_fault(&PublishContext {
            topic,
            message: &message,
        });
        let ambiguous = match fault {
            None => false,
            Some(PublishFault::Delay(d)) => {
                tokio::time::sleep(d).await;
                false
            }
            Some(PublishFault::NotSent) => {
                return Err(PublishError::not_sent(
                    topic,
                    message,
                    "injected fault: refused",
                ))
            }
            Some(PublishFault::NoDestination) => {
                return Err(PublishError::no_destination(
                    topic,
                    message,
                    format!("injected fault: topic {topic:?} does not exist (yet)"),
                ))
            }
            Some(PublishFault::Permanent) => {
                return Err(PublishError::permanent(
                    topic,
                    message,
                    "injected fault: rejected",
                ))
            }
            Some(PublishFault::Ambiguous { stored: false }) => {
                return Err(PublishError::ambiguous(
                    topic,
                    message,
                    "injected fault: confirm lost",
                ))
            }
            Some(PublishFault::Ambiguous { stored: true }) => true,
        };
        let id = message.id();
        let stored = if ambiguous {
            broker.append(topic, message.clone()).map(|_| None)
        } else {
            broker.append(topic, message.clone()).map(Some)
        };
        match stored {
            Ok(Some(offset)) => Ok(Receipt {
                message_id: id,
                topic: topic.to_owned(),
                position: BrokerPosition::Sequence(offset),
            }),
            Ok(None) => Err(PublishError::ambiguous(
                topic,
                message,
                "injected fault: confirm lost after store",
            )),
            Err(AppendError::UnknownTopic) => Err(PublishError::no_destination(
                topic,
                message,
                format!("unknown topic {topic:?} (topic auto-creation is off; not there yet)"),
            )),
        }
    }
}

#[async_trait]
impl Publisher for MemoryPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        let _in_flight = self.in_flight();
        crate::telemetry::metered("memory", topic, message, |message| {
            self.store_unless_closed(topic, message)
        })
        .await
    }

    /// Stores the messages in order, one after the other (a delay injected for one delays
    /// the rest of the batch), each with its own result; a message whose publish began after
    /// `close` is refused as not sent. Once a keyed message fails, the key's later messages
    /// in the batch are not stored and fail as not sent, so that none of them overtakes it.
    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        let _in_flight = self.in_flight();
        crate::telemetry::metered_batch("memory", topic, messages, |messages| async move {
            let mut results = Vec::with_capacity(messages.len());
            let mut failed_keys = FailedKeys::new();
            for message in messages {
                let result = match failed_keys.admit(topic, message) {
                    Ok(message) => self.store_unless_closed(topic, message).await,
                    Err(refused) => Err(refused),
                };
                failed_keys.record(&result);
                results.push(result);
            }
            results
        })
        .await
    }

    /// `true`: a batch is stored in order, and a failed message's later messages of its key
    /// in the batch are not stored.
    fn keeps_key_order_in_batch(&self) -> bool {
        true
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.lifecycle.closed.store(true, SeqCst);
        loop {
            let idle = self.lifecycle.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.lifecycle.in_flight.load(SeqCst) == 0 {
                return Ok(());
            }
            idle.await;
        }
    }

    /// `Ready` (the broker is in this process) until the publisher is closed.
    async fn health(&self) -> crate::Health {
        if self.lifecycle.closed.load(SeqCst) {
            crate::Health::stopped("publisher is closed")
        } else {
            crate::Health::ready()
        }
    }
}
