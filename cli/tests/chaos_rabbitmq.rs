//! The RabbitMQ chaos scenario: see [`super::chaos_support::CiScenario`]. The group's queue has
//! a single active consumer: competing consumers of one RabbitMQ queue share keys, which this
//! scenario shows breaks per-key order (see the README).

use super::chaos_support::{
    assert_passed_with_every_fault, brokers_script, run_named, BrokerService, CiScenario, RABBITMQ,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_keeps_the_guarantee_through_twelve_faults() {
    let _rabbitmq = RABBITMQ.lock().await;
    let broker = BrokerService::RABBITMQ;
    let scenario = CiScenario::new(&broker, "single_active_consumer = true", 250);
    let (dir, output) = run_named("rabbitmq", scenario.text.clone()).await;
    // Whatever the verdict, leave RabbitMQ healthy for the suites after this one (`start` on
    // a running node heals what a kill can leave broken, see scripts/brokers).
    let healed = std::process::Command::new(brokers_script())
        .args(["start", "rabbitmq"])
        .status()
        .expect("run scripts/brokers");
    assert!(healed.success(), "scripts/brokers start rabbitmq failed");
    assert_passed_with_every_fault(&dir, &output, "rabbitmq");
    drop(scenario);
}
