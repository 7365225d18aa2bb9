//! The SQL idempotency store on PostgreSQL (the inbox table).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgPool, Postgres, Row, Transaction};
use waybill_core::{
    Claim, ClaimToken, Completion, IdempotencyStore, IncomingMessage, MessageId, StoreError,
};

use crate::error::{classify, OutboxError};
use crate::inbox_purger::InboxPurger;

/// Records the outcome (`$5`: dead-lettered) of the claim `$4` on `$2` for group `$1`, kept for
/// `$3` seconds; returns a row only when `$4` is the current holder's token (or the lapsed
/// entry is gone and nobody else claimed it).
const FINISH: &str = "INSERT INTO waybill_inbox \
       (group_name, message_id, done, dead, expires_at, token, done_at) \
     VALUES ($1, $2, true, $5, now() + make_interval(secs => $3), $4, now()) \
     ON CONFLICT (group_name, message_id) DO UPDATE \
       SET done = true, dead = excluded.dead, expires_at = excluded.expires_at, \
         done_at = excluded.done_at \
       WHERE waybill_inbox.token IS NOT DISTINCT FROM excluded.token \
     RETURNING 1";

/// An [`IdempotencyStore`] in the `waybill_inbox` table, shared by every consumer instance
/// that uses the same database.
///
/// Every claim stores a new fencing token; renewing, completing and releasing act only for
/// the current token, so a consumer whose lease lapsed while another took the message over
/// can never record a second effect. Besides the claim protocol it offers a transactional
/// mode: [`PgIdempotencyStore::mark_done_in`] writes the processed marker in the handler's own
/// transaction, so the business effect and the marker commit or roll back together, and a
/// redelivery after a crash at any point can never apply the effect twice.
///
/// It is also the group's [`KeyHoldStore`](waybill_core::KeyHoldStore) for key-holding dead
/// letters ([`DeadLetterMode::HoldKey`](waybill_core::DeadLetterMode::HoldKey)): held keys
/// live in the `waybill_key_hold` table of the same database.
#[derive(Clone, Debug)]
pub struct PgIdempotencyStore {
    pool: PgPool,
    retention: Duration,
}

impl PgIdempotencyStore {
    /// The pool it runs on.
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A store over `pool` that remembers handled messages for `retention`.
    ///
    /// The retention must exceed how late a duplicate can arrive (broker redelivery horizon,
    /// outbox relay retries); a warning is logged when it is under one day.
    pub fn new(pool: PgPool, retention: Duration) -> Self {
        crate::inbox_retention::warn_if_short(retention);
        Self { pool, retention }
    }

