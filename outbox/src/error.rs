//! Errors of the outbox, the relay and the SQL idempotency store.

use waybill_core::{ConfigError, MessageId};

use crate::tls_failure::{tls_failure, TlsFailure, TLS_FEATURE_HINT};

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
    #[error("waybill tables are missing; apply the migrations first (`waybill outbox migrate`, or postgres::migrate / sqlite::migrate / mysql::migrate): {0}")]
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
    /// Relays disagree on the shard count: one with another count holds live leases.
    #[error("shard layout mismatch: a relay with another shard count holds live leases (this relay has {shard_count}); give every relay of a database the same shard count")]
    ShardLayout {
        /// This relay's shard count.
        shard_count: i64,
    },
    /// A transactional inbox marker was refused: the claim on the message lapsed and another
    /// consumer took it over. The caller's transaction must not commit (on PostgreSQL it is
    /// already aborted and a COMMIT rolls it back); the other holder applies the effect.
    #[error("the claim on message {0} was taken over by another consumer: this transaction must roll back its effect")]
    ClaimLost(MessageId),
    /// A transactional inbox marker was asked for a message the runtime has not claimed (no
    /// idempotency store on the Processor, or called outside the handler).
    #[error("message {0} carries no claim: the transactional marker needs a message claimed by a Processor using this inbox")]
    NotClaimed(MessageId),
    /// The database server lacks what the outbox relies on: a version older than the minimum,
    /// or a privilege the relay needs (MySQL's `PROCESS`). The message names what is missing.
    /// Not transient: fix the server or the grants.
    #[error("unsupported database server: {0}")]
    Unsupported(String),
    /// A relay's task ended without a result: it panicked or its runtime shut down.
    #[error("relay task failed: {0}")]
    Task(String),
    /// TLS with the database failed for a reason a retry repeats: the server's certificate
    /// failed verification (signed by a CA not trusted, issued for another host name, expired
    /// or not yet valid), the server refused this client's certificate, or the TLS settings
    /// are unusable (an unreadable CA bundle or client key). `reason` says which in words;
    /// the source is sqlx's error. Not transient.
    #[error("TLS with the database failed: {reason}")]
    Tls {
        /// What failed, readable, with the TLS library's own wording in parentheses.
        reason: String,
        /// The error sqlx returned.
        #[source]
        source: sqlx::Error,
    },
    /// An audit cannot compare what the databases returned (the message says why).
    #[error("audit: {0}")]
    Audit(String),
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

/// Classifies a sqlx error from PostgreSQL, SQLite or MySQL. `id` names the message for
/// unique violations.
///
/// TLS failures come first: a certificate that fails verification is [`OutboxError::Tls`],
/// and a URL requiring TLS in a build without the `tls` feature is [`OutboxError::Config`]
/// naming the feature (sqlx reports both like network errors, which would be retried forever).
pub(crate) fn classify(error: sqlx::Error, id: Option<MessageId>) -> OutboxError {
    match tls_failure(&error) {
        Some(TlsFailure::NotBuilt) => {
            return OutboxError::Config(ConfigError::new("database_url", TLS_FEATURE_HINT))
        }
        Some(TlsFailure::Rejected(reason)) => {
            return OutboxError::Tls {
                reason,
                source: error,
            }
        }
        None => {}
    }
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => OutboxError::Unreachable(error),
        sqlx::Error::Database(db) => {
            if db.kind() == sqlx::error::ErrorKind::UniqueViolation {
                return match id {
                    Some(id) => OutboxError::DuplicateId(id),
                    None => OutboxError::Database(error),
                };
            }
            #[cfg(feature = "mysql")]
            if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return classify_mysql(mysql.number(), error);
            }
            match db.code().as_deref() {
                // PostgreSQL: invalid_password, invalid_authorization_specification,
                // invalid_catalog_name. SQLite: SQLITE_AUTH, SQLITE_PERM, SQLITE_READONLY.
                Some("28P01" | "28000" | "3D000" | "23" | "3" | "8") => OutboxError::Refused(error),
                // PostgreSQL: undefined_table, undefined_function.
                Some("42P01" | "42883") => OutboxError::NotMigrated(error),
                // PostgreSQL: admin_shutdown, crash_shutdown, cannot_connect_now, serialization
                // failure, deadlock. SQLite: SQLITE_BUSY (and BUSY_SNAPSHOT), SQLITE_LOCKED,
                // SQLITE_CANTOPEN, SQLITE_IOERR.
                Some(
                    "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "5" | "517" | "6" | "14"
                    | "10",
                ) => OutboxError::Unreachable(error),
                // SQLite reports a missing table as a plain SQLITE_ERROR.
                Some("1") if db.message().starts_with("no such table") => {
                    OutboxError::NotMigrated(error)
                }
                _ => OutboxError::Database(error),
            }
        }
        _ => OutboxError::Database(error),
    }
}

/// Classifies a MySQL or MariaDB server error by its number.
#[cfg(feature = "mysql")]
fn classify_mysql(number: u16, error: sqlx::Error) -> OutboxError {
    match number {
        // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR, ER_BAD_DB_ERROR,
        // ER_TABLEACCESS_DENIED_ERROR.
        1045 | 1044 | 1049 | 1142 => OutboxError::Refused(error),
        // ER_NO_SUCH_TABLE, ER_BAD_FIELD_ERROR (a table of an older layout).
        1146 | 1054 => OutboxError::NotMigrated(error),
        // ER_LOCK_WAIT_TIMEOUT, ER_LOCK_DEADLOCK, ER_SERVER_SHUTDOWN, ER_CON_COUNT_ERROR,
        // ER_TOO_MANY_USER_CONNECTIONS, ER_QUERY_INTERRUPTED, ER_CONNECTION_KILLED,
        // ER_OPTION_PREVENTS_STATEMENT (a read-only replica, after a failover).
        1205 | 1213 | 1053 | 1040 | 1203 | 1317 | 1927 | 1290 => OutboxError::Unreachable(error),
        _ => OutboxError::Database(error),
    }
}
