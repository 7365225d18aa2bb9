//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod batch_inbox;
pub mod captured_log;
pub mod destination_wait;
pub mod effects;
pub mod failing_handlers;
pub mod fault;
pub mod inbox_cases;
pub mod kafka;
pub mod outbox_cases;
pub mod outbox_db;
pub mod outbox_pipeline;
pub mod postgres;
pub mod postgres_tls;
pub mod private_postgres;
pub mod rabbitmq;
pub mod rabbitmq_tls;
pub mod rebalance;
pub mod redis;
pub mod rocketmq;
pub mod tcp_recorder;
pub mod test_certificates;
pub mod tls_terminator;
pub mod workload;

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

/// Kills a local server with SIGKILL and starts it again, and returns the proof: runs the
/// command in `{env}_KILL` (default `scripts/brokers kill <kill>`, which fails when there is
/// nothing to kill), then the one in `{env}_START` (default `scripts/brokers start <start>`);
/// fails the test if either fails. The server's process id before and after comes from the
/// command in `{env}_PID` (default `scripts/brokers pid <kill>`); it is not known when
/// `{env}_KILL` is set and `{env}_PID` is not.
pub async fn kill_and_restart_with(env: &str, kill: &str, start: &str) -> fault::Restart {
    kill_and_restart_after(env, kill, start, Duration::ZERO).await
}

/// As [`kill_and_restart_with`], with the server left down for `down` between the kill and
/// the start: an outage long enough for the clients to notice (a Kafka client rides out a
/// restart of a few hundred milliseconds without an error).
pub async fn kill_and_restart_after(
    env: &str,
    kill: &str,
    start: &str,
    down: Duration,
) -> fault::Restart {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/brokers");
    let var = |suffix: &str| std::env::var(format!("{env}_{suffix}")).ok();
    let pid_command = match (var("PID"), var("KILL")) {
        (Some(command), _) => Some(command),
        (None, Some(_)) => None,
        (None, None) => Some(format!("{script} pid {kill}")),
    };
    let before = match &pid_command {
        Some(command) => Some(fault::pid_from(command).await),
        None => None,
    };
    let kill_command = var("KILL").unwrap_or_else(|| format!("{script} kill {kill}"));
    let start_command = var("START").unwrap_or_else(|| format!("{script} start {start}"));
    eprintln!("SIGKILL to {kill}: {kill_command}");
    fault::run_checked(&kill_command).await;
    tokio::time::sleep(down).await;
    fault::run_checked(&start_command).await;
    let pids = match (&pid_command, before) {
        (Some(command), Some(before)) => Some((before, fault::pid_from(command).await)),
        _ => None,
    };
    fault::Restart {
        fault: format!("SIGKILL and start of {kill}"),
        pids,
    }
}
