//! Idempotency stores on Redis for waybill.
//!
//! - [`RedisIdempotencyStore`]: the whole claim protocol in Redis. Claims are `SET NX PX` with a
//!   fencing token; renewing, completing and releasing run as scripts that check the token, so
//!   a holder whose lease lapsed can never record a second outcome. Done markers live for the
//!   configured retention. Fast, shared by every consumer instance, but only as durable as the
//!   Redis server: a Redis that keeps nothing on disk forgets every marker when it restarts, and
//!   a redelivered message is then handled again. Use it where that is acceptable, or layer it.
//! - [`LayeredIdempotencyStore`]: answers duplicates from Redis first and keeps the
//!   authoritative claim and marker in another store (the SQL inbox of `waybill-outbox`, whose
//!   transactional marker commits with the handler's effect). Losing Redis (restart, outage,
//!   flush) costs speed, never correctness.
//!
//! Keys are `<prefix>:<consumer group>:<message id>`. Two applications sharing a Redis server
//! must differ in consumer group or in prefix ([`RedisStoreConfig::key_prefix`]); otherwise
//! one would skip the other's messages as duplicates.
//!
//! ```no_run
//! use std::time::Duration;
//! use waybill_redis::{RedisIdempotencyStore, RedisStoreConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RedisStoreConfig::builder("redis://127.0.0.1:6379")
//!     .key_prefix("orders")
//!     .retention(Duration::from_secs(7 * 24 * 3600))
//!     .build()?;
//! let store = RedisIdempotencyStore::connect(config).await?;
//! let processor = waybill_core::Processor::builder("billing")
//!     .idempotency(std::sync::Arc::new(store))
//!     .build()?;
//! # let _ = processor; Ok(()) }
//! ```

mod config;
mod error;
mod keys;
mod layered;
mod scripts;
mod store;

pub use config::{RedisStoreConfig, RedisStoreConfigBuilder};
pub use error::RedisStoreError;
pub use layered::{LayeredIdempotencyStore, LayeredStats};
pub use store::RedisIdempotencyStore;
