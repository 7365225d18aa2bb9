//! # waybill-outbox
//!
//! Everything of waybill that lives in the application's database, over `sqlx`, on
//! PostgreSQL, SQLite and MySQL/MariaDB.
//!
//! - [`Outbox`]: `enqueue` / `enqueue_batch` into the caller's open transaction (never
//!   committed by waybill); migrations in [`postgres::migrate`], [`sqlite::migrate`] and
//!   [`mysql::migrate`].
//! - [`Relay`]: publishes committed rows with confirms through any
//!   [`waybill_core::Publisher`], deletes each only after its confirm, keeps per-key order and
//!   (on PostgreSQL and MySQL) commit order, shares the keys among several relays with shard
//!   leases, wakes on `LISTEN/NOTIFY` (PostgreSQL) or polls, parks failing keys with backoff and
//!   marks poison rows dead after an attempt cap.
//! - [`OutboxInspector`]: backlog per topic, dead rows, replay and purge.
//! - [`audit`]: reconciliation of the relay's sent log with the consumers' inbox markers.
//! - [`PgIdempotencyStore`], [`SqliteIdempotencyStore`] and [`MySqlIdempotencyStore`]: the
//!   SQL inbox implementing [`waybill_core::IdempotencyStore`], with a transactional mode that writes the processed
//!   marker in the handler's transaction, and [`InboxPurger`], which deletes expired rows in
//!   the background (`purge_every`).
//!
//! The `waybill` command line (package `waybill-cli`) runs the relay as a sidecar
//! (`waybill relay`) and inspects the outbox (`waybill outbox …`); this crate depends on no
//! broker crate.

#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
pub mod audit;
mod error;
mod inbox_purger;
mod inbox_retention;
mod inspect;
#[cfg(any(feature = "postgres", feature = "sqlite", feature = "mysql"))]
mod key_hold_row;
#[cfg(feature = "mysql")]
pub mod mysql;
mod outbox;
#[cfg(feature = "postgres")]
pub mod postgres;
mod ready;
mod relay;
mod row;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod store;
mod tls_failure;

pub use error::OutboxError;
pub use inbox_purger::InboxPurger;
pub use inspect::{Backlog, DeadFilter, DeadRow, OutboxInspector, TopicBacklog};
#[cfg(feature = "mysql")]
pub use mysql::MySqlIdempotencyStore;
pub use outbox::{Outbox, OutboxTransaction, DEFAULT_MAX_MESSAGE_BYTES};
#[cfg(feature = "postgres")]
pub use postgres::PgIdempotencyStore;
pub use relay::{Relay, RelayConfig, RelayConfigBuilder, RelayStats, RunningRelay};
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteIdempotencyStore;
