//! # waybill-rabbitmq
//!
//! The RabbitMQ backend of waybill over `lapin`.
//!
//! - [`RabbitPublisher`]: persistent messages, publisher confirms, `mandatory` routing with
//!   `basic.return` reported as a permanent "unroutable" error, pipelined `publish_batch`, a
//!   small pool of confirm channels, reconnection on the next publish after a lost connection.
//! - [`RabbitSubscriber`]: a durable quorum queue per consumer group bound to the topic's fanout
//!   exchange, manual acknowledgement with prefetch, retries through TTL tier queues that
//!   dead-letter back to the work queue, a dead-letter queue carrying the waybill record, and
//!   resubscription after a lost connection or a broker-side cancel.
//!
//! Topology for topic `T` and group `G`: exchange `T` (fanout, durable); queue `T.G` (quorum);
//! quorum queues `T.G.retry.<ms>ms` (message TTL, at-least-once dead-letter to `T.G`); queue
//! `T.G.dlq` (quorum).
//!
//! Capabilities: every conformance capability holds. Retry delays are rounded up to the next
//! configured tier (default tiers 250 ms, 1 s, 5 s, 30 s, 2 min, 10 min). Per-key order holds
//! for one subscriber per group (RabbitMQ delivers a queue in order to one consumer; competing
//! consumers of one queue share keys), also across a lost connection or a broker restart: a
//! reconnecting subscriber waits until the broker has dropped its previous consumer and given
//! back what that consumer held (see [`RabbitConfigBuilder::stale_consumer_wait`]).

mod admin;
mod closing;
mod config;
mod confirm_channel;
mod connect;
mod error_class;
mod handover;
mod publisher;
mod settler;
mod subscriber;
mod topology;
mod topology_names;
mod wire;

pub use admin::{delete_group_topology, delete_topic};
pub use config::{RabbitConfig, RabbitConfigBuilder};
pub use publisher::RabbitPublisher;
pub use subscriber::RabbitSubscriber;
pub use topology_names::QueueNames;
