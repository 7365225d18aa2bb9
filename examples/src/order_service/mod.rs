//! The order service demo: place orders, publish them with confirms, apply them exactly once.

pub mod books;
pub mod brokers;
pub mod ledger;
pub mod orders;
