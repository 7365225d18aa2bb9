//! Inspecting the outbox: backlog per topic, dead rows, replay and purge.

use std::sync::Arc;
use std::time::Duration;

use waybill_core::MessageId;

use crate::error::OutboxError;
use crate::store::InspectStore;

/// Pending and dead rows of one topic.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicBacklog {
    /// The topic.
    pub topic: String,
    /// Rows waiting to be relayed (including parked ones).
    pub pending: i64,
    /// Age of the oldest pending row in seconds (0 when none).
    pub oldest_age_seconds: f64,
    /// Rows marked dead.
    pub dead: i64,
}

/// The outbox backlog summed over topics, for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backlog {
    /// Rows waiting to be relayed (not dead).
    pub pending: i64,
    /// Age of the oldest waiting row, in seconds (0 when none).
    pub oldest_age_seconds: f64,
    /// Rows marked dead.
    pub dead: i64,
}

impl Backlog {
    /// Sums per-topic figures.
    pub fn total(topics: &[TopicBacklog]) -> Self {
        topics.iter().fold(Self::default(), |sum, t| Self {
            pending: sum.pending + t.pending,
            oldest_age_seconds: sum.oldest_age_seconds.max(t.oldest_age_seconds),
            dead: sum.dead + t.dead,
        })
    }
}

/// A row the relay gave up on.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadRow {
    /// Position in the outbox (commit order).
    pub seq: i64,
    /// The message id, as consumers see it (on SQLite, the nil id when another writer
    /// stored something that is not a UUID).
    pub message_id: MessageId,
    /// Destination topic.
    pub topic: String,
    /// Message key, if any.
    pub key: Option<String>,
    /// Publish attempts made.
    pub attempts: i32,
    /// The last publish error, or, for a row quarantined because it does not decode into a
    /// message, the decode error.
    pub last_error: Option<String>,
    /// How long ago it was marked dead, in seconds.
    pub dead_for_seconds: f64,
}

/// Which dead rows an inspection or a change applies to; the default matches all of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeadFilter {
    /// Only this topic.
    pub topic: Option<String>,
    /// Only these messages (every message when empty).
    pub ids: Vec<MessageId>,
    /// Only rows dead for longer than this.
    pub older_than: Option<Duration>,
}

impl DeadFilter {
    /// Every dead row.
    pub fn all() -> Self {
        Self::default()
    }

    /// Dead rows of `topic`.
    pub fn topic(topic: impl Into<String>) -> Self {
        Self {
            topic: Some(topic.into()),
            ..Self::default()
        }
    }

    /// The dead rows of these messages.
    pub fn ids(ids: impl IntoIterator<Item = MessageId>) -> Self {
        Self {
            ids: ids.into_iter().collect(),
            ..Self::default()
        }
    }

    /// The ids as UUIDs, for binding.
    pub(crate) fn uuids(&self) -> Vec<uuid::Uuid> {
        self.ids.iter().map(|id| *id.as_uuid()).collect()
    }

    /// `older_than` in seconds (0 when unset).
    pub(crate) fn older_than_secs(&self) -> f64 {
        self.older_than.map_or(0.0, |d| d.as_secs_f64())
    }
}

/// Looks into the outbox of one database: backlog per topic, dead rows, replay and purge.
///
/// Replaying a dead row makes it pending again with a fresh attempt count; it is then
/// published after the rows of its key that already went out, so consumers see it late.
#[derive(Clone)]
pub struct OutboxInspector {
    store: Arc<dyn InspectStore>,
}

impl OutboxInspector {
    pub(crate) fn new(store: Arc<dyn InspectStore>) -> Self {
        Self { store }
    }

    #[cfg(feature = "postgres")]
    /// An inspector over a PostgreSQL database.
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        Self::new(Arc::new(crate::postgres::PgStore::new(pool)))
    }

    #[cfg(feature = "sqlite")]
    /// An inspector over a SQLite database.
    pub fn sqlite(pool: sqlx::SqlitePool) -> Self {
        Self::new(Arc::new(crate::sqlite::SqliteStore::new(pool)))
    }

    #[cfg(feature = "mysql")]
    /// An inspector over a MySQL or MariaDB database.
    pub fn mysql(pool: sqlx::MySqlPool) -> Self {
        Self::new(Arc::new(crate::mysql::MySqlStore::new(pool)))
    }

    /// Pending and dead rows per topic, by topic name.
    ///
    /// # Errors
    /// A database error ([`OutboxError::NotMigrated`] without the tables).
    pub async fn topics(&self) -> Result<Vec<TopicBacklog>, OutboxError> {
        self.store.topics().await
    }

    /// The backlog summed over topics.
    ///
    /// # Errors
    /// As for [`OutboxInspector::topics`].
    pub async fn backlog(&self) -> Result<Backlog, OutboxError> {
        Ok(Backlog::total(&self.store.topics().await?))
    }

    /// Dead rows matching `filter`, in outbox order, at most `limit`.
    ///
    /// # Errors
    /// A database error.
    pub async fn dead(
        &self,
        filter: &DeadFilter,
        limit: usize,
    ) -> Result<Vec<DeadRow>, OutboxError> {
        self.store
            .dead(filter, i64::try_from(limit).unwrap_or(i64::MAX))
            .await
    }

    /// Makes matching dead rows pending again; returns how many.
    ///
    /// # Errors
    /// A database error; nothing is changed then.
    pub async fn replay(&self, filter: &DeadFilter) -> Result<u64, OutboxError> {
        self.store.replay(filter).await
    }

    /// Deletes matching dead rows; returns how many.
    ///
    /// # Errors
    /// A database error; nothing is deleted then.
    pub async fn purge(&self, filter: &DeadFilter) -> Result<u64, OutboxError> {
        self.store.purge(filter).await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.store.ping().await
    }
}
