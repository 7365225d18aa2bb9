//! # waybill-core
//!
//! The contract and runtime of waybill: message delivery over existing brokers that loses
//! nothing, duplicates no effect and keeps per-key order.
//!
//! **Guarantee: at-least-once delivery + idempotent handling = exactly-once effect**, with
//! per-key order under [`Ordering::PerKey`].
//!
//! - Producer side: a [`Publisher`] returns only once the broker confirmed durability; a
//!   failure hands the message back, classified ([`PublishOutcome`]).
//! - Consumer side: a [`Subscriber`] yields [`Delivery`] values that are settled exactly once
//!   (ack, retry, dead letter). The [`Processor`] owns settlement: it claims each message in an
//!   [`IdempotencyStore`], runs the [`Handler`], classifies the result and acks, retries
//!   ([`RetryPolicy`]) or dead-letters with a [`DeadLetterRecord`].
//! - [`MemoryBroker`] implements both sides in memory with fault injection, for tests and demos.
//! - Typed payloads: [`Message::json`], [`Message::decode`] and [`typed_handler`] through a
//!   [`codec::Codec`] (serde JSON by default, Protocol Buffers with feature `protobuf`); a
//!   payload that cannot be decoded is dead-lettered, never dropped.
//! - Feature `testkit`: the conformance suite every backend runs (`testkit::conformance`).
//!
//! This crate depends on no broker or database client; backends live in `waybill-kafka`,
//! `waybill-rabbitmq`, `waybill-rocketmq`, and the SQL outbox and stores in `waybill-outbox`.

mod batch_handler;
mod broker_error;
mod capabilities;
mod config_error;
mod dead_letter;
mod delivery;
mod failed_keys;
mod handler;
mod headers;
mod health;
mod idempotency;
mod incoming;
mod key_holds;
mod lag;
mod memory_broker;
mod memory_idempotency;
mod memory_key_holds;
mod message;
mod message_id;
mod processor;
mod publish_error;
mod publisher;
mod receipt;
mod redelivery_horizon;
mod retry_policy;
mod settlement;
mod subscriber;
mod trace_context;
mod typed_handler;
mod typed_message;

pub mod backend_kit;
pub mod broker_url;
pub mod codec;
pub mod header_names;
pub mod preflight;
pub mod redrive;
pub mod secret;
pub mod spans;
pub mod telemetry;
pub mod tls_files;
pub mod wire_time;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use batch_handler::{batch_handler_fn, BatchFailures, BatchHandler, BatchHandlerFn};
pub use broker_error::{BrokerError, FailureClass};
pub use capabilities::Capabilities;
pub use config_error::{validate_name, ConfigError};
pub use dead_letter::{DeadLetterRecord, ErrorClass, RecordError, MAX_ERROR_MESSAGE_BYTES};
pub use delivery::{Delivery, Settle};
pub use failed_keys::FailedKeys;
pub use handler::{handler_fn, BoxError, Handler, HandlerError, HandlerFn};
pub use headers::Headers;
pub use health::{Health, HealthState, Outage};
pub use idempotency::{
    Claim, ClaimToken, Completion, FirstCopies, HeldClaim, IdempotencyStore, StoreError,
    StoreErrorKind,
};
pub use incoming::{IncomingMessage, Origin};
pub use key_holds::{DeadLetterMode, KeyHold, KeyHoldStore};
pub use lag::{ConsumerLag, LagProbe, PartitionLag};
pub use memory_broker::{
    AckContext, AckFault, DeliveryContext, DeliveryFault, FaultInjector, MemoryBroker,
    MemoryBrokerBuilder, MemoryPublisher, MemorySubscriber, PublishContext, PublishFault,
};
pub use memory_idempotency::InMemoryIdempotencyStore;
pub use memory_key_holds::InMemoryKeyHolds;
pub use message::{Message, WireError};
pub use message_id::{InvalidMessageId, MessageId};
pub use processor::{
    CountersSnapshot, Ordering, Processor, ProcessorBuilder, ProcessorConfig, ProcessorError,
    RunningProcessor,
};
pub use publish_error::{PublishError, PublishOutcome};
pub use publisher::Publisher;
pub use receipt::{BrokerPosition, Receipt};
pub use redelivery_horizon::{DedupeWindowCheck, RedeliveryHorizon};
pub use retry_policy::{RetryDecision, RetryPolicy, RetryPolicyBuilder};
pub use settlement::{RetryRequest, Settlement};
pub use subscriber::Subscriber;
pub use trace_context::TraceParent;
#[cfg(feature = "json")]
pub use typed_handler::typed_handler;
pub use typed_handler::{typed_handler_with, TypedHandler};
