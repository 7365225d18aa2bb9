//! MySQL 8.0+ and MariaDB 10.6+: migrations, the outbox writer, the relay's store and the
//! inbox.
//!
//! Commit order, which PostgreSQL gets from transaction ids, comes here from
//! `information_schema.innodb_trx` (see the `horizon` module): the relay's database user
//! needs the `PROCESS` privilege to read it, and a relay without it refuses to run with an
//! error that says so. MySQL has no `LISTEN/NOTIFY`: an idle relay polls.
//!
//! A statement that fails inside a transaction is undone on its own and the transaction goes
//! on, except after a deadlock or a lock wait timeout with `innodb_rollback_on_timeout`, which
//! roll the whole transaction back.

mod horizon;
mod inbox;
mod inspect;
mod key_holds;
mod leases;
mod outbox;
mod store;
mod version;

use std::str::FromStr;
use std::time::Duration;

pub use inbox::MySqlIdempotencyStore;
pub(crate) use store::MySqlStore;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};

use crate::error::{classify, OutboxError};

/// Connects to the MySQL or MariaDB database at `url` (`mysql://user:password@host:3306/db`;
/// sqlx's URL parameters such as `ssl-mode` apply) with a pool of `max_connections`, and
/// checks that the server is supported.
///
/// # Errors
/// [`OutboxError::Config`] for a URL that is not `mysql://` or `mariadb://`,
/// [`OutboxError::Unreachable`] when the server does not answer, [`OutboxError::Refused`] for
/// bad credentials or an unknown database, [`OutboxError::Unsupported`] for a server older
/// than MySQL 8.0 or MariaDB 10.6.
pub async fn connect(url: &str, max_connections: u32) -> Result<sqlx::MySqlPool, OutboxError> {
    if !(url.starts_with("mysql://") || url.starts_with("mariadb://")) {
        return Err(waybill_core::ConfigError::new(
            "database_url",
            "not a MySQL URL (mysql://user:password@host:3306/database)",
        )
        .into());
    }
    let options = MySqlConnectOptions::from_str(url).map_err(|e| {
        waybill_core::ConfigError::new("database_url", format!("not a MySQL URL: {e}"))
    })?;
    let pool = MySqlPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| classify(e, None))?;
    version::check_server(&pool).await?;
    Ok(pool)
}

/// Creates or updates the waybill tables (outbox, shard leases, inbox) in a MySQL or MariaDB
/// database, after checking the server version. Idempotent; run it at start or with
/// `waybill outbox migrate`. MySQL cannot roll DDL back: a migration that fails halfway leaves
/// what it created, and running it again completes it (`IF NOT EXISTS` throughout).
///
/// # Errors
/// [`OutboxError::Unsupported`] for a server older than MySQL 8.0 or MariaDB 10.6;
/// [`OutboxError::Migration`] when a migration fails or the recorded ones do not match.
pub async fn migrate(pool: &sqlx::MySqlPool) -> Result<(), OutboxError> {
    version::check_server(pool).await?;
    sqlx::migrate!("./migrations/mysql").run(pool).await?;
    Ok(())
}
