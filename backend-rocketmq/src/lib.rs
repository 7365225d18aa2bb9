//! # waybill-rocketmq
//!
//! The RocketMQ backend of waybill (`RocketPublisher`, `RocketSubscriber`) over
//! `rocketmq-client-rust`: synchronous send where only `SEND_OK` counts, orderly send by key,
//! manual-commit consumption, retry and dead-letter topics.
//!
//! **Status: not implemented yet.** This crate holds no publisher or subscriber so far; nothing
//! in it pretends to deliver messages. Until it lands, use `waybill_core::MemoryBroker` for
//! tests and demos.
