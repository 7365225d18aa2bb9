//! A conformance target over the in-memory broker with one breakage built in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use waybill_core::testkit::conformance::{ConformanceTarget, MemoryTarget, Scale};
use waybill_core::{BoxError, Capabilities, Publisher, Subscriber};

use super::duplicating::DuplicatingSubscriber;
use super::lossy::LossyPublisher;
use super::reordering::ReorderingSubscriber;

/// The one way a [`BrokenTarget`] is broken.
#[derive(Clone, Copy, Debug)]
pub enum Breakage {
    /// Confirms every seventh publish without storing it.
    Lossy,
    /// Delivers every fourth message a second time.
    Duplicating,
    /// Hands out each burst of deliveries in reverse order.
    Reordering,
    /// Gives every subscriber of a group its own copy of every message, as if each were a
    /// group of its own.
    Broadcasting,
}

/// The in-memory broker with one [`Breakage`]; claims every capability.
pub struct BrokenTarget {
    inner: MemoryTarget,
    breakage: Breakage,
    members: AtomicU64,
}

impl BrokenTarget {
    /// A fresh in-memory broker broken as `breakage` says.
    pub fn new(breakage: Breakage) -> Self {
        Self {
            inner: MemoryTarget::new(),
            breakage,
            members: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl ConformanceTarget for BrokenTarget {
    fn name(&self) -> String {
        format!("{:?} in-memory", self.breakage)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    fn scale(&self) -> Scale {
        Scale {
            publishers: 10,
            subscribers: 10,
            case_timeout: Duration::from_secs(2),
            ..Scale::default()
        }
    }

    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError> {
        self.inner.prepare_topic(topic).await
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        let publisher = self.inner.publisher().await?;
        Ok(match self.breakage {
            Breakage::Lossy => Arc::new(LossyPublisher::new(publisher)),
            _ => publisher,
        })
    }

    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(match self.breakage {
            Breakage::Lossy => self.inner.subscriber(topic, group).await?,
            Breakage::Duplicating => Box::new(DuplicatingSubscriber::new(
                self.inner.subscriber(topic, group).await?,
            )),
            Breakage::Reordering => Box::new(ReorderingSubscriber::new(
                self.inner.subscriber(topic, group).await?,
            )),
            Breakage::Broadcasting => {
                let member = self.members.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .subscriber(topic, &format!("{group}-member-{member}"))
                    .await?
            }
        })
    }

    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError> {
        self.inner.dead_letter_subscriber(topic, group).await
    }
}
