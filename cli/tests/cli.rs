//! The `waybill` program against real servers: `waybill relay` (the sidecar) relaying,
//! killed, reading secrets from files and scraped by Prometheus; `waybill outbox` inspecting;
//! `waybill dlq` redriving broker dead letters (RabbitMQ, Kafka and RocketMQ); `waybill holds`
//! with key-holding dead letters; `waybill audit` reconciling a sent log with an inbox.

/// The program under test, built by cargo beside this test.
const WAYBILL: &str = env!("CARGO_BIN_EXE_waybill");

#[path = "audit_rabbitmq.rs"]
mod audit_rabbitmq;
#[path = "dlq_kafka.rs"]
mod dlq_kafka;
#[path = "dlq_rabbitmq.rs"]
mod dlq_rabbitmq;
#[path = "dlq_rabbitmq_listing.rs"]
mod dlq_rabbitmq_listing;
#[path = "dlq_replay_run.rs"]
mod dlq_replay_run;
#[path = "dlq_rocketmq.rs"]
mod dlq_rocketmq;
#[path = "../../tests/tests/support/free_port.rs"]
mod free_port;
#[path = "holds_rabbitmq.rs"]
mod holds_rabbitmq;
#[path = "outbox_commands.rs"]
mod outbox_commands;
#[path = "preflight_kafka.rs"]
mod preflight_kafka;
#[path = "preflight_rabbitmq.rs"]
mod preflight_rabbitmq;
#[path = "preflight_rocketmq.rs"]
mod preflight_rocketmq;
#[path = "../../tests/tests/support/rabbitmq_tls.rs"]
#[allow(dead_code)] // shared with the tests crate's TLS suite; this binary uses part of it
mod rabbitmq_tls;
#[path = "relay_kill.rs"]
mod relay_kill;
#[path = "relay_secrets.rs"]
mod relay_secrets;
#[path = "relay_sidecar.rs"]
mod relay_sidecar;
