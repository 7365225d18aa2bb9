//! `waybill chaos` against real servers: a RabbitMQ, a Kafka and a RocketMQ scenario
//! (PostgreSQL outbox, two relays, two consumers with the SQL inbox, 20,000 messages, 12
//! faults mixing broker kills, relay and consumer SIGKILLs, PostgreSQL immediate restarts and
//! connection cuts through the fault proxy) must pass, and so must a direct-publishing
//! scenario per broker (broker kills, consumer kills; `chaos_direct`); a consumer and a relay
//! broken on purpose must fail; bad scenarios are refused before anything is sent.
//!
//! A test binary of its own: its faults kill shared brokers, which the `cli` binary's tests
//! must not see. Within it, the tests that use RabbitMQ take [`chaos_support::RABBITMQ`] in
//! turn, those that kill Kafka or RocketMQ take [`chaos_support::KAFKA`] or
//! [`chaos_support::ROCKETMQ`]; tests on different brokers run beside each other.

/// The program under test, built by cargo beside this test.
const WAYBILL: &str = env!("CARGO_BIN_EXE_waybill");

#[path = "chaos_bad_input.rs"]
mod chaos_bad_input;
#[path = "chaos_broken_roles.rs"]
mod chaos_broken_roles;
#[path = "chaos_direct.rs"]
mod chaos_direct;
#[path = "chaos_kafka.rs"]
mod chaos_kafka;
#[path = "chaos_rabbitmq.rs"]
mod chaos_rabbitmq;
#[path = "chaos_rocketmq.rs"]
mod chaos_rocketmq;
#[path = "chaos_support.rs"]
mod chaos_support;
#[path = "../../tests/tests/support/private_postgres.rs"]
#[allow(dead_code)]
mod private_postgres;
