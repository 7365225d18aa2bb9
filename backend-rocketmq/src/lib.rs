//! # waybill-rocketmq
//!
//! The RocketMQ backend of waybill over `rocketmq-client-rust` 1.0.
//!
//! - [`RocketPublisher`]: synchronous sends where only `SEND_OK` counts (other statuses are
//!   *ambiguous* errors unless [`AcceptedStatuses`] says otherwise), keyed messages on the
//!   queue of the Java client's `SelectMessageQueueByHash`, batches per queue, receipts with
//!   message id, queue and queue offset, errors classified with the message handed back.
//! - [`RocketSubscriber`]: a lite pull consumer with automatic commit off; the SDK commits a
//!   queue's offset only up to the lowest offset still in flight, retries through a per-group
//!   retry topic with a not-before header and dead-letters to a per-group topic carrying the
//!   record headers.
//! - [`RocketTransactionalProducer`]: half message, local transaction, commit or rollback, and
//!   a check-back answered from the application's database ([`TransactionCheck`]): an
//!   alternative to the outbox.
//! - [`RocketAdmin`]: topics and consumer groups, created explicitly.
//! - [`RocketDeadLetters`]: a group's dead-letter topic for operators — list, replay (in key
//!   order, removed only once the copy is confirmed), purge.
//! - [`rocketmq_preflight`]: what the brokers carrying a topic do to a confirmed message
//!   (flush mode, broker role, slaves, topic permission, topic auto-creation).
//!
//! | verb | what it means on RocketMQ |
//! |---|---|
//! | confirmed publish | synchronous send answered `SEND_OK` (internal client resends off) |
//! | ack | offset committed once every lower offset of the queue is done; persisted to the broker every 5 s, on rebalance and on close |
//! | retry later | confirmed copy to `<topic>_<group>_RETRY` with `waybill-not-before`, then ack |
//! | dead letter | confirmed copy to `<topic>_<group>_DLQ` with the `waybill-dl-*` record, then ack |
//! | per-key order | key → queue by Java `String.hashCode` + per-key serial handling in the Processor |
//!
//! ## Capabilities
//!
//! | capability | supported | how |
//! |---|---|---|
//! | delayed retry | yes | SDK retry topic; the subscriber holds copies until due |
//! | dead letter | yes | SDK dead-letter topic with the record headers |
//! | redelivery | yes | uncommitted offsets are read again by the group |
//! | per-key order | yes | one queue per key, read in order |
//! | independent groups | yes | clustering consumer groups |
//! | competing consumers | yes | queues rebalanced across a group's members |
//! | ACL credentials | yes | [`RocketConfigBuilder::acl`]: every request is signed (access key plus an HMAC under the secret key, the Java client's `AclClientRPCHook`); the secret key is never sent, logged or shown in `Debug` |
//! | TLS | yes | [`RocketConfigBuilder::tls`] with [`RocketTls`]: rustls to name servers and brokers, a CA file or the system's roots, client certificates; the server's certificate is verified unless turned off |
//! | prompt rebalance | with an Apache broker | the broker tells the members when one joins; the Rust broker 1.0 does not, so the members re-split only at the client's periodic rebalance (every 20 s, `rocketmq.client.rebalance.waitInterval`), and until then a member that joined reads queues another member reads too: duplicates the idempotency store absorbs, and per-key order across members is not held |
//!
//! Names follow RocketMQ's rules (see [`validate_topic`], [`validate_group`]): ASCII letters,
//! digits, `%`, `|`, `_` and `-` (no dots), topics up to 127 bytes, groups up to 120.
//!
//! A topic without a route is not a missing topic: while a broker restarts or is cut off from
//! the name server, the name server drops its routes and the client reports "Can not find
//! Message Queue for this topic". Publishes then fail as *not sent*, and
//! [`RocketSubscriber::connect`] waits for the route
//! ([`RocketConfigBuilder::route_wait`]); only a name server that knows brokers and has no
//! route for a topic the publisher never saw routed, while the cluster has routed without
//! trouble for `route_wait`, makes it *no destination* ("does not exist").
//!
//! RocketMQ's own `%RETRY%<group>` / `%DLQ%<group>` path is not used: the broker keeps the
//! attempt count, the dead letter cannot carry the `waybill-dl-*` record, and an orderly push
//! consumer on it retries forever. waybill's attempt cap (the Processor's retry policy)
//! applies on RocketMQ as on every broker.

#![recursion_limit = "256"]

mod admin;
mod config;
#[cfg(feature = "testkit")]
mod conformance_target;
mod dead_letter_topic;
mod error_class;
mod lag;
mod name_server_probe;
mod names;
mod preflight;
mod publisher;
mod queue_range;
mod queue_select;
mod queue_tracker;
mod route_state;
mod runtime;
mod security;
mod subscriber;
mod transactional;
mod url_config;
mod wire;

pub use admin::RocketAdmin;
pub use config::{AcceptedStatuses, RocketConfig, RocketConfigBuilder, StartFrom};
#[cfg(feature = "testkit")]
pub use conformance_target::RocketTarget;
pub use dead_letter_topic::{RocketDeadLetters, MAX_SCAN as MAX_DEAD_LETTER_SCAN};
pub use names::{validate_group, validate_topic, GroupTopics, InvalidName};
pub use preflight::rocketmq_preflight;
pub use publisher::RocketPublisher;
pub use queue_select::{java_string_hash, queue_for_key};
pub use runtime::RocketFuture;
pub use security::{RocketAcl, RocketTls};
pub use subscriber::RocketSubscriber;
pub use transactional::{
    RocketTransactionalProducer, TransactionCheck, TransactionOutcome, TransactionState,
    TransactionalError,
};
