//! A publisher that confirms some messages without storing them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use waybill_core::{BrokerError, BrokerPosition, Message, PublishError, Publisher, Receipt};

/// Confirms every seventh publish without passing it on.
pub struct LossyPublisher {
    inner: Arc<dyn Publisher>,
    count: AtomicU64,
}

impl LossyPublisher {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Publisher>) -> Self {
        Self {
            inner,
            count: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl Publisher for LossyPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        if self.count.fetch_add(1, Ordering::Relaxed) % 7 == 3 {
            return Ok(Receipt {
                message_id: message.id(),
                topic: topic.to_owned(),
                position: BrokerPosition::Sequence(0),
            });
        }
        self.inner.publish(topic, message).await
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.inner.close().await
    }
}
