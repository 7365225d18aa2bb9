//! The SQL idempotency store on SQLite (the inbox table).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Sqlite, SqlitePool, Transaction};
use waybill_core::{Claim, IdempotencyStore, MessageId, StoreError};

use crate::error::{classify, OutboxError};
use crate::inbox_purger::InboxPurger;
use crate::row::now_ms;

/// Records `?2` as done for group `?1` until `?3` (Unix ms).
const MARK_DONE: &str = "INSERT INTO waybill_inbox (group_name, message_id, done, expires_at_ms) \
     VALUES (?1, ?2, 1, ?3) \
     ON CONFLICT (group_name, message_id) \
     DO UPDATE SET done = 1, expires_at_ms = excluded.expires_at_ms";

/// An [`IdempotencyStore`] in the `waybill_inbox` table of a SQLite database, shared by every
/// consumer that opens the same file.
///
/// Like [`crate::PgIdempotencyStore`] it has a transactional mode:
/// [`SqliteIdempotencyStore::mark_done_in`] writes the processed marker in the handler's own
/// transaction, so the business effect and the marker commit or roll back together.
#[derive(Clone, Debug)]
pub struct SqliteIdempotencyStore {
    pool: SqlitePool,
    retention: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn store_error(operation: &'static str, error: sqlx::Error) -> StoreError {
    let error = classify(error, None);
    StoreError::new(operation, error.to_string()).with_source(error)
}

impl SqliteIdempotencyStore {
    /// A store over `pool` that remembers handled messages for `retention`.
    ///
    /// The retention must exceed how late a duplicate can arrive (broker redelivery horizon,
    /// outbox relay retries); a warning is logged when it is under one day.
    pub fn new(pool: SqlitePool, retention: Duration) -> Self {
        crate::inbox_retention::warn_if_short(retention);
        Self { pool, retention }
    }

    /// Writes the processed marker for `id` in `tx` (the handler's transaction).
    ///
    /// # Errors
    /// A database error; the caller should roll the transaction back.
    pub async fn mark_done_in(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        group: &str,
        id: MessageId,
    ) -> Result<(), OutboxError> {
        sqlx::query(MARK_DONE)
            .bind(group)
            .bind(id.as_uuid())
            .bind(now_ms().saturating_add(ms(self.retention)))
            .execute(&mut **tx)
            .await
            .map_err(|e| classify(e, None))?;
        Ok(())
    }

    /// Deletes lapsed leases and markers past their retention; returns how many.
    ///
    /// # Errors
    /// A database error.
    pub async fn purge_expired(&self) -> Result<u64, OutboxError> {
        let done = sqlx::query("DELETE FROM waybill_inbox WHERE expires_at_ms < ?1")
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(|e| classify(e, None))?;
        Ok(done.rows_affected())
    }

    /// Starts purging expired rows now and then every `every` (at least 10 ms) in the
    /// background, so the inbox does not grow without bound; keep the returned
    /// [`InboxPurger`] for as long as it should run.
    ///
    /// ```no_run
    /// # async fn run(store: waybill_outbox::SqliteIdempotencyStore) {
    /// let purger = store.purge_every(std::time::Duration::from_secs(600));
    /// // ... consume ...
    /// purger.stop();
    /// # }
    /// ```
    ///
    /// # Panics
    /// When called outside a tokio runtime.
    pub fn purge_every(&self, every: Duration) -> InboxPurger {
        let store = self.clone();
        crate::inbox_purger::spawn(every, move || {
            let store = store.clone();
            async move { store.purge_expired().await }
        })
    }
}

#[async_trait]
impl IdempotencyStore for SqliteIdempotencyStore {
    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = now_ms();
        // Take the row when it is new, or a lapsed lease, or a completion past its retention.
        let taken = sqlx::query(
            "INSERT INTO waybill_inbox (group_name, message_id, done, expires_at_ms) \
             VALUES (?1, ?2, 0, ?3) \
             ON CONFLICT (group_name, message_id) DO UPDATE \
               SET done = 0, expires_at_ms = excluded.expires_at_ms \
               WHERE waybill_inbox.expires_at_ms < ?4 \
             RETURNING 1",
        )
        .bind(group)
        .bind(id.as_uuid())
        .bind(now.saturating_add(ms(lease)))
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error("claim", e))?;
        if taken.is_some() {
            return Ok(Claim::Acquired);
        }
        let row: Option<(bool, i64)> = sqlx::query_as(
            "SELECT done, expires_at_ms FROM waybill_inbox WHERE group_name = ?1 AND message_id = ?2",
        )
        .bind(group)
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error("claim", e))?;
        Ok(match row {
            None => Claim::InFlight {
                lease_remaining: Duration::ZERO,
            },
            Some((true, _)) => Claim::AlreadyDone,
            Some((false, expires)) => Claim::InFlight {
                lease_remaining: Duration::from_millis(
                    u64::try_from(expires.saturating_sub(now_ms())).unwrap_or(0),
                ),
            },
        })
    }

    async fn complete(&self, group: &str, id: MessageId) -> Result<(), StoreError> {
        sqlx::query(MARK_DONE)
            .bind(group)
            .bind(id.as_uuid())
            .bind(now_ms().saturating_add(ms(self.retention)))
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("complete", e))?;
        Ok(())
    }

    async fn release(&self, group: &str, id: MessageId) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM waybill_inbox WHERE group_name = ?1 AND message_id = ?2 AND done = 0",
        )
        .bind(group)
        .bind(id.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("release", e))?;
        Ok(())
    }
}
