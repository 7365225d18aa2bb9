//! The in-memory broker as a conformance target.

use std::sync::Arc;

use async_trait::async_trait;

use super::ConformanceTarget;
use crate::capabilities::Capabilities;
use crate::handler::BoxError;
use crate::memory_broker::MemoryBroker;
use crate::publisher::Publisher;
use crate::subscriber::Subscriber;

/// Runs the suite against a [`MemoryBroker`].
#[derive(Clone, Default)]
pub struct MemoryTarget {
    broker: MemoryBroker,
}

impl MemoryTarget {
    /// A target over a fresh broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// A target over an existing broker (for example one with fault hooks set).
    pub fn with_broker(broker: MemoryBroker) -> Self {
        Self { broker }
    }
}

#[async_trait]
impl ConformanceTarget for MemoryTarget {
    fn name(&self) -> String {
        "in-memory".to_owned()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError> {
        Ok(self.broker.create_topic(topic)?)
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        Ok(Arc::new(self.broker.publisher()))
    }

    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(self.broker.subscriber(topic, group)?))
    }

    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError> {
        let dlq = MemoryBroker::dead_letter_topic(topic);
        Ok(Box::new(self.broker.subscriber(&dlq, group)?))
    }
}
