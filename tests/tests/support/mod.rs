//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod chaos;
pub mod inbox_cases;
pub mod kafka;
pub mod outbox_cases;
pub mod outbox_db;
pub mod postgres;
pub mod rabbitmq;
pub mod rocketmq;

use std::time::Duration;

use waybill_core::testkit::conformance::Scale;

/// The conformance scale for brokers on this machine whose topics are logs (Kafka, RocketMQ):
/// enough publishers, subscribers and topics to exercise rebalancing and per-key order, with
/// case timeouts that fit a 2-core machine.
pub fn log_broker_scale() -> Scale {
    Scale {
        messages: 100,
        publishers: 10,
        subscribers: 4,
        messages_per_publisher: 50,
        topics: 4,
        case_timeout: Duration::from_secs(120),
        quiet_period: Duration::from_secs(2),
        retry_delay: Duration::from_millis(500),
    }
}

/// A fresh topic name: `prefix`, a dash, and 12 hex digits of a new id (valid on every broker).
pub fn unique_topic(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    )
}

/// Runs the command in `kill_var` (default: `scripts/brokers kill <kill>`), then the one in
/// `start_var` (default: `scripts/brokers start <start>`); fails the test if either fails.
pub async fn kill_and_restart_with(kill_var: &str, kill: &str, start_var: &str, start: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/brokers");
    let kill = std::env::var(kill_var).unwrap_or_else(|_| format!("{script} kill {kill}"));
    let start = std::env::var(start_var).unwrap_or_else(|_| format!("{script} start {start}"));
    for command in [kill, start] {
        let status = tokio::process::Command::new("bash")
            .args(["-c", &command])
            .status()
            .await
            .expect("run the broker script");
        assert!(status.success(), "{command} failed");
    }
}
