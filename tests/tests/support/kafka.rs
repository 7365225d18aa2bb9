//! Finding the Kafka-protocol broker the tests use, and the conformance target over it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use waybill_core::testkit::conformance::{ConformanceTarget, Scale};
use waybill_core::{BoxError, Capabilities, Publisher, Subscriber};
use waybill_kafka::{create_topic, KafkaConfig, KafkaPublisher, KafkaSubscriber};

/// Partitions of every test topic: more than one, so that consumers can share a group.
pub const PARTITIONS: i32 = 4;

/// The bootstrap servers: `WAYBILL_KAFKA_BROKERS`, or the local default.
pub fn brokers() -> String {
    std::env::var("WAYBILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A config for tests: a short session timeout (the first group join otherwise waits long)
/// and a short wait for topic metadata.
pub fn config() -> KafkaConfig {
    KafkaConfig::builder(brokers())
        .session_timeout(Duration::from_secs(6))
        .commit_interval(Duration::from_millis(200))
        .property("topic.metadata.propagation.max.ms", "3000")
        .build()
        .expect("valid test config")
}

/// Fails the test with a clear message when no broker answers.
pub async fn require_broker() {
    if let Err(e) = KafkaPublisher::connect(config()).await {
        panic!(
            "No Kafka-protocol broker is reachable at {} ({e}). Start one with \
             `scripts/brokers start kafka` or point WAYBILL_KAFKA_BROKERS at a running cluster.",
            brokers()
        );
    }
}

/// A fresh topic name.
pub fn topic(prefix: &str) -> String {
    super::unique_topic(prefix)
}

/// The conformance target. Its topics are left behind: deleting topics on tansu 0.6 disturbs
/// the metadata live clients see (librdkafka crashed on it in a run with concurrent clients).
#[derive(Default)]
pub struct KafkaTarget;

#[async_trait]
impl ConformanceTarget for KafkaTarget {
    fn name(&self) -> String {
        format!("kafka protocol at {}", brokers())
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::all()
    }

    fn scale(&self) -> Scale {
        super::log_broker_scale()
    }

    async fn prepare_topic(&self, topic: &str) -> Result<(), BoxError> {
        create_topic(&config(), topic, PARTITIONS, 1).await?;
        Ok(())
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BoxError> {
        Ok(Arc::new(KafkaPublisher::connect(config()).await?))
    }

    async fn subscriber(&self, topic: &str, group: &str) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(
            KafkaSubscriber::connect(config(), topic, group).await?,
        ))
    }

    async fn dead_letter_subscriber(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn Subscriber>, BoxError> {
        Ok(Box::new(
            KafkaSubscriber::dead_letters(config(), topic, group).await?,
        ))
    }
}

/// SIGKILLs the local broker and starts it again (`scripts/brokers kill kafka`, then `start`);
/// returns its process ids before and after. Against a cluster of your own, set
/// WAYBILL_KAFKA_KILL and WAYBILL_KAFKA_START to commands that do the same (and
/// WAYBILL_KAFKA_PID to one that prints the broker's process id).
pub async fn kill_and_restart() -> super::fault::Restart {
    super::kill_and_restart_with("WAYBILL_KAFKA", "kafka", "kafka").await
}

/// As [`kill_and_restart`], with the broker left down for `down` before the start.
pub async fn kill_and_restart_after(down: Duration) -> super::fault::Restart {
    super::kill_and_restart_after("WAYBILL_KAFKA", "kafka", "kafka", down).await
}

/// Creates a fresh topic with [`PARTITIONS`] partitions and returns its name.
pub async fn create_topic_for_test(prefix: &str) -> String {
    require_broker().await;
    let name = topic(prefix);
    create_topic(&config(), &name, PARTITIONS, 1)
        .await
        .expect("create the test topic");
    name
}
