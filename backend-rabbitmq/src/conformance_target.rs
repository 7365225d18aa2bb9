//! The broker conformance suite's target over a RabbitMQ server (feature `testkit`): run
//! `waybill_core::testkit::conformance::run(&target)` with a [`RabbitTarget`] in your own
//! tests, against your own server or a container, then [`RabbitTarget::cleanup`].
//! [`RabbitTarget::partitioned`] runs the same suite over partitioned groups.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use waybill_core::testkit::conformance::{ConformanceTarget, Scale};
use waybill_core::{BoxError, Capabilities, Publisher, Subscriber};

use crate::admin::{delete_group_topology, delete_partitioned_group_topology, delete_topic};
use crate::config::RabbitConfig;
use crate::partitioned::RabbitPartitionedSubscriber;
use crate::publisher::RabbitPublisher;
use crate::subscriber::RabbitSubscriber;

/// Runs the conformance suite on the server `config` points at, and remembers every exchange
/// and group it declared so that [`RabbitTarget::cleanup`] can delete them.
pub struct RabbitTarget {
    config: RabbitConfig,
    scale: Scale,
    partitions: Option<u16>,
    created: Mutex<Vec<(String, String)>>,
    topics: Mutex<Vec<String>>,
}

impl RabbitTarget {
    /// A target over `config`'s server with the suite's default scale.
    pub fn new(config: RabbitConfig) -> Self {
        Self {
            config,
            scale: Scale::default(),
            partitions: None,
            created: Mutex::default(),
            topics: Mutex::default(),
        }
    }

    /// How large the suite's cases are.
    pub fn scale(mut self, scale: Scale) -> Self {
        self.scale = scale;
        self
    }

    /// Subscribes every group as a partitioned group of `partitions` partitions
    /// ([`RabbitPartitionedSubscriber`]) instead of a plain work queue. Invalid counts fail
    /// each case that subscribes, with the subscriber's error.
    pub fn partitioned(mut self, partitions: u16) -> Self {
        self.partitions = Some(partitions);
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
            let deleted = match self.partitions {
                Some(n) => {
                    delete_partitioned_group_topology(&self.config, &topic, &group, n, true).await
                }
                None => delete_group_topology(&self.config, &topic, &group, true).await,
            };
            if let Err(e) = deleted {
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
        match self.partitions {
            Some(n) => format!(
                "rabbitmq ({n} partitions per group) at {}",
                self.config.display_url()
            ),
            None => format!("rabbitmq at {}", self.config.display_url()),
        }
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
        let config = self.config.clone();
        Ok(match self.partitions {
            Some(n) => {
                Box::new(RabbitPartitionedSubscriber::connect(config, topic, group, n).await?)
            }
            None => Box::new(RabbitSubscriber::connect(config, topic, group).await?),
        })
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
