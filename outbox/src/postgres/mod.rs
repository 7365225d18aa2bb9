//! PostgreSQL: migrations, the outbox writer, the relay's store and the inbox.

mod inbox;
mod inbox_batch;
mod inspect;
mod key_holds;
mod outbox;
mod store;
mod wakeups;

pub use inbox::PgIdempotencyStore;
pub(crate) use store::PgStore;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

use crate::error::{classify, OutboxError};
use crate::tls_failure::TLS_FEATURE_HINT;

/// Connects to the PostgreSQL database at `url` with a pool of `max_connections`.
///
/// The URL takes libpq's TLS parameters: `sslmode` (`disable`, `allow`, `prefer` — sqlx's
/// default —, `require`, `verify-ca`, `verify-full`), `sslrootcert=FILE` (the CA bundle, added
/// to the webpki roots), `sslcert=FILE` and `sslkey=FILE` (a client certificate). Only
/// `verify-full` checks both that the server's certificate comes from a trusted CA and that it
/// names the URL's host; `require` encrypts without checking who answers. Use `verify-full` in
/// production.
///
/// With the `tls` feature, the first call installs rustls's ring provider as the process
/// default unless one is installed already: sqlx's `verify-ca` check asks rustls for the
/// default, which panics when the dependency graph enables more than one provider.
///
/// # Errors
/// [`OutboxError::Config`] for a URL that is not `postgres://` / `postgresql://` or does not
/// parse (the message never repeats the URL, which may hold a password), and for a URL whose
/// `sslmode` requires TLS in a build without the `tls` feature (naming the feature);
/// [`OutboxError::Tls`] when the server's certificate fails verification or the server
/// refuses the handshake; [`OutboxError::Refused`] for bad credentials or an unknown database;
/// [`OutboxError::Unreachable`] when the server does not answer within 10 s. Only the last is
/// transient.
pub async fn connect(url: &str, max_connections: u32) -> Result<sqlx::PgPool, OutboxError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(waybill_core::ConfigError::new(
            "database_url",
            "not a PostgreSQL URL (postgres://user:password@host:5432/database)",
        )
        .into());
    }
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        waybill_core::ConfigError::new("database_url", format!("not a PostgreSQL URL: {e}"))
    })?;
    require_tls_support(options.get_ssl_mode(), cfg!(feature = "tls"))?;
    #[cfg(feature = "tls")]
    crate::tls_failure::install_crypto_provider();
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(|e| classify(e, None))
}

/// Refuses an `sslmode` that needs TLS when the build has none (`tls_built` false), naming
/// the feature, before sqlx would report it as a network error.
fn require_tls_support(mode: PgSslMode, tls_built: bool) -> Result<(), OutboxError> {
    let needs_tls = match mode {
        PgSslMode::Disable | PgSslMode::Allow | PgSslMode::Prefer => false,
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => true,
    };
    if needs_tls && !tls_built {
        return Err(waybill_core::ConfigError::new("database_url", TLS_FEATURE_HINT).into());
    }
    Ok(())
}

/// Creates or updates the waybill tables (outbox, shard leases, inbox) in a PostgreSQL
/// database. Idempotent; run it at start or with `waybill outbox migrate`.
///
/// # Errors
/// [`OutboxError::Migration`] when a migration fails or the recorded ones do not match.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<(), OutboxError> {
    sqlx::migrate!("./migrations/postgres").run(pool).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_that_need_tls_are_refused_without_it_naming_the_feature() {
        for mode in [
            PgSslMode::Require,
            PgSslMode::VerifyCa,
            PgSslMode::VerifyFull,
        ] {
            let refused = require_tls_support(mode, false).unwrap_err();
            assert!(matches!(refused, OutboxError::Config(_)), "{refused}");
            assert!(refused.to_string().contains("feature `tls`"), "{refused}");
            assert!(!refused.is_transient());
            assert!(require_tls_support(mode, true).is_ok());
        }
        for mode in [PgSslMode::Disable, PgSslMode::Allow, PgSslMode::Prefer] {
            assert!(require_tls_support(mode, false).is_ok());
        }
    }

    #[tokio::test]
    async fn urls_that_are_not_postgres_are_refused_without_repeating_them() {
        for url in [
            "mysql://app:hunter2@db/shop",
            "postgres://app:hunter2@db:notaport/shop",
        ] {
            let refused = connect(url, 1).await.unwrap_err();
            assert!(matches!(refused, OutboxError::Config(_)), "{refused}");
            assert!(!refused.to_string().contains("hunter2"), "{refused}");
            assert!(!format!("{refused:?}").contains("hunter2"), "{refused:?}");
        }
    }

    #[cfg(not(feature = "tls"))]
    #[tokio::test]
    async fn a_url_requiring_tls_is_refused_in_a_build_without_it() {
        let refused = connect("postgres://app@127.0.0.1:1/shop?sslmode=verify-full", 1)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("feature `tls`"), "{refused}");
    }
}
