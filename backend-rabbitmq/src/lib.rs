//! # waybill-rabbitmq
//!
//! The RabbitMQ backend of waybill (`RabbitPublisher`, `RabbitSubscriber`) over `lapin`:
//! publisher confirms with persistent, mandatory messages, quorum queues, TTL retry tiers with a
//! dead-letter exchange back to the work queue, a dead-letter queue, manual acknowledgement.
//!
//! **Status: not implemented yet.** This crate holds no publisher or subscriber so far; nothing
//! in it pretends to deliver messages. Until it lands, use `waybill_core::MemoryBroker` for
//! tests and demos.
