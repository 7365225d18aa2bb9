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
//! - [`RabbitPartitionedSubscriber`]: a partitioned group: keys hash onto N quorum queues
//!   (routed on the key route [`RabbitPublisher`] gives each message, [`key_routing_key`]),
//!   each with a single active consumer, shared by the group's members, so several
//!   subscribers keep per-key order.
//!
//! Topology for topic `T` and group `G`: exchange `T` (fanout, durable); queue `T.G` (quorum);
//! quorum queues `T.G.retry.<ms>ms` (message TTL, at-least-once dead-letter to `T.G`); queue
//! `T.G.dlq` (quorum).
//!
//! Supported brokers: RabbitMQ 3.10 and later 3.x, and 4.x (quorum queues, at-least-once
//! dead-lettering). Every work queue is declared with an explicit delivery limit
//! ([`RabbitConfigBuilder::delivery_limit`], default [`DEFAULT_DELIVERY_LIMIT`]) and a
//! dead-letter route to its dead-letter queue, so both series behave alike: RabbitMQ 4.x's own
//! default limit of 20 would otherwise drop a message given back 20 times. A queue declared
//! by an earlier waybill version lacks these arguments, and RabbitMQ refuses to redeclare it
//! differently (`406 PRECONDITION_FAILED - inequivalent arg`, a permanent error naming the
//! argument): drain it and delete it (or move its messages with a shovel) before the upgrade;
//! see the README's broker notes.
//!
//! Messages from other producers: a delivery without a `waybill-id` header gets a stable id,
//! the same on every redelivery — its AMQP `message-id` (as it is when a UUID, else a UUID v5
//! of it), or a UUID v5 of its body, properties and producer headers. Two identical messages
//! without `message-id` therefore count as one: such producers should set `message-id`.
//!
//! Names: topics and groups follow RabbitMQ's rules, not the strictest broker's (see
//! [`validate_name`]): up to 255 bytes of UTF-8, dots allowed, no `amq.` prefix.
//!
//! Secure connections (feature `tls`): `amqps://` URLs over rustls, trusting the webpki roots
//! plus the CA bundle of [`RabbitConfigBuilder::tls_ca_file`], with a client certificate for
//! mutual TLS from [`RabbitConfigBuilder::tls_client_identity`], verifying the broker's
//! certificate for [`RabbitConfigBuilder::tls_server_name`] when it does not list the URL's
//! host. A certificate that fails
//! verification is a permanent connect error that says which check failed. Passwords in URLs
//! are masked in every error, log and `Debug` output ([`RabbitConfig::display_url`]).
//!
//! Capabilities: every conformance capability holds. Retry delays are rounded up to the next
//! configured tier (default tiers 250 ms, 1 s, 5 s, 30 s, 2 min, 10 min). Per-key order holds
//! for any number of members of a partitioned group ([`RabbitPartitionedSubscriber`]), and
//! for one subscriber per plain group (RabbitMQ delivers a queue in order to one consumer; competing
//! consumers of one queue share keys: a subscriber that finds others on its queue logs a
//! warning, and [`RabbitSubscriber::competing_consumers`] says how many it saw), also across a
//! lost connection or a broker restart: a reconnecting subscriber waits until the broker has dropped its previous consumer and given
//! back what that consumer held (see [`RabbitConfigBuilder::stale_consumer_wait`]).

mod admin;
mod closing;
mod config;
mod confirm_channel;
#[cfg(feature = "testkit")]
mod conformance_target;
mod connect;
mod dead_letter_queue;
mod error_class;
mod foreign_id;
mod handover;
mod key_route;
mod lag;
#[cfg(feature = "management")]
mod management_api;
#[cfg(all(feature = "management", feature = "tls"))]
mod management_tls;
mod name_rules;
mod partitioned;
#[cfg(feature = "management")]
mod preflight;
mod publisher;
mod queue_snapshot;
mod removals;
mod settler;
mod subscriber;
mod tls;
mod tls_failure;
#[cfg(feature = "tls")]
mod tls_server_name;
mod topology;
mod topology_names;
mod wire;

pub use admin::{delete_group_topology, delete_partitioned_group_topology, delete_topic};
pub use config::{RabbitConfig, RabbitConfigBuilder, DEFAULT_DELIVERY_LIMIT};
#[cfg(feature = "testkit")]
pub use conformance_target::RabbitTarget;
pub use dead_letter_queue::RabbitDeadLetters;
pub use key_route::{key_routing_key, KEY_BITS};
#[cfg(feature = "management")]
pub use management_api::ManagementApi;
pub use name_rules::{validate_name, MAX_NAME_BYTES};
pub use partitioned::{RabbitPartitionedSubscriber, MAX_PARTITIONS};
#[cfg(feature = "management")]
pub use preflight::rabbitmq_preflight;
pub use publisher::RabbitPublisher;
pub use subscriber::RabbitSubscriber;
pub use topology_names::QueueNames;
