//! Redis in front of an authoritative store: duplicates answered fast, correctness kept in SQL.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::{info, warn};
use waybill_core::{Claim, ClaimToken, Completion, IdempotencyStore, MessageId, StoreError};

use crate::store::RedisIdempotencyStore;

/// An [`IdempotencyStore`] that answers duplicates from Redis and keeps the authoritative
/// claims and markers in another store, typically the SQL inbox (`PgIdempotencyStore`,
/// `SqliteIdempotencyStore` of `waybill-outbox`) whose transactional marker commits with the
/// handler's effect.
///
/// - `claim` first reads the message's marker in Redis: a message recorded as handled or
///   dead-lettered is answered from there without touching the database. Otherwise (and
///   whenever Redis fails) the authoritative store decides; its token is the claim's token,
///   so the SQL stores' `mark_done_in` works unchanged.
/// - `complete` records in the authoritative store, then caches the outcome in Redis.
/// - `renew` and `release` go to the authoritative store only.
/// - `reopen` deletes the Redis marker first and fails if it cannot, so a replayed message is
///   never skipped by a stale cached dead-letter mark.
///
/// Redis only ever says "done" after the authoritative store recorded it, and a marker
/// missing from Redis (restart, eviction, flush) only sends the question on to the
/// authoritative store: losing Redis costs speed, never correctness. Redis failures are
/// counted ([`LayeredStats`]) and logged once per outage.
pub struct LayeredIdempotencyStore {
    fast: RedisIdempotencyStore,
    authority: Arc<dyn IdempotencyStore>,
    counts: Counts,
    degraded: AtomicBool,
}

#[derive(Default)]
struct Counts {
    fast_answers: AtomicU64,
    authority_answers: AtomicU64,
    fast_failures: AtomicU64,
}

/// What the layered store has done since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayeredStats {
    /// Claims answered from Redis (duplicates of finished messages).
    pub fast_answers: u64,
    /// Claims the authoritative store answered (new messages, and anything Redis did not know).
    pub authority_answers: u64,
    /// Redis operations that failed; the authoritative store answered instead.
    pub fast_failures: u64,
}

impl fmt::Debug for LayeredIdempotencyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LayeredIdempotencyStore")
            .field("fast", &self.fast)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl LayeredIdempotencyStore {
    /// Redis `fast` in front of `authority`. Give `fast` the same retention as `authority`
    /// (or a shorter one); it may be made with [`RedisIdempotencyStore::connect_lazy`] so that
    /// consumers start while Redis is down.
    pub fn new(fast: RedisIdempotencyStore, authority: Arc<dyn IdempotencyStore>) -> Self {
        Self {
            fast,
            authority,
            counts: Counts::default(),
            degraded: AtomicBool::new(false),
        }
    }

    /// Counts since the store was made.
    pub fn stats(&self) -> LayeredStats {
        LayeredStats {
            fast_answers: self.counts.fast_answers.load(Relaxed),
            authority_answers: self.counts.authority_answers.load(Relaxed),
            fast_failures: self.counts.fast_failures.load(Relaxed),
        }
    }

    /// Notes a Redis result: logs the start and the end of an outage once each.
    fn note<T>(&self, result: Result<T, StoreError>) -> Option<T> {
        match result {
            Ok(value) => {
                if self.degraded.swap(false, Relaxed) {
                    info!(
                        redis = self.fast.config().address(),
                        "Redis answers again: duplicates are answered from Redis"
                    );
                }
                Some(value)
            }
            Err(error) => {
                self.counts.fast_failures.fetch_add(1, Relaxed);
                if !self.degraded.swap(true, Relaxed) {
                    warn!(
                        redis = self.fast.config().address(),
                        %error,
                        "Redis fast path failed: the authoritative store answers every claim \
                         until Redis is back (slower, still exact)"
                    );
                }
                None
            }
        }
    }
}

#[async_trait]
impl IdempotencyStore for LayeredIdempotencyStore {
    fn retention(&self) -> Option<Duration> {
        self.authority.retention()
    }

    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        match self.note(self.fast.recorded_outcome(group, id).await) {
            Some(Some(Completion::Handled)) => {
                self.counts.fast_answers.fetch_add(1, Relaxed);
                return Ok(Claim::AlreadyDone);
            }
            Some(Some(Completion::DeadLettered)) => {
                self.counts.fast_answers.fetch_add(1, Relaxed);
                return Ok(Claim::DeadLettered);
            }
            Some(None) | None => {}
        }
        let claim = self.authority.claim(group, id, lease).await?;
        self.counts.authority_answers.fetch_add(1, Relaxed);
        Ok(claim)
    }

    async fn renew(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.authority.renew(group, id, token, lease).await
    }

    async fn complete(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        completion: Completion,
    ) -> Result<(), StoreError> {
        self.authority
            .complete(group, id, token, completion)
            .await?;
        self.note(self.fast.record_outcome(group, id, token, completion).await);
        Ok(())
    }

    async fn release(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
    ) -> Result<(), StoreError> {
        self.authority.release(group, id, token).await
    }

    async fn reopen(&self, group: &str, id: MessageId) -> Result<bool, StoreError> {
        // Fail rather than leave a dead mark in Redis that would skip the replayed copy.
        if let Err(error) = self.fast.forget(group, id).await {
            self.note::<()>(Err(StoreError::new("reopen", error.to_string())));
            return Err(error);
        }
        self.authority.reopen(group, id).await
    }
}
