//! The RocketMQ chaos scenario: see [`super::chaos_support::CiScenario`]. The broker (not the
//! name server) is the one killed and started again.

use super::chaos_support::{
    assert_passed_with_every_fault, run_named, BrokerService, CiScenario, ROCKETMQ,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_keeps_the_guarantee_through_twelve_faults() {
    let _rocketmq = ROCKETMQ.lock().await;
    let broker = BrokerService::ROCKETMQ;
    let scenario = CiScenario::new(&broker, "partitions = 4", 250);
    let (dir, output) = run_named("rocketmq", scenario.text.clone()).await;
    assert_passed_with_every_fault(&dir, &output, "rocketmq");
    drop(scenario);
}
