//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod postgres;
pub mod rabbitmq;
