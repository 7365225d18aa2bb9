//! The consumer-side contract.

use std::sync::Arc;

use async_trait::async_trait;

use crate::broker_error::BrokerError;
use crate::delivery::Delivery;
use crate::lag::LagProbe;

/// Yields deliveries from one subscription (topic or queue, consumer group).
///
/// Several subscribers of the same group share the messages (competing consumers); different
/// groups each receive every message.
#[async_trait]
pub trait Subscriber: Send {
    /// Waits for the next delivery. `Ok(None)` means the subscription is closed.
    ///
    /// # Errors
    /// [`BrokerError`]: transient ones (connection lost) may be followed by more deliveries once
    /// the backend reconnected; permanent ones (bad credentials, missing queue) end the stream.
    ///
    /// # Cancel safety
    /// Must be cancel safe: dropping the future before it completes loses no message.
    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError>;

    /// Stops receiving. Deliveries still unsettled will be delivered again (to this group),
    /// and settling them after close may fail. Closing twice is harmless.
    ///
    /// # Errors
    /// [`BrokerError`] when the broker connection could not be closed cleanly.
    async fn close(&mut self) -> Result<(), BrokerError>;

    /// The consumer group this subscriber reads for, when it reads in one (every backend's
    /// subscriber does). [`crate::Processor::for_subscriber`] takes its name from here, so the
    /// group is written once.
    fn group(&self) -> Option<&str> {
        None
    }

    /// The topic or queue this subscriber reads, when it reads one (every backend's subscriber
    /// does). A [`crate::Processor`] names its metrics after it from the start, so that its
    /// readiness gauge exists — and drops to 0 — even when no delivery ever arrives; without
    /// it the metrics are registered at the first delivery.
    fn destination(&self) -> Option<&str> {
        None
    }

    /// A probe that reads this subscription's consumer lag from the broker, usable while the
    /// subscriber itself is busy receiving (a [`crate::Processor`] samples it into the
    /// `waybill.consumer.lag` gauge and answers [`crate::RunningProcessor::lag`] with it).
    /// `None` when the backend cannot tell.
    fn lag_probe(&self) -> Option<Arc<dyn LagProbe>> {
        None
    }
}

#[async_trait]
impl<S: Subscriber + ?Sized> Subscriber for Box<S> {
    async fn receive(&mut self) -> Result<Option<Delivery>, BrokerError> {
        (**self).receive().await
    }

    async fn close(&mut self) -> Result<(), BrokerError> {
        (**self).close().await
    }

    fn group(&self) -> Option<&str> {
        (**self).group()
    }

    fn destination(&self) -> Option<&str> {
        (**self).destination()
    }

    fn lag_probe(&self) -> Option<Arc<dyn LagProbe>> {
        (**self).lag_probe()
    }
}
