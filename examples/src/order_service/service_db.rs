//! The service's own database: a SQLite file, or a database of its own on a MySQL/MariaDB
//! server. The orders, the billing books, the outbox and the inbox all live in it.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{MySqlPool, SqlitePool};
use waybill_core::{BoxError, IdempotencyStore, Publisher};
use waybill_outbox::{
    InboxPurger, MySqlIdempotencyStore, OutboxInspector, Relay, RelayConfig, SqliteIdempotencyStore,
};

/// How long the inbox keeps its markers.
const INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The database and the inbox on it.
#[derive(Clone)]
pub enum ServiceDb {
    /// A SQLite file.
    Sqlite {
        /// The pool.
        pool: SqlitePool,
        /// The inbox in the same file.
        inbox: Arc<SqliteIdempotencyStore>,
    },
    /// A database made for this run on a MySQL 8.0+ or MariaDB 10.6+ server.
    Mysql {
        /// The pool on the run's database.
        pool: MySqlPool,
        /// The inbox in the same database.
        inbox: Arc<MySqlIdempotencyStore>,
        /// The server without a database, to drop the run's database afterwards.
        server: String,
        /// The run's database.
        name: String,
    },
}

impl ServiceDb {
    /// Opens the SQLite file at `path` (created when missing).
    ///
    /// # Errors
    /// The file cannot be opened.
    pub async fn sqlite(path: &std::path::Path) -> Result<Self, BoxError> {
        let pool =
            waybill_outbox::sqlite::connect(&format!("sqlite://{}", path.display()), 8).await?;
        let inbox = Arc::new(SqliteIdempotencyStore::new(pool.clone(), INBOX_RETENTION));
        Ok(Self::Sqlite { pool, inbox })
    }

    /// Creates a database `order_service_<pid>` on the server of `url` (`mysql://user@host:port`,
    /// any database in the URL is ignored) and opens it; [`ServiceDb::close`] drops it.
    ///
    /// # Errors
    /// The server cannot be reached, or refuses to create the database.
    pub async fn mysql(url: &str) -> Result<Self, BoxError> {
        let server = match url.strip_prefix("mysql://") {
            Some(rest) => format!("mysql://{}", rest.split('/').next().unwrap_or(rest)),
            None => return Err(format!("not a mysql:// URL: {url}").into()),
        };
        let name = format!("order_service_{}", std::process::id());
        let admin = waybill_outbox::mysql::connect(&server, 1).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await?;
        admin.close().await;
        let pool = waybill_outbox::mysql::connect(&format!("{server}/{name}"), 8).await?;
        let inbox = Arc::new(MySqlIdempotencyStore::new(pool.clone(), INBOX_RETENTION));
        Ok(Self::Mysql {
            pool,
            inbox,
            server,
            name,
        })
    }

    /// Applies the waybill migrations.
    ///
    /// # Errors
    /// A database error.
    pub async fn migrate(&self) -> Result<(), BoxError> {
        match self {
            Self::Sqlite { pool, .. } => waybill_outbox::sqlite::migrate(pool).await?,
            Self::Mysql { pool, .. } => waybill_outbox::mysql::migrate(pool).await?,
        }
        Ok(())
    }

    /// Runs one statement (table creation).
    ///
    /// # Errors
    /// A database error.
    pub async fn execute(&self, sql: &str) -> sqlx::Result<()> {
        match self {
            Self::Sqlite { pool, .. } => sqlx::query(sql).execute(pool).await.map(drop),
            Self::Mysql { pool, .. } => sqlx::query(sql).execute(pool).await.map(drop),
        }
    }

    /// Reads one count.
    ///
    /// # Errors
    /// A database error.
    pub async fn count(&self, sql: &str) -> sqlx::Result<u64> {
        let n: i64 = match self {
            Self::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await?,
            Self::Mysql { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await?,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The inbox, as the Processor's idempotency store.
    pub fn idempotency(&self) -> Arc<dyn IdempotencyStore> {
        match self {
            Self::Sqlite { inbox, .. } => inbox.clone(),
            Self::Mysql { inbox, .. } => inbox.clone(),
        }
    }

    /// Deletes markers past their retention every `every`, in the background, while the
    /// returned purger is kept.
    pub fn purge_every(&self, every: Duration) -> InboxPurger {
        match self {
            Self::Sqlite { inbox, .. } => inbox.purge_every(every),
            Self::Mysql { inbox, .. } => inbox.purge_every(every),
        }
    }

    /// A relay of this database's outbox.
    pub fn relay(&self, publisher: Arc<dyn Publisher>, config: RelayConfig) -> Relay {
        match self {
            Self::Sqlite { pool, .. } => Relay::sqlite(pool.clone(), publisher, config),
            Self::Mysql { pool, .. } => Relay::mysql(pool.clone(), publisher, config),
        }
    }

    /// The outbox's inspector.
    pub fn inspector(&self) -> OutboxInspector {
        match self {
            Self::Sqlite { pool, .. } => OutboxInspector::sqlite(pool.clone()),
            Self::Mysql { pool, .. } => OutboxInspector::mysql(pool.clone()),
        }
    }

    /// The last publish error the relay stored on an outbox row, if any.
    ///
    /// # Errors
    /// A database error.
    pub async fn last_publish_error(&self) -> sqlx::Result<Option<String>> {
        let sql = "SELECT last_error FROM waybill_outbox WHERE last_error IS NOT NULL \
                   ORDER BY seq DESC LIMIT 1";
        match self {
            Self::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_optional(pool).await,
            Self::Mysql { pool, .. } => sqlx::query_scalar(sql).fetch_optional(pool).await,
        }
    }

    /// Where the data is, for the ledger.
    pub fn describe(&self, sqlite_path: &std::path::Path) -> String {
        match self {
            Self::Sqlite { .. } => format!("SQLite at {}", sqlite_path.display()),
            Self::Mysql { server, name, .. } => format!(
                "MySQL/MariaDB database {name} on {}",
                waybill_core::secret::mask_url_password(server)
            ),
        }
    }

    /// Closes the pool; on MySQL drops the run's database.
    ///
    /// # Errors
    /// The drop failed (the database is left behind).
    pub async fn close(&self) -> Result<(), BoxError> {
        match self {
            Self::Sqlite { pool, .. } => pool.close().await,
            Self::Mysql {
                pool, server, name, ..
            } => {
                pool.close().await;
                let admin = waybill_outbox::mysql::connect(server, 1).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&admin)
                    .await?;
                admin.close().await;
            }
        }
        Ok(())
    }
}
