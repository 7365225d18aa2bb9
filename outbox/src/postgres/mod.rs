//! PostgreSQL: migrations, the outbox writer, the relay's store and the inbox.

mod inbox;
mod inspect;
mod outbox;
mod store;
mod wakeups;

pub use inbox::PgIdempotencyStore;
pub(crate) use store::PgStore;

use crate::error::OutboxError;

/// Creates or updates the waybill tables (outbox, shard leases, inbox) in a PostgreSQL
/// database. Idempotent; run it at start or with `waybill-relay migrate`.
///
/// # Errors
/// [`OutboxError::Migration`] when a migration fails or the recorded ones do not match.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), OutboxError> {
    sqlx::migrate!("./migrations/postgres").run(pool).await?;
    Ok(())
}
