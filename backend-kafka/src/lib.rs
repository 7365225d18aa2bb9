//! # waybill-kafka
//!
//! The Kafka backend of waybill over `rdkafka` (librdkafka 2.12, built from source).
//!
//! - [`KafkaPublisher`]: `acks=all` with the idempotent producer, Java-compatible key
//!   partitioning (murmur2), pipelined `publish_batch`, receipts with partition and offset,
//!   errors classified as not sent / ambiguous / permanent with the message handed back; a new
//!   producer replaces one that hit a fatal error, once the failed one drained.
//! - [`KafkaSubscriber`]: a consumer group member that stores an offset only up to the lowest
//!   contiguous completed offset per partition (automatic offset storing off), commits
//!   periodically, on revoke and on close, retries through a per-group retry topic with a
//!   not-before header and dead-letters to a per-group topic with the record headers. It is
//!   polled all the time (pausing a partition while 500 of its records wait for the reader),
//!   so a slow handler never gets it evicted from its group.
//! - [`TransactionalPublisher`]: Kafka transactions (begin, send, offsets, commit, abort) for
//!   consume-transform-produce, in addition to (never instead of) the idempotency store;
//!   never recreated once fenced.
//! - [`KafkaDeadLetters`]: a group's dead-letter topic for operators — list, replay (back to
//!   the group's retry topic, in per-key order, removed only once confirmed) and purge.
//! - [`create_topic`], [`ensure_group_topics`], [`delete_topics`], [`durability_preflight`].
//!
//! | verb | what it means on Kafka |
//! |---|---|
//! | confirmed publish | delivery report with `acks=all`, `enable.idempotence=true` |
//! | ack | offset stored once every lower offset of the partition is done; committed every `commit_interval`, on revoke and on close |
//! | retry later | confirmed copy to `<topic>.<group>.retry` with `waybill-not-before`, then ack |
//! | dead letter | confirmed copy to `<topic>.<group>.dlq` with the `waybill-dl-*` record, then ack |
//! | per-key order | murmur2 key partitioning + per-key serial handling in the Processor |
//!
//! Retry and dead-letter topics are per consumer group (not `<topic>.retry`), so one group's
//! retries never reach another group.

mod admin;
mod config;
#[cfg(feature = "testkit")]
mod conformance_target;
mod connect_probe;
mod dead_letter_topic;
mod error_class;
mod lag;
mod log_range;
mod names;
mod offsets;
mod partitioner;
mod poller;
mod producer_slot;
mod publisher;
mod security;
mod settler;
mod subscriber;
mod transactional;
mod url_config;
mod wire;

pub use admin::{
    create_topic, delete_topics, durability_preflight, ensure_group_topics, topic_layout,
    DurabilityReport, TopicLayout,
};
pub use config::{KafkaConfig, KafkaConfigBuilder};
#[cfg(feature = "testkit")]
pub use conformance_target::KafkaTarget;
pub use dead_letter_topic::{KafkaDeadLetters, MAX_SCAN as MAX_DEAD_LETTER_SCAN};
pub use names::{validate_topic, GroupTopics};
pub use partitioner::{java_partition, murmur2};
pub use publisher::KafkaPublisher;
pub use security::{KafkaTls, SaslLogin, SaslMechanism};
pub use subscriber::KafkaSubscriber;
pub use transactional::TransactionalPublisher;
