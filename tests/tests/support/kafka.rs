//! Finding the Kafka-protocol broker the tests use, and the conformance target over it.

use std::time::Duration;

use waybill_kafka::{create_topic, KafkaConfig, KafkaPublisher, KafkaTarget};

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

/// The conformance target over the test broker: [`PARTITIONS`] partitions, the log-broker
/// scale. Its topics are left behind: deleting topics on tansu 0.6 disturbs the metadata live
/// clients see (librdkafka crashed on it in a run with concurrent clients).
pub fn target() -> KafkaTarget {
    KafkaTarget::new(config())
        .partitions(PARTITIONS)
        .scale(super::log_broker_scale())
}

/// SIGKILLs the local broker (`scripts/brokers kill kafka`), leaves it down for `down`, and
/// starts it again; returns its process ids before and after. Against a cluster of your own,
/// set WAYBILL_KAFKA_KILL and WAYBILL_KAFKA_START to commands that do the same (and
/// WAYBILL_KAFKA_PID to one that prints the broker's process id).
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
