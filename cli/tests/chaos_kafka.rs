//! The Kafka chaos scenario: see [`super::chaos_support::CiScenario`]. The Kafka-protocol
//! broker is killed and started again; its clients reach it directly (they connect to the
//! advertised listener, not through a proxy in front of the bootstrap address).

use super::chaos_support::{
    assert_passed_with_every_fault, run_named, BrokerService, CiScenario, KAFKA,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_keeps_the_guarantee_through_twelve_faults() {
    let _kafka = KAFKA.lock().await;
    let broker = BrokerService::KAFKA;
    let scenario = CiScenario::new(&broker, "partitions = 4", 250);
    let (dir, output) = run_named("kafka", scenario.text.clone()).await;
    assert_passed_with_every_fault(&dir, &output, "kafka");
    drop(scenario);
}
