//! The SQL idempotency store on SQLite (the inbox table).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Sqlite, SqlitePool, Transaction};
use waybill_core::{
    Claim, ClaimToken, Completion, IdempotencyStore, IncomingMessage, MessageId, StoreError,
};

use crate::error::{classify, OutboxError};
use crate::inbox_purger::InboxPurger;
use crate::row::now_ms;

/// Records the outcome (`?5`: dead-lettered) of the claim `?4` on `?2` for group `?1` until
/// `?3` (Unix ms); returns a row only when `?4` is the current holder's token (or the lapsed
/// entry is gone and nobody else claimed it).
const FINISH: &str = "INSERT INTO waybill_inbox \
       (group_name, message_id, done, dead, expires_at_ms, token, done_at_ms) \
     VALUES (?1, ?2, 1, ?5, ?3, ?4, CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)) \
     ON CONFLICT (group_name, message_id) DO UPDATE \
       SET done = 1, dead = excluded.dead, expires_at_ms = excluded.expires_at_ms, \
         done_at_ms = excluded.done_at_ms \
       WHERE waybill_inbox.token IS excluded.token \
     RETURNING 1";

/// An [`IdempotencyStore`] in the `waybill_inbox` table of a SQLite database, shared by every
/// consumer that opens the same file.
///
/// Like [`crate::PgIdempotencyStore`] its claims carry fencing tokens, and it has a
/// transactional mode: [`SqliteIdempotencyStore::mark_done_in`] writes the processed marker in
/// the handler's own transaction, so the business effect and the marker commit or roll back
/// together.
///
/// It is also the group's [`KeyHoldStore`](waybill_core::KeyHoldStore) for key-holding dead
/// letters ([`DeadLetterMode::HoldKey`](waybill_core::DeadLetterMode::HoldKey)): held keys
/// live in the `waybill_key_hold` table of the same database.
#[derive(Clone, Debug)]
pub struct SqliteIdempotencyStore {
    pool: SqlitePool,
    retention: Duration,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn store_error(operation: &'static str, error: sqlx::Error) -> StoreError {
    let error = classify(error, None);
    StoreError::new(operation, error.to_string()).with_source(error)
}

impl SqliteIdempotencyStore {
    /// The pool it runs on.
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A store over `pool` that remembers handled messages for `retention`.
    ///
    /// The retention must exceed how late a duplicate can arrive (broker redelivery horizon,
    /// outbox relay retries); a warning is logged when it is under one day.
    pub fn new(pool: SqlitePool, retention: Duration) -> Self {
        crate::inbox_retention::warn_if_short(retention);
        Self { pool, retention }
    }

    /// Writes the processed marker for `message` in `tx` (the handler's transaction), for the
    /// claim the Processor holds on it ([`IncomingMessage::claim`]).
    ///
    /// # Errors
    /// [`OutboxError::ClaimLost`] when the claim lapsed and another consumer took the message
    /// over, [`OutboxError::NotClaimed`] when the message carries no claim, or a database
    /// error. The caller must then roll the transaction back (dropping it does, which `?`
    /// gives): SQLite cannot abort a transaction on the caller's behalf.
    pub async fn mark_done_in(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        message: &IncomingMessage,
    ) -> Result<(), OutboxError> {
        let id = message.message().id();
        let claim = message.claim().ok_or(OutboxError::NotClaimed(id))?;
        let recorded = sqlx::query(FINISH)
            .bind(claim.group())
            .bind(id.as_uuid())
            .bind(now_ms().saturating_add(ms(self.retention)))
            .bind(claim.token().as_uuid())
            .bind(false)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| classify(e, None))?;
        match recorded {
            Some(_) => Ok(()),
            None => Err(OutboxError::ClaimLost(id)),
        }
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
    fn retention(&self) -> Option<Duration> {
        Some(self.retention)
    }

    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = now_ms();
        let token = ClaimToken::new();
        // Take the row when it is new, or a lapsed lease, or an entry past its retention.
        let taken = sqlx::query(
            "INSERT INTO waybill_inbox \
               (group_name, message_id, done, dead, expires_at_ms, token) \
             VALUES (?1, ?2, 0, 0, ?3, ?5) \
             ON CONFLICT (group_name, message_id) DO UPDATE \
               SET done = 0, dead = 0, expires_at_ms = excluded.expires_at_ms, \
                   token = excluded.token \
               WHERE waybill_inbox.expires_at_ms < ?4 \
             RETURNING 1",
        )
        .bind(group)
        .bind(id.as_uuid())
        .bind(now.saturating_add(ms(lease)))
        .bind(now)
        .bind(token.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| store_error("claim", e))?;
        if taken.is_some() {
            return Ok(Claim::Acquired(token));
        }
        let row: Option<(bool, bool, i64)> = sqlx::query_as(
            "SELECT done, dead, expires_at_ms FROM waybill_inbox \
             WHERE group_name = ?1 AND message_id = ?2",
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
            Some((true, true, _)) => Claim::DeadLettered,
            Some((true, false, _)) => Claim::AlreadyDone,
            Some((false, _, expires)) => Claim::InFlight {
                lease_remaining: Duration::from_millis(
                    u64::try_from(expires.saturating_sub(now_ms())).unwrap_or(0),
                ),
            },
        })
    }

    async fn renew(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        // A finished entry of the same token counts as renewed and keeps its retention.
        let renewed = sqlx::query(
            "UPDATE waybill_inbox \
             SET expires_at_ms = CASE WHEN done = 1 THEN expires_at_ms ELSE ?4 END \
             WHERE group_name = ?1 AND message_id = ?2 AND token = ?3",
        )
        .bind(group)
        .bind(id.as_uuid())
        .bind(token.as_uuid())
        .bind(now_ms().saturating_add(ms(lease)))
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
            .bind(now_ms().saturating_add(ms(self.retention)))
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
             WHERE group_name = ?1 AND message_id = ?2 AND token = ?3 AND done = 0",
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
             WHERE group_name = ?1 AND message_id = ?2 AND done = 1 AND dead = 1",
        )
        .bind(group)
        .bind(id.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("reopen", e))?;
        Ok(reopened.rows_affected() > 0)
    }
}
