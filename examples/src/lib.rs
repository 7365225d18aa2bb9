//! Runnable programs that show waybill end to end; see `src/bin/`.
//!
//! The order service (`order-service` binary) is split into the pieces a real service has:
//! [`order_service::orders`] (the business payload), [`order_service::books`] (the consumer's
//! effect), [`order_service::ledger`] (the balance printed at the end) and
//! [`order_service::brokers`] (which broker carries the messages).

pub mod order_service;
