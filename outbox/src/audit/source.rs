//! Reading the sent log and a group's inbox markers in id order, as streams.

use futures_util::stream::{BoxStream, StreamExt};
use waybill_core::MessageId;

use super::tally::{Marker, SentEntry};
use crate::error::{classify, OutboxError};

/// A database an audit reads: the one holding the outbox's sent log, or the one holding a
/// consumer group's inbox (the same database or two different ones, of any kind).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum AuditDatabase {
    /// PostgreSQL 12+.
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    /// MySQL 8.0+ or MariaDB 10.6+.
    #[cfg(feature = "mysql")]
    MySql(sqlx::MySqlPool),
}

fn db(e: sqlx::Error) -> OutboxError {
    classify(e, None)
}

fn sent_entry((id, topic, confirmed_at_ms): (uuid::Uuid, String, i64)) -> SentEntry {
    SentEntry {
        id: MessageId::from_uuid(id),
        topic,
        confirmed_at_ms,
    }
}

fn marker((id, done, dead, done_at_ms): (uuid::Uuid, bool, bool, Option<i64>)) -> Marker {
    Marker {
        id: MessageId::from_uuid(id),
        done,
        dead,
        done_at_ms,
    }
}

impl AuditDatabase {
    /// Fails with a message saying what to do when this database has no sent log.
    pub(crate) async fn check_sent_log(&self) -> Result<(), OutboxError> {
        let probe = match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => {
                "SELECT message_id, topic, confirmed_at_ms FROM waybill_sent LIMIT 1"
            }
            #[allow(unreachable_patterns)]
            _ => "SELECT message_id, topic, confirmed_at FROM waybill_sent LIMIT 1",
        };
        self.probe(
            probe,
            "no sent log (table waybill_sent)",
            " and run the relay with a sent-log retention (`--sent-log-retention-hours`)",
        )
        .await
    }

    /// Fails with a message saying what to do when this database's inbox has no finish
    /// times (its migrations are older than the audit).
    pub(crate) async fn check_inbox(&self) -> Result<(), OutboxError> {
        let probe = match self {
            #[cfg(feature = "sqlite")]
            Self::Sqlite(_) => "SELECT done_at_ms FROM waybill_inbox LIMIT 1",
            #[allow(unreachable_patterns)]
            _ => "SELECT done_at FROM waybill_inbox LIMIT 1",
        };
        self.probe(probe, "inbox with finish times (waybill_inbox.done_at)", "")
            .await
    }

    async fn probe(&self, probe: &str, lacking: &str, also: &str) -> Result<(), OutboxError> {
        let probed = match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => sqlx::query(probe).fetch_optional(pool).await.map(drop),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => sqlx::query(probe).fetch_optional(pool).await.map(drop),
            #[cfg(feature = "mysql")]
            Self::MySql(pool) => sqlx::query(probe).fetch_optional(pool).await.map(drop),
        };
        match probed.map_err(db) {
            Ok(()) => Ok(()),
            Err(e @ (OutboxError::Unreachable(_) | OutboxError::Refused(_))) => Err(e),
            Err(e) => Err(OutboxError::Audit(format!(
                "the database has no {lacking}: apply the migrations (`waybill outbox \
                 migrate`){also} ({e})"
            ))),
        }
    }

    /// Every sent-log entry, in id order.
    pub(crate) fn sent(&self) -> BoxStream<'_, Result<SentEntry, OutboxError>> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => sqlx::query_as(
                "SELECT message_id, topic, \
                        (EXTRACT(EPOCH FROM confirmed_at) * 1000)::bigint \
                 FROM waybill_sent ORDER BY message_id",
            )
            .fetch(pool)
            .map(|row| row.map(sent_entry).map_err(db))
            .boxed(),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => sqlx::query_as(
                "SELECT message_id, topic, confirmed_at_ms FROM waybill_sent ORDER BY message_id",
            )
            .fetch(pool)
            .map(|row| row.map(sent_entry).map_err(db))
            .boxed(),
            #[cfg(feature = "mysql")]
            Self::MySql(pool) => sqlx::query_as(
                "SELECT message_id, CAST(topic AS CHAR), \
                        TIMESTAMPDIFF(MICROSECOND, '1970-01-01', confirmed_at) DIV 1000 \
                 FROM waybill_sent ORDER BY message_id",
            )
            .fetch(pool)
            .map(|row| row.map(sent_entry).map_err(db))
            .boxed(),
        }
    }

    /// Every inbox entry of `group`, in id order.
    pub(crate) fn markers<'a>(
        &'a self,
        group: &'a str,
    ) -> BoxStream<'a, Result<Marker, OutboxError>> {
        match self {
            #[cfg(feature = "postgres")]
            Self::Postgres(pool) => sqlx::query_as(
                "SELECT message_id, done, dead, (EXTRACT(EPOCH FROM done_at) * 1000)::bigint \
                 FROM waybill_inbox WHERE group_name = $1 ORDER BY message_id",
            )
            .bind(group)
            .fetch(pool)
            .map(|row| row.map(marker).map_err(db))
            .boxed(),
            #[cfg(feature = "sqlite")]
            Self::Sqlite(pool) => sqlx::query_as(
                "SELECT message_id, done, dead, done_at_ms \
                 FROM waybill_inbox WHERE group_name = ?1 ORDER BY message_id",
            )
            .bind(group)
            .fetch(pool)
            .map(|row| row.map(marker).map_err(db))
            .boxed(),
            #[cfg(feature = "mysql")]
            Self::MySql(pool) => sqlx::query_as(
                "SELECT message_id, done, dead, \
                        TIMESTAMPDIFF(MICROSECOND, '1970-01-01', done_at) DIV 1000 \
                 FROM waybill_inbox WHERE group_name = ? ORDER BY message_id",
            )
            .bind(group)
            .fetch(pool)
            .map(|row| row.map(marker).map_err(db))
            .boxed(),
        }
    }
}
