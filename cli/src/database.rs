//! The database behind a URL: PostgreSQL, SQLite or MySQL/MariaDB.

use std::sync::Arc;
use std::time::Duration;

use waybill_core::secret::mask_url_password as masked_url;
use waybill_core::KeyHoldStore;
use waybill_outbox::audit::AuditDatabase;
use waybill_outbox::{
    MySqlIdempotencyStore, OutboxInspector, PgIdempotencyStore, SqliteIdempotencyStore,
};

use crate::exit::Failure;
use crate::settings::DatabaseKind;

/// The database behind a URL.
pub enum Database {
    /// PostgreSQL 12+.
    Postgres(sqlx::PgPool),
    /// A SQLite file.
    Sqlite(sqlx::SqlitePool),
    /// MySQL 8.0+ or MariaDB 10.6+.
    Mysql(sqlx::MySqlPool),
}

/// Connects to (or opens) the database at `url`.
///
/// # Errors
/// [`Failure::Usage`] for a URL of another scheme, [`Failure::Failed`] when the database
/// cannot be reached or opened.
pub async fn open(url: &str) -> Result<Database, Failure> {
    let opened = match DatabaseKind::of(url).map_err(Failure::Usage)? {
        DatabaseKind::Sqlite => waybill_outbox::sqlite::connect(url, 4)
            .await
            .map(Database::Sqlite)
            .map_err(|e| format!("cannot open the database: {e}")),
        DatabaseKind::Postgres => waybill_outbox::postgres::connect(url, 4)
            .await
            .map(Database::Postgres)
            .map_err(|e| format!("cannot connect to the database {}: {e}", masked_url(url))),
        DatabaseKind::Mysql => waybill_outbox::mysql::connect(url, 4)
            .await
            .map(Database::Mysql)
            .map_err(|e| format!("cannot connect to the database {}: {e}", masked_url(url))),
    };
    Ok(opened?)
}

impl Database {
    /// Applies the outbox's migrations.
    pub async fn migrate(&self) -> Result<(), String> {
        match self {
            Self::Postgres(pool) => waybill_outbox::postgres::migrate(pool).await,
            Self::Sqlite(pool) => waybill_outbox::sqlite::migrate(pool).await,
            Self::Mysql(pool) => waybill_outbox::mysql::migrate(pool).await,
        }
        .map_err(|e| e.to_string())
    }

    /// The dead-row and backlog inspector of this database.
    pub fn inspector(&self) -> OutboxInspector {
        match self {
            Self::Postgres(pool) => OutboxInspector::postgres(pool.clone()),
            Self::Sqlite(pool) => OutboxInspector::sqlite(pool.clone()),
            Self::Mysql(pool) => OutboxInspector::mysql(pool.clone()),
        }
    }

    /// This database as an audit reads it (its sent log, or its inbox).
    pub fn audit_source(&self) -> AuditDatabase {
        match self {
            Self::Postgres(pool) => AuditDatabase::Postgres(pool.clone()),
            Self::Sqlite(pool) => AuditDatabase::Sqlite(pool.clone()),
            Self::Mysql(pool) => AuditDatabase::MySql(pool.clone()),
        }
    }

    /// The held keys of consumer groups whose inbox is this database.
    pub fn key_holds(&self) -> Arc<dyn KeyHoldStore> {
        // The retention only matters to markers, which this store does not write.
        let retention = Duration::from_secs(7 * 24 * 3600);
        match self {
            Self::Postgres(pool) => Arc::new(PgIdempotencyStore::new(pool.clone(), retention)),
            Self::Sqlite(pool) => Arc::new(SqliteIdempotencyStore::new(pool.clone(), retention)),
            Self::Mysql(pool) => Arc::new(MySqlIdempotencyStore::new(pool.clone(), retention)),
        }
    }
}
