//! Finding the RocketMQ name server and broker the tests use, and the conformance target.

use std::time::Duration;

use waybill_rocketmq::{RocketAdmin, RocketConfig, RocketTarget};

/// Queues of every test topic: more than one, so that consumers can share a group.
pub const QUEUES: u32 = 4;

/// The name servers: `WAYBILL_ROCKETMQ_NAMESRV`, or the local default.
pub fn name_server() -> String {
    std::env::var("WAYBILL_ROCKETMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_owned())
}

/// A config for tests: short polls, test topics with [`QUEUES`] queues.
pub fn config() -> RocketConfig {
    RocketConfig::builder(name_server())
        .queues_per_topic(QUEUES)
        .poll_timeout(Duration::from_millis(200))
        .build()
        .expect("valid test config")
}

/// Fails the test with a clear message when no name server with a broker answers.
pub async fn require_broker() -> RocketAdmin {
    let how =
        "Start them with `scripts/brokers start rocketmq` or point WAYBILL_ROCKETMQ_NAMESRV at \
               a running cluster.";
    let admin = match RocketAdmin::connect(&config()).await {
        Ok(admin) => admin,
        Err(e) => panic!("No RocketMQ name server at {} ({e}). {how}", name_server()),
    };
    if let Err(e) = admin.topic_queues("waybill_probe").await {
        panic!(
            "The RocketMQ name server at {} does not answer ({e}). {how}",
            name_server()
        );
    }
    if let Err(e) = admin.create_group("waybill_probe").await {
        panic!(
            "No RocketMQ broker is registered at {} ({e}). {how}",
            name_server()
        );
    }
    admin
}

/// A fresh topic name (RocketMQ names allow letters, digits, `_`, `-`, `%` and `|`).
pub fn topic(prefix: &str) -> String {
    super::unique_topic(prefix)
}

/// Creates a fresh topic with [`QUEUES`] queues and returns its name.
pub async fn create_topic_for_test(prefix: &str) -> String {
    let admin = require_broker().await;
    let name = topic(prefix);
    admin
        .create_topic(&name)
        .await
        .expect("create the test topic");
    admin.close().await;
    name
}

/// SIGKILLs the local broker (not the name server) and starts it again; returns its process
/// ids before and after. Against a cluster of your own, set WAYBILL_ROCKETMQ_KILL and
/// WAYBILL_ROCKETMQ_START to commands that do the same (and WAYBILL_ROCKETMQ_PID to one that
/// prints the broker's process id).
pub async fn kill_and_restart_broker() -> super::fault::Restart {
    super::kill_and_restart_with("WAYBILL_ROCKETMQ", "rocketmq-broker", "rocketmq").await
}

/// The conformance target over the test cluster, with the log-broker scale. The Rust broker
/// 1.0 sends no consumer-group-change notice; an Apache RocketMQ broker does: set
/// WAYBILL_ROCKETMQ_NOTIFIES_REBALANCE=1 when testing against one.
pub fn target() -> RocketTarget {
    RocketTarget::new(config())
        .scale(super::log_broker_scale())
        .prompt_rebalance(std::env::var_os("WAYBILL_ROCKETMQ_NOTIFIES_REBALANCE").is_some())
}

/// SIGKILLs the local name server (not the broker) and starts it again; returns its process
/// ids before and after. The new name server knows no broker and no route until the broker
/// registers again (every 30 s), so every client asking it for a route in that window gets
/// none. Against a cluster of your own, set WAYBILL_ROCKETMQ_NAMESRV_KILL,
/// WAYBILL_ROCKETMQ_NAMESRV_START (and WAYBILL_ROCKETMQ_NAMESRV_PID).
pub async fn kill_and_restart_name_server() -> super::fault::Restart {
    super::kill_and_restart_with("WAYBILL_ROCKETMQ_NAMESRV", "rocketmq-namesrv", "rocketmq").await
}
