//! The PostgreSQL outbox, relay and idempotency store.

mod inbox;
mod outbox;
mod relay;
mod rows;

pub use inbox::PgIdempotencyStore;
pub use outbox::{PgOutbox, DEFAULT_MAX_MESSAGE_BYTES};
pub use relay::{Backlog, PgRelay, RelayConfig, RelayConfigBuilder, RelayStats};