    /// Writes the processed marker for `message` in `tx` (the handler's transaction), for the
    /// claim the Processor holds on it ([`IncomingMessage::claim`]).
    ///
    /// Call it from the handler before committing the business change; the runtime's own
    /// completion afterwards then finds the marker in place.
    ///
    /// ```no_run
    /// # use waybill_core::IncomingMessage;
    /// # async fn handle(pool: sqlx::PgPool, store: waybill_outbox::PgIdempotencyStore, m: IncomingMessage)
    /// #     -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("UPDATE accounts SET paid = true WHERE order_id = $1")
    ///     .bind(m.message().key())
    ///     .execute(&mut *tx)
    ///     .await?;
    /// store.mark_done_in(&mut tx, &m).await?; // refused if another consumer took the message over
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`OutboxError::ClaimLost`] when the claim lapsed and another consumer took the message
    /// over: the transaction is aborted (a COMMIT rolls it back), so the effect is not applied
    /// twice. [`OutboxError::NotClaimed`] when the message carries no claim. Any other database
    /// error; the transaction is then aborted too.
    pub async fn mark_done_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        message: &IncomingMessage,
    ) -> Result<(), OutboxError> {
        let id = message.message().id();
        let claim = message.claim().ok_or(OutboxError::NotClaimed(id))?;
        let recorded = sqlx::query(FINISH)
            .bind(claim.group())
            .bind(id.as_uuid())
            .bind(self.retention.as_secs_f64())
            .bind(claim.token().as_uuid())
            .bind(false)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| classify(e, None))?;
        if recorded.is_some() {
            return Ok(());
        }
        abort(tx).await;
        Err(OutboxError::ClaimLost(id))
    }

    /// Writes the processed markers of every message of `messages` (a
    /// [`BatchHandler`](waybill_core::BatchHandler)'s batch) in `tx`, in one statement, for
    /// the claims the Processor holds on them: [`mark_done_in`](Self::mark_done_in) for a
    /// batch.
    ///
    /// ```no_run
    /// # use waybill_core::IncomingMessage;
    /// # async fn handle(pool: sqlx::PgPool, store: waybill_outbox::PgIdempotencyStore, batch: Vec<IncomingMessage>)
    /// #     -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mut tx = pool.begin().await?;
    /// for m in &batch {
    ///     sqlx::query("UPDATE accounts SET paid = true WHERE order_id = $1")
    ///         .bind(m.message().key())
    ///         .execute(&mut *tx)
    ///         .await?;
    /// }
    /// store.mark_all_done_in(&mut tx, &batch).await?;
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`OutboxError::ClaimLost`] naming one message whose claim lapsed and was taken over by
    /// another consumer: the transaction is aborted (a COMMIT rolls it back), so no effect of
    /// the batch is applied, and the batch handler fails as a whole (the Processor then
    /// handles each message alone). [`OutboxError::NotClaimed`] when a message carries no
    /// claim (nothing is written). Any other database error; the transaction is then aborted.
    pub async fn mark_all_done_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        messages: &[IncomingMessage],
    ) -> Result<(), OutboxError> {
        let mut claims = Vec::with_capacity(messages.len());
        for message in messages {
            let id = message.message().id();
            claims.push(message.claim().ok_or(OutboxError::NotClaimed(id))?);
        }
        let mut groups: Vec<&str> = claims.iter().map(|c| c.group()).collect();
        groups.sort_unstable();
        groups.dedup();
        for group in groups {
            let outcomes = claims
                .iter()
                .filter(|c| c.group() == group)
                .map(|c| (c.id(), c.token(), Completion::Handled));
            let recorded =
                super::inbox_batch::finish_many(&mut **tx, group, self.retention, outcomes.clone())
                    .await
                    .map_err(|e| classify(e, None))?;
            if let Some((lost, _, _)) = outcomes
                .clone()
                .find(|(id, _, _)| !recorded.contains(id.as_uuid()))
            {
                abort(tx).await;
                return Err(OutboxError::ClaimLost(lost));
            }
        }
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

/// Aborts `tx`, so that even a COMMIT issued after a refused marker rolls the effect back.
async fn abort(tx: &mut Transaction<'_, Postgres>) {
    let _ = sqlx::query(
        "DO $$ BEGIN RAISE EXCEPTION 'waybill: the inbox claim was taken over by another \
         consumer; this transaction is rolled back'; END $$",
    )
    .execute(&mut **tx)
    .await;
}

pub(super) fn store_error(operation: &'static str, error: sqlx::Error) -> StoreError {
    let error = classify(error, None);
    StoreError::new(operation, error.to_string()).with_source(error)
}

#[async_trait]
impl IdempotencyStore for PgIdempotencyStore {
    fn retention(&self) -> Option<Duration> {
        Some(self.retention)
    }

    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let token = ClaimToken::new();
        // Take the row when it is new, or a lapsed lease, or an entry past its retention.
        let taken = sqlx::query(
            "INSERT INTO waybill_inbox (group_name, message_id, done, dead, expires_at, token) \
             VALUES ($1, $2, false, false, now() + make_interval(secs => $3), $4) \
             ON CONFLICT (group_name, message_id) DO UPDATE \
               SET done = false, dead = false, expires_at = excluded.expires_at, \
                   token = excluded.token \
               WHERE waybill_inbox.expires_at < now() \
             RETURNING 1",
        )
        .bind(group)
        .bind(id.as_uuid())
        .bind(lease.as_secs_f64())
        .bind(token.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error("claim", e))?;
        if taken.is_some() {
            return Ok(Claim::Acquired(token));
        }
        let row = sqlx::query(
            "SELECT done, dead, \
               GREATEST(EXTRACT(EPOCH FROM expires_at - now()), 0)::float8 AS left_s \
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
            Some(row) if row.get::<bool, _>("done") && row.get::<bool, _>("dead") => {
                Claim::DeadLettered
            }
            Some(row) if row.get::<bool, _>("done") => Claim::AlreadyDone,
            Some(row) => Claim::InFlight {
                lease_remaining: Duration::from_secs_f64(row.get::<f64, _>("left_s")),
            },
        })
    }

    fn answers_many_at_once(&self) -> bool {
        true
    }

    async fn claim_many(
        &self,
        group: &str,
        ids: &[MessageId],
        lease: Duration,
    ) -> Vec<Result<Claim, StoreError>> {
        super::inbox_batch::claim_many(&self.pool, group, ids, lease).await
    }

    async fn complete_many(
        &self,
        group: &str,
        outcomes: &[(MessageId, ClaimToken, Completion)],
    ) -> Vec<Result<(), StoreError>> {
        super::inbox_batch::complete_many(&self.pool, group, self.retention, outcomes).await
    }

    async fn renew(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let renewed = sqlx::query(
            // A finished entry of the same token (a transactional marker just committed)
            // counts as renewed and keeps its retention.
            "UPDATE waybill_inbox SET expires_at = CASE WHEN done THEN expires_at \
               ELSE now() + make_interval(secs => $4) END \
             WHERE group_name = $1 AND message_id = $2 AND token = $3",
        )
        .bind(group)
        .bind(id.as_uuid())
        .bind(token.as_uuid())
        .bind(lease.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("renew", e))?;
        if renewed.rows_affected() == 0 {
            return Err(StoreError::not_holder("renew"));
        }
        Ok(())
    }

    async fn complete(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        completion: Completion,
    ) -> Result<(), StoreError> {
        let recorded = sqlx::query(FINISH)
            .bind(group)
            .bind(id.as_uuid())
            .bind(self.retention.as_secs_f64())
            .bind(token.as_uuid())
            .bind(completion == Completion::DeadLettered)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| store_error("complete", e))?;
        match recorded {
            Some(_) => Ok(()),
            None => Err(StoreError::not_holder("complete")),
        }
    }

    async fn release(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM waybill_inbox \
             WHERE group_name = $1 AND message_id = $2 AND token = $3 AND NOT done",
        )
        .bind(group)
        .bind(id.as_uuid())
        .bind(token.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("release", e))?;
        Ok(())
    }

    async fn reopen(&self, group: &str, id: MessageId) -> Result<bool, StoreError> {
        let reopened = sqlx::query(
            "DELETE FROM waybill_inbox \
             WHERE group_name = $1 AND message_id = $2 AND done AND dead",
        )
        .bind(group)
        .bind(id.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("reopen", e))?;
        Ok(reopened.rows_affected() > 0)
    }
}
