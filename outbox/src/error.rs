//! Errors of the outbox, the relay and the SQL idempotency store.

use waybill_core::{ConfigError, MessageId};

/// What went wrong between waybill and the application's database.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The database cannot be reached (down, wrong address, pool exhausted). Retrying may help.
    #[error("database unreachable: {0}")]
    Unreachable(#[source] sqlx::Error),
    /// The database refused the credentials or the database name.
    #[error("database refused the connection: {0}")]
    Refused(#[source] sqlx::Error),
    /// The waybill tables are missing: the migrations were not applied.
    #[error("waybill tables are missing; apply the migrations first (PgOutbox::migrate): {0}")]
    NotMigrated(#[source] sqlx::Error),
    /// The message id is already in the outbox.
    #[error("message {0} is already in the outbox")]
    DuplicateId(MessageId),
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the outbox limit of {limit} bytes")]
    Oversized {
        /// Payload plus headers, in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A topic or setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl OutboxError {
    /// Whether retrying the same operation may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unreachable(_) | Self::Database(_))
    }
}

/// Classifies a sqlx error. `id` names the message for unique violations.
pub(crate) fn classify(error: sqlx::Error, id: Option<MessageId>) -> OutboxError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => OutboxError::Unreachable(error),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_password, invalid_authorization_specification, invalid_catalog_name
            Some("28P01") | Some("28000") | Some("3D000") => OutboxError::Refused(error),
            // undefined_table, undefined_function
            Some("42P01") | Some("42883") => OutboxError::NotMigrated(error),
            Some("23505") => match id {
                Some(id) => OutboxError::DuplicateId(id),
                None => OutboxError::Database(error),
            },
            // admin_shutdown, crash_shutdown, cannot_connect_now, serialization and deadlock
            Some("57P01") | Some("57P02") | Some("57P03") | Some("40001") | Some("40P01") => {
                OutboxError::Unreachable(error)
            }
            _ => OutboxError::Database(error),
        },
        _ => OutboxError::Database(error),
    }
}
