//! The broker conformance suite's target over a RabbitMQ server (feature `testkit`): run
//! `waybill_core::testkit::conformance::run(&target)` with a [`RabbitTarget`] in your own
//! tests, against your own server or a container, then [`RabbitTarget::cleanup`].

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use waybill_core::testkit::conformance::{ConformanceTarget, Scale};
use waybill_core::{BoxError, Capabilities, Publisher, Subscriber};

use crate::admin::{delete_group_topology, delete_topic};
use crate::config::RabbitConfig;
use crate::publisher::RabbitPublisher;
use crate::subscriber::RabbitSubscriber;

/// Runs the conformance suite on the server `config` points at, and remembers every exchange
/// and group it declared so that [`RabbitTarget::cleanup`] can delete them.
pub struct RabbitTarget {
    config: RabbitConfig,
    scale: Scale,
    created: Mutex<Vec<(String, String)>>,
    topics: Mutex<Vec<String>>,
}

impl RabbitTarget {
    /// A target over `config`'s server with the suite's default scale.
    pub fn new(config: RabbitConfig) -> Self {
        Self {
            config,
            scale: Scale::default(),
            created: Mutex::default(),
            topics: Mutex::default(),
        }
    }

    /// How large the suite's cases are.
    pub fn scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }

    /// Deletes the queues and exchanges the run declared. Failures are printed to stderr and
    /// the rest is still deleted (cleanup must not hide the suite's verdict).
    pub async fn cleanup(&self) {
        let created: Vec<_> = self
            .created
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        for (topic, group) in created {
            if let Err(e) = delete_group_topology(&self.config, &topic, &group, true).await {
                eprintln!("cleanup of {topic}/{group} failed: {e}");
            }
        }
        let topics: Vec<_> = self
            .topics
            .lock()
            .expect("not poisoned")
            .drain(..)
            .collect();
        for topic in topics {
            if let Err(e) = delete_topic(&self.config, &topic).await {
                eprintln!("cleanup of {topic} failed: {e}");
            }
        }
    }
}

#[async_trait]
impl ConformanceTarget for RabbitTarget {
    fn name(&self) -> String {
        format!("rabbitmq at {}", self.config.display_url())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    fn scale(&self) -> Scale {
        self.scale.clone()
    }

    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError> {
        self.topics
            .lock()
            .expect("not poisoned")
            .push(topic.to_owned());
        let publisher = RabbitPublisher::connect(self.config.clone()).await?;
        publisher.declare_topic(topic).await?;
        publisher.close().await?;
        Ok(())
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        Ok(Arc::new(
            RabbitPublisher::connect(self.config.clone()).await?,
        ))
    }

    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError> {
        self.created
            .lock()
            .expect("not poisoned")
            .push((topic.to_owned(), group.to_owned()));
        Ok(Box::new(
            RabbitSubscriber::connect(self.config.clone(), topic, group).await?,
        ))
    }

    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(
            RabbitSubscriber::dead_letters(self.config.clone(), topic, group).await?,
        ))
    }
}
