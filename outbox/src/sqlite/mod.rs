//! SQLite: migrations, the outbox writer, the relay's store and the inbox.
//!
//! Open the pool with WAL journaling and a busy timeout so that the relay and the
//! application write side by side: see [`connect`].
//!
//! SQLite lets one writer in at a time. The relay writes too (deleting confirmed rows,
//! renewing leases), so a business transaction that *reads before it writes* should start with
//! `BEGIN IMMEDIATE` (`pool.begin_with("BEGIN IMMEDIATE")`): a deferred one that read first
//! gets `SQLITE_BUSY` when another writer committed meanwhile. Such errors are classified as
//! transient ([`OutboxError::is_transient`]): retry the transaction.

mod inbox;
mod inspect;
mod key_holds;
mod outbox;
mod store;

use std::str::FromStr;
use std::time::Duration;

pub use inbox::SqliteIdempotencyStore;
pub(crate) use store::SqliteStore;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{classify, OutboxError};

/// Opens (creating if needed) the SQLite database at `url` (`sqlite://path/to/file.db`) with
/// the settings the outbox relies on: WAL journaling, `synchronous = FULL` (a committed row
/// survives power loss), a 5 s busy timeout and foreign keys on.
///
/// # Errors
/// [`OutboxError::Unreachable`] when the file cannot be opened or created, or
/// [`OutboxError::Config`] for a URL that is not `sqlite:`.
pub async fn connect(url: &str, max_connections: u32) -> Result<sqlx::SqlitePool, OutboxError> {
    if !url.starts_with("sqlite:") {
        return Err(waybill_core::ConfigError::new(
            "database_url",
            "not a SQLite URL (sqlite://path/to/file.db)",
        )
        .into());
    }
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| {
            waybill_core::ConfigError::new("database_url", format!("not a SQLite URL: {e}"))
        })?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5))
        .foreign_keys(true);
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .connect_with(options)
        .await
        .map_err(|e| classify(e, None))
}

/// Creates or updates the waybill tables (outbox, shard leases, inbox) in a SQLite database.
/// Idempotent; run it at start or with `waybill outbox migrate`.
///
/// # Errors
/// [`OutboxError::Migration`] when a migration fails or the recorded ones do not match.
pub async fn migrate(pool: &sqlx::SqlitePool) -> Result<(), OutboxError> {
    sqlx::migrate!("./migrations/sqlite").run(pool).await?;
    Ok(())
}
