//! The order service demo: orders and their messages written in one transaction, relayed from
//! the outbox, applied exactly once.

pub mod books;
pub mod brokers;
pub mod ledger;
pub mod orders;
pub mod service_db;
pub mod shop;
