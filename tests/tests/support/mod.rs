//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod chaos;
pub mod kafka;
pub mod outbox_cases;
pub mod outbox_db;
pub mod postgres;
pub mod rabbitmq;
