//! Header names used by the SDK, defined once.
//!
//! Every SDK header carries the `waybill-` prefix, except the W3C trace-context headers, whose
//! names the W3C standard fixes so that other tools can read them.

/// Prefix shared by every SDK-owned header.
pub const RESERVED_PREFIX: &str = "waybill-";

/// The message id (UUIDv7 text) on the wire.
pub const MESSAGE_ID: &str = "waybill-id";
/// Creation time of the message, Unix milliseconds.
pub const CREATED_AT: &str = "waybill-created-at";
/// The ordering key, for brokers without a native key field.
pub const KEY: &str = "waybill-key";
/// 1-based handling attempt this copy of the message is on; shared across consumer instances.
pub const ATTEMPT: &str = "waybill-attempt";
/// Time of the first failed handling attempt, Unix milliseconds.
pub const FIRST_FAILURE_AT: &str = "waybill-first-failure-at";
/// Earliest time a retried copy may be handled, Unix milliseconds (broker-side retry topics).
pub const NOT_BEFORE: &str = "waybill-not-before";

/// W3C trace context: `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// W3C trace context: `tracestate`.
pub const TRACESTATE: &str = "tracestate";
/// W3C baggage (written by a baggage propagator the application installed).
pub const BAGGAGE: &str = "baggage";

/// Dead-letter record: topic or queue the message was consumed from.
pub const DL_ORIGIN: &str = "waybill-dl-origin";
/// Dead-letter record: partition (Kafka) or queue id (RocketMQ), when the broker has one.
pub const DL_PARTITION: &str = "waybill-dl-partition";
/// Dead-letter record: offset of the original delivery, when the broker has one.
pub const DL_OFFSET: &str = "waybill-dl-offset";
/// Dead-letter record: consumer group that gave up on the message.
pub const DL_GROUP: &str = "waybill-dl-group";
/// Dead-letter record: handling attempts made.
pub const DL_ATTEMPTS: &str = "waybill-dl-attempts";
/// Dead-letter record: first failure time, Unix milliseconds.
pub const DL_FIRST_FAILURE_AT: &str = "waybill-dl-first-failure-at";
/// Dead-letter record: last failure time, Unix milliseconds.
pub const DL_LAST_FAILURE_AT: &str = "waybill-dl-last-failure-at";
/// Dead-letter record: error class (`transient`, `permanent`, `panic`, `held`).
pub const DL_ERROR_CLASS: &str = "waybill-dl-error-class";
/// Dead-letter record: error message of the last failure.
pub const DL_ERROR_MESSAGE: &str = "waybill-dl-error-message";
/// Dead-letter record: id of the dead-lettered message.
pub const DL_MESSAGE_ID: &str = "waybill-dl-message-id";
/// Dead-letter record, key-holding mode only: id of the earlier dead message of the same key
/// that this one was held behind (it was dead-lettered without being handled).
pub const DL_HELD_BEHIND: &str = "waybill-dl-held-behind";

/// Set by a dead-letter replay on the copy it sends back (Unix milliseconds): an idempotency
/// store that has the message id marked as dead-lettered reopens it for this copy instead of
/// skipping it.
pub const REPLAYED_AT: &str = "waybill-replayed-at";

/// Media type of the payload (`application/json`, `application/x-protobuf`), written by
/// [`crate::Message::encoded`] and checked by the codecs. Not prefixed: it is the name other
/// tools (CloudEvents' Kafka binding, Spring, kcat users) already read.
pub const CONTENT_TYPE: &str = "content-type";
