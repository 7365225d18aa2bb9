//! The SQL idempotency store on MySQL and MariaDB (the inbox table).

use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Executor as _, MySql, MySqlPool, Transaction};
use waybill_core::{
    Claim, ClaimToken, Completion, IdempotencyStore, IncomingMessage, MessageId, StoreError,
};

use super::store::micros;
use crate::error::{classify, OutboxError};
use crate::inbox_purger::InboxPurger;

/// Records the outcome (dead-lettered or not) of a claim, kept for the retention: inserts the
/// finished entry, or finishes the existing one only when it carries the same token. Binds:
/// group, id, dead, retention (µs), token. Whether it was recorded is read back with
/// [`RECORDED`]: the affected-rows count cannot tell a repeated completion from a refused one.
const FINISH: &str = "INSERT INTO waybill_inbox \
       (group_name, message_id, done, dead, expires_at, token, done_at) \
     VALUES (?, ?, TRUE, ?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?, UTC_TIMESTAMP(6)) \
     ON DUPLICATE KEY UPDATE \
       done_at = IF(token <=> VALUES(token), VALUES(done_at), done_at), \
       done = IF(token <=> VALUES(token), TRUE, done), \
       dead = IF(token <=> VALUES(token), VALUES(dead), dead), \
       expires_at = IF(token <=> VALUES(token), VALUES(expires_at), expires_at)";

/// Whether the entry of group, id is finished under token; a locking read, so it sees the
/// latest committed state and this transaction's own change.
const RECORDED: &str = "SELECT CAST(COUNT(*) AS SIGNED) FROM waybill_inbox \
     WHERE group_name = ? AND message_id = ? AND token = ? AND done FOR UPDATE";

/// An [`IdempotencyStore`] in the `waybill_inbox` table of a MySQL or MariaDB database,
/// shared by every consumer instance that uses the same database.
///
/// Like [`crate::PgIdempotencyStore`], every claim stores a new fencing token; renewing,
/// completing and releasing act only for the current token, so a consumer whose lease lapsed
/// while another took the message over can never record a second effect. Its transactional
/// mode, [`MySqlIdempotencyStore::mark_done_in`], writes the processed marker in the
/// handler's own transaction, so the business effect and the marker commit or roll back
/// together. Times are the server's (`UTC_TIMESTAMP(6)`), so consumers' clocks do not matter.
///
/// It is also the group's [`KeyHoldStore`](waybill_core::KeyHoldStore) for key-holding dead
/// letters ([`DeadLetterMode::HoldKey`](waybill_core::DeadLetterMode::HoldKey)): held keys
/// live in the `waybill_key_hold` table of the same database.
#[derive(Clone, Debug)]
pub struct MySqlIdempotencyStore {
    pool: MySqlPool,
    retention: Duration,
}

pub(super) fn store_error(operation: &'static str, error: sqlx::Error) -> StoreError {
    let error = classify(error, None);
    StoreError::new(operation, error.to_string()).with_source(error)
}

impl MySqlIdempotencyStore {
    /// The pool it runs on.
    pub(super) fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// A store over `pool` that remembers handled messages for `retention`.
    ///
    /// The retention must exceed how late a duplicate can arrive (broker redelivery horizon,
    /// outbox relay retries); a warning is logged when it is under one day.
    pub fn new(pool: MySqlPool, retention: Duration) -> Self {
        crate::inbox_retention::warn_if_short(retention);
        Self { pool, retention }
    }

    /// Writes the processed marker for `message` in `tx` (the handler's transaction), for the
    /// claim the Processor holds on it ([`IncomingMessage::claim`]).
    ///
    /// Call it from the handler before committing the business change; the runtime's own
    /// completion afterwards then finds the marker in place. The marker row stays locked by
    /// `tx` until it ends, so keep the transaction short after this call.
    ///
    /// ```no_run
    /// # use waybill_core::IncomingMessage;
    /// # async fn handle(pool: sqlx::MySqlPool, store: waybill_outbox::MySqlIdempotencyStore, m: IncomingMessage)
    /// #     -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("UPDATE accounts SET paid = TRUE WHERE order_id = ?")
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
    /// over. MySQL has no way to doom a transaction, so the store rolls `tx` back itself and
    /// leaves it in an empty `READ ONLY` transaction: the effect is gone, a later write in
    /// `tx` fails, and a COMMIT commits nothing — the effect is not applied twice even when
    /// the caller commits anyway. [`OutboxError::NotClaimed`] when the message carries no
    /// claim (nothing written). Any other database error: roll the transaction back.
    pub async fn mark_done_in(
        &self,
        tx: &mut Transaction<'_, MySql>,
        message: &IncomingMessage,
    ) -> Result<(), OutboxError> {
        let id = message.message().id();
        let claim = message.claim().ok_or(OutboxError::NotClaimed(id))?;
        let recorded = finish(tx, claim.group(), id, claim.token(), false, self.retention)
            .await
            .map_err(|e| classify(e, None))?;
        if recorded {
            return Ok(());
        }
        doom(tx).await;
        Err(OutboxError::ClaimLost(id))
    }

