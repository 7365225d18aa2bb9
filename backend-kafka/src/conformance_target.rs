//! The broker conformance suite's target over a Kafka cluster (feature `testkit`): run
//! `waybill_core::testkit::conformance::run(&KafkaTarget::new(config))` in your own tests,
//! against your own cluster or a container.

use std::sync::Arc;

use async_trait::async_trait;
use waybill_core::testkit::conformance::{ConformanceTarget, Scale};
use waybill_core::{BoxError, Capabilities, Publisher, Subscriber};

use crate::admin::create_topic;
use crate::config::KafkaConfig;
use crate::publisher::KafkaPublisher;
use crate::subscriber::KafkaSubscriber;

/// Runs the conformance suite on the cluster `config` points at. Each case creates its own
/// topics (4 partitions, replication 1 unless set otherwise) and leaves them behind: deleting
/// topics while clients are live disturbs some Kafka-protocol brokers.
pub struct KafkaTarget {
    config: KafkaConfig,
    partitions: i32,
    replication: i32,
    scale: Scale,
}

impl KafkaTarget {
    /// A target over `config`'s cluster with 4 partitions per topic, replication 1 and the
    /// suite's default scale.
    pub fn new(config: KafkaConfig) -> Self {
        Self {
            config,
            partitions: 4,
            replication: 1,
            scale: Scale::default(),
        }
    }

    /// Partitions of each test topic (more than one, so that consumers can share a group).
    pub fn partitions(mut self, partitions: i32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Copies of each test topic (3 on a production-like cluster).
    pub fn replication(mut self, replication: i32) -> Self {
        self.replication = replication;
        self
    }

    /// How large the suite's cases are.
    pub fn scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }
}

#[async_trait]
impl ConformanceTarget for KafkaTarget {
    fn name(&self) -> String {
        format!("kafka protocol at {}", self.config.brokers())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    fn scale(&self) -> Scale {
        self.scale.clone()
    }

    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError> {
        create_topic(&self.config, topic, self.partitions, self.replication).await?;
        Ok(())
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        Ok(Arc::new(
            KafkaPublisher::connect(self.config.clone()).await?,
        ))
    }

    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(
            KafkaSubscriber::connect(self.config.clone(), topic, group).await?,
        ))
    }

    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(
            KafkaSubscriber::dead_letters(self.config.clone(), topic, group).await?,
        ))
    }
}
