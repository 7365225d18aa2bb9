//! # waybill-outbox
//!
//! Everything of waybill that lives in the application's database, over `sqlx`.
//!
//! - [`PgOutbox`]: migrations, and `enqueue` / `enqueue_batch` into the caller's open
//!   transaction (never committed by waybill).
//! - [`PgRelay`]: publishes committed rows with confirms through any
//!   [`waybill_core::Publisher`], deletes each only after its confirm, keeps per-key order and
//!   commit order (`txid` below the snapshot's xmin), wakes on `LISTEN/NOTIFY`, parks failing
//!   keys with backoff and marks poison rows dead after an attempt cap.
//! - [`PgIdempotencyStore`]: the SQL inbox implementing [`waybill_core::IdempotencyStore`],
//!   with a transactional mode that writes the processed marker in the handler's transaction.
//!
//! Status: PostgreSQL only, single relay instance per database. Still to come (see the
//! project's outbox issue): SQLite, shard leases for several relays, the `waybill-relay`
//! sidecar and the inspection command.

mod error;
mod postgres;

pub use error::OutboxError;
pub use postgres::{
    Backlog, PgIdempotencyStore, PgOutbox, PgRelay, RelayConfig, RelayConfigBuilder, RelayStats,
    DEFAULT_MAX_MESSAGE_BYTES,
};
