//! A subscriber that hands out some deliveries twice.

use async_trait::async_trait;
use waybill_core::{BrokerError, Delivery, IncomingMessage, Settle, Settlement, Subscriber};

/// Follows every fourth delivery (the first included) with a copy of it; settling the copy
/// does nothing.
pub struct DuplicatingSubscriber {
    inner: Box<dyn Subscriber>,
    received: u64,
    copy: Option<IncomingMessage>,
}

impl DuplicatingSubscriber {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Subscriber>) -> Self {
        Self {
            inner,
            received: 0,
            copy: None,
        }
    }
}

/// The settler of a copy: accepts every settlement and does nothing.
struct CopySettler;

#[async_trait]
impl Settle for CopySettler {
    async fn settle(
        self: Box<Self>,
        _incoming: &IncomingMessage,
        _settlement: Settlement,
    ) -> Result<(), BrokerError> {
        Ok(())
    }
}

#[async_trait]
impl Subscriber for DuplicatingSubscriber {
    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        if let Some(copy) = self.copy.take() {
            return Ok(Some(Delivery::new(copy, Box::new(CopySettler))));
        }
        let delivery = self.inner.receive().await?;
        if let Some(d) = &delivery {
            if self.received % 4 == 0 {
                self.copy = Some(d.message().clone());
            }
            self.received += 1;
        }
        Ok(delivery)
    }

    async fn close(&mut self) -> Result<(), BrokerError> {
        self.copy = None;
        self.inner.close().await
    }
}
