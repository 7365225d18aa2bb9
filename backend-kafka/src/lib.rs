//! # waybill-kafka
//!
//! The Kafka backend of waybill (`KafkaPublisher`, `KafkaSubscriber`) over `rdkafka`:
//! `acks=all` with the idempotent producer, Java-compatible key partitioning, offsets stored only
//! up to the lowest contiguous completed offset per partition, retry and dead-letter topics.
//!
//! **Status: not implemented yet.** This crate holds no publisher or subscriber so far; nothing
//! in it pretends to deliver messages. Until it lands, use `waybill_core::MemoryBroker` for
//! tests and demos.
