//! The SQL idempotency store on PostgreSQL (the inbox table).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgPool, Postgres, Row, Transaction};
use waybill_core::{Claim, IdempotencyStore, MessageId, StoreError};

use crate::error::{classify, OutboxError};
use crate::inbox_purger::InboxPurger;

/// Records `$2` as done for group `$1`, kept for `$3` seconds.
const MARK_DONE: &str = "INSERT INTO waybill_inbox (group_name, message_id, done, expires_at) \
     VALUES ($1, $2, true, now() + make_interval(secs => $3)) \
     ON CONFLICT (group_name, message_id) \
     DO UPDATE SET done = true, expires_at = excluded.expires_at";

/// An [`IdempotencyStore`] in the `waybill_inbox` table, shared by every consumer instance
/// that uses the same database.
///
/// Besides the claim protocol it offers a transactional mode: [`PgIdempotencyStore::mark_done_in`]
/// writes the processed marker in the handler's own transaction, so the business effect and the
/// marker commit or roll back together, and a redelivery after a crash at any point can never
/// apply the effect twice.
#[derive(Clone, Debug)]
pub struct PgIdempotencyStore {
    pool: PgPool,
    retention: Duration,
}

impl PgIdempotencyStore {
    /// A store over `pool` that remembers handled messages for `retention`.
    ///
    /// The retention must exceed how late a duplicate can arrive (broker redelivery horizon,
    /// outbox relay retries); a warning is logged when it is under one day.
    pub fn new(pool: PgPool, retention: Duration) -> Self {
        crate::inbox_retention::warn_if_short(retention);
        Self { pool, retention }
    }

    /// Writes the processed marker for `id` in `tx` (the handler's transaction).
    ///
    /// Call it from the handler before committing the business change; the runtime's own
    /// `complete` afterwards is then a no-op.
    ///
    /// # Errors
    /// A database error; the caller's transaction is then aborted and must roll back.
    pub async fn mark_done_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        group: &str,
        id: MessageId,
    ) -> Result<(), OutboxError> {
        sqlx::query(MARK_DONE)
            .bind(group)
            .bind(id.as_uuid())
            .bind(self.retention.as_secs_f64())
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
        let done = sqlx::query("DELETE FROM waybill_inbox WHERE expires_at < now()")
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
    /// # async fn run(store: waybill_outbox::PgIdempotencyStore) {
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

fn store_error(operation: &'static str, error: sqlx::Error) -> StoreError {
    let error = classify(error, None);
    StoreError::new(operation, error.to_string()).with_source(error)
}

#[async_trait]
impl IdempotencyStore for PgIdempotencyStore {
    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        // Take the row when it is new, or a lapsed lease, or a completion past its retention.
        let taken = sqlx::query(
            "INSERT INTO waybill_inbox (group_name, message_id, done, expires_at) \
             VALUES ($1, $2, false, now() + make_interval(secs => $3)) \
             ON CONFLICT (group_name, message_id) DO UPDATE \
               SET done = false, expires_at = excluded.expires_at \
               WHERE waybill_inbox.expires_at < now() \
             RETURNING 1",
        )
        .bind(group)
        .bind(id.as_uuid())
        .bind(lease.as_secs_f64())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error("claim", e))?;
        if taken.is_some() {
            return Ok(Claim::Acquired);
        }
        let row = sqlx::query(
            "SELECT done, GREATEST(EXTRACT(EPOCH FROM expires_at - now()), 0)::float8 AS left_s \
             FROM waybill_inbox WHERE group_name = $1 AND message_id = $2",
        )
        .bind(group)
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error("claim", e))?;
        Ok(match row {
            // Released between the two statements: the caller claims again at once.
            None => Claim::InFlight {
                lease_remaining: Duration::ZERO,
            },
            Some(row) if row.get::<bool, _>("done") => Claim::AlreadyDone,
            Some(row) => Claim::InFlight {
                lease_remaining: Duration::from_secs_f64(row.get::<f64, _>("left_s")),
            },
        })
    }

    async fn complete(&self, group: &str, id: MessageId) -> Result<(), StoreError> {
        sqlx::query(MARK_DONE)
            .bind(group)
            .bind(id.as_uuid())
            .bind(self.retention.as_secs_f64())
            .execute(&self.pool)
            .await
            .map_err(|e| store_error("complete", e))?;
        Ok(())
    }

    async fn release(&self, group: &str, id: MessageId) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM waybill_inbox WHERE group_name = $1 AND message_id = $2 AND NOT done",
        )
        .bind(group)
        .bind(id.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("release", e))?;
        Ok(())
    }
}
