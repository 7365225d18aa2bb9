//! The broker conformance suite's target over a RocketMQ cluster (feature `testkit`): run
//! `waybill_core::testkit::conformance::run(&RocketTarget::new(config))` in your own tests,
//! against your own cluster or a container.

use std::sync::Arc;

use async_trait::async_trait;
use waybill_core::testkit::conformance::{ConformanceTarget, Scale};
use waybill_core::{BoxError, Capabilities, Publisher, Subscriber};

use crate::admin::RocketAdmin;
use crate::config::RocketConfig;
use crate::publisher::RocketPublisher;
use crate::subscriber::RocketSubscriber;

/// Runs the conformance suite on the cluster whose name servers `config` names. Each case
/// creates its own topics (with the config's `queues_per_topic`).
pub struct RocketTarget {
    config: RocketConfig,
    scale: Scale,
    prompt_rebalance: bool,
}

impl RocketTarget {
    /// A target over `config`'s cluster with the suite's default scale, assuming a broker
    /// that notifies consumers of group changes (Apache RocketMQ does).
    pub fn new(config: RocketConfig) -> Self {
        Self {
            config,
            scale: Scale::default(),
            prompt_rebalance: true,
        }
    }

    /// How large the suite's cases are.
    pub fn scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }

    /// Whether the broker tells consumers at once when a member joins or leaves their group.
    /// The Rust broker 1.0 does not: members then re-split the queues only at the client's
    /// periodic rebalance (20 s), and the suite reports the prompt-rebalance case as
    /// unsupported instead of failing it.
    pub fn prompt_rebalance(mut self, notifies: bool) -> Self {
        self.prompt_rebalance = notifies;
        self
    }
}

#[async_trait]
impl ConformanceTarget for RocketTarget {
    fn name(&self) -> String {
        format!("rocketmq at {}", self.config.name_server())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            prompt_rebalance: self.prompt_rebalance,
            ..Capabilities::all()
        }
    }

    fn scale(&self) -> Scale {
        self.scale.clone()
    }

    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError> {
        let admin = RocketAdmin::connect(&self.config).await?;
        let created = admin.create_topic(topic).await;
        admin.close().await;
        Ok(created?)
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        Ok(Arc::new(
            RocketPublisher::connect(self.config.clone()).await?,
        ))
    }

    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(
            RocketSubscriber::connect(self.config.clone(), topic, group).await?,
        ))
    }

    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(
            RocketSubscriber::dead_letters(self.config.clone(), topic, group).await?,
        ))
    }
}