    /// Deletes lapsed leases and markers past their retention; returns how many.
    ///
    /// # Errors
    /// A database error.
    pub async fn purge_expired(&self) -> Result<u64, OutboxError> {
        let done = sqlx::query("DELETE FROM waybill_inbox WHERE expires_at < UTC_TIMESTAMP(6)")
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
    /// # async fn run(store: waybill_outbox::MySqlIdempotencyStore) {
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

/// Undoes the effect written in `tx` and leaves it in an empty `READ ONLY` transaction, so
/// that neither a COMMIT nor further statements issued after a refused marker can apply it.
///
/// Both statements go over the text protocol: MySQL refuses `ROLLBACK` and
/// `START TRANSACTION` as prepared statements (error 1295, "not supported in the prepared
/// statement protocol"), which MariaDB accepts — sent as prepared statements they failed on
/// MySQL and left the effect in a transaction the caller could still commit. A failure here
/// (the connection broke, which rolls the transaction back on the server) is logged.
async fn doom(tx: &mut Transaction<'_, MySql>) {
    for statement in ["ROLLBACK", "START TRANSACTION READ ONLY"] {
        // A bare `&str` has no arguments, so sqlx sends it over the text protocol.
        if let Err(e) = (&mut **tx).execute(statement).await {
            tracing::error!(
                statement,
                error = %e,
                "could not doom the transaction of a refused inbox marker: roll it back, do \
                 not commit it"
            );
            return;
        }
    }
}

/// Runs [`FINISH`] then [`RECORDED`] on `conn`; whether the outcome is recorded for `token`.
async fn finish(
    conn: &mut sqlx::MySqlConnection,
    group: &str,
    id: MessageId,
    token: ClaimToken,
    dead: bool,
    retention: Duration,
) -> Result<bool, sqlx::Error> {
    sqlx::query(FINISH)
        .bind(group)
        .bind(id.as_uuid())
        .bind(dead)
        .bind(micros(retention))
        .bind(token.as_uuid())
        .execute(&mut *conn)
        .await?;
    let recorded: i64 = sqlx::query_scalar(RECORDED)
        .bind(group)
        .bind(id.as_uuid())
        .bind(token.as_uuid())
        .fetch_one(&mut *conn)
        .await?;
    Ok(recorded > 0)
}

#[async_trait]
impl IdempotencyStore for MySqlIdempotencyStore {
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
        // `expires_at` is assigned last: the conditions before it read its old value.
        sqlx::query(
            "INSERT INTO waybill_inbox (group_name, message_id, done, dead, expires_at, token) \
             VALUES (?, ?, FALSE, FALSE, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, ?) \
             ON DUPLICATE KEY UPDATE \
               done = IF(expires_at < UTC_TIMESTAMP(6), FALSE, done), \
               dead = IF(expires_at < UTC_TIMESTAMP(6), FALSE, dead), \
               token = IF(expires_at < UTC_TIMESTAMP(6), VALUES(token), token), \
               expires_at = IF(expires_at < UTC_TIMESTAMP(6), VALUES(expires_at), expires_at)",
        )
        .bind(group)
        .bind(id.as_uuid())
        .bind(micros(lease))
        .bind(token.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("claim", e))?;
        let row: Option<(bool, bool, i64, i64)> = sqlx::query_as(
            "SELECT done, dead, CAST(COALESCE(token = ?, 0) AS SIGNED), \
               GREATEST(TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), expires_at), 0) \
             FROM waybill_inbox WHERE group_name = ? AND message_id = ?",
        )
        .bind(token.as_uuid())
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
            Some((_, _, 1, _)) => Claim::Acquired(token),
            Some((true, true, _, _)) => Claim::DeadLettered,
            Some((true, false, _, _)) => Claim::AlreadyDone,
            Some((false, _, _, left)) => Claim::InFlight {
                lease_remaining: Duration::from_micros(u64::try_from(left).unwrap_or(0)),
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
        // A finished entry of the same token (a transactional marker just committed) counts
        // as renewed and keeps its retention. The affected-rows count is of matched rows
        // (sqlx asks for CLIENT_FOUND_ROWS).
        let renewed = sqlx::query(
            "UPDATE waybill_inbox SET expires_at = IF(done, expires_at, \
               UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND) \
             WHERE group_name = ? AND message_id = ? AND token = ?",
        )
        .bind(micros(lease))
        .bind(group)
        .bind(id.as_uuid())
        .bind(token.as_uuid())
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
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| store_error("complete", e))?;
        let recorded = finish(
            &mut tx,
            group,
            id,
            token,
            completion == Completion::DeadLettered,
            self.retention,
        )
        .await
        .map_err(|e| store_error("complete", e))?;
        tx.commit().await.map_err(|e| store_error("complete", e))?;
        if recorded {
            Ok(())
        } else {
            Err(StoreError::not_holder("complete"))
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
             WHERE group_name = ? AND message_id = ? AND token = ? AND NOT done",
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
             WHERE group_name = ? AND message_id = ? AND done AND dead",
        )
        .bind(group)
        .bind(id.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(|e| store_error("reopen", e))?;
        Ok(reopened.rows_affected() > 0)
    }
}
