//! A subscriber that hands out what it received in reverse order.

use std::time::Duration;

use async_trait::async_trait;
use waybill_core::{BrokerError, Delivery, Subscriber};

/// Deliveries gathered before a window is handed out.
const WINDOW: usize = 16;

/// How long a window waits for its next delivery.
const GATHER_WAIT: Duration = Duration::from_millis(20);

/// Gathers up to [`WINDOW`] deliveries (as many as arrive within [`GATHER_WAIT`] of each
/// other) and hands them out last first, so later messages of a key overtake earlier ones.
pub struct ReorderingSubscriber {
    inner: Box<dyn Subscriber>,
    gathered: Vec<Delivery>,
    ready: Vec<Delivery>,
}

impl ReorderingSubscriber {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn Subscriber>) -> Self {
        Self {
            inner,
            gathered: Vec::new(),
            ready: Vec::new(),
        }
    }
}

#[async_trait]
impl Subscriber for ReorderingSubscriber {
    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        if let Some(d) = self.ready.pop() {
            return Ok(Some(d));
        }
        // Gathered deliveries live in `self`, so a cancelled receive loses none.
        while self.gathered.len() < WINDOW {
            let next = if self.gathered.is_empty() {
                self.inner.receive().await?
            } else {
                match tokio::time::timeout(GATHER_WAIT, self.inner.receive()).await {
                    Err(_) => break,
                    Ok(next) => next?,
                }
            };
            match next {
                Some(d) => self.gathered.push(d),
                None => break,
            }
        }
        // `ready` is popped from its end: the last gathered goes first.
        self.ready = std::mem::take(&mut self.gathered);
        Ok(self.ready.pop())
    }

    async fn close(&mut self) -> Result<(), BrokerError> {
        self.gathered.clear();
        self.ready.clear();
        self.inner.close().await
    }
}
