//! The idempotency store of a batch-handling processor: the claims and completions its message
//! tasks ask for at the same moment go to the store together
//! ([`IdempotencyStore::claim_many`], [`IdempotencyStore::complete_many`]), one round trip for
//! a batch where each message would make its own.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::coalescer::Coalescer;
use crate::idempotency::{Claim, ClaimToken, Completion, IdempotencyStore, StoreError};
use crate::message_id::MessageId;

/// Store rounds running at once: a connection pool usually has a few more connections.
const ROUNDS: usize = 4;

/// Wraps the processor's store; `group` and `lease` are the processor's, fixed.
pub(crate) struct CoalescedStore {
    inner: Arc<dyn IdempotencyStore>,
    group: Arc<str>,
    lease: Duration,
    claims: Coalescer<MessageId, Result<Claim, StoreError>>,
    completions: Coalescer<(MessageId, ClaimToken, Completion), Result<(), StoreError>>,
}

impl CoalescedStore {
    /// Gathers at most `max` claims or completions per round.
    pub fn spawn(
        inner: Arc<dyn IdempotencyStore>,
        group: Arc<str>,
        lease: Duration,
        max: usize,
    ) -> Self {
        let claims = {
            let (inner, group) = (Arc::clone(&inner), Arc::clone(&group));
            Coalescer::spawn(max, Duration::ZERO, ROUNDS, move |ids: Vec<MessageId>| {
                let (inner, group) = (Arc::clone(&inner), Arc::clone(&group));
                async move { inner.claim_many(&group, &ids, lease).await }
            })
        };
        let completions = {
            let (inner, group) = (Arc::clone(&inner), Arc::clone(&group));
            Coalescer::spawn(max, Duration::ZERO, ROUNDS, move |outcomes: Vec<_>| {
                let (inner, group) = (Arc::clone(&inner), Arc::clone(&group));
                async move { inner.complete_many(&group, &outcomes).await }
            })
        };
        Self {
            inner,
            group,
            lease,
            claims,
            completions,
        }
    }

    /// Whether a call is for the processor's own group and lease (the only ones it makes).
    fn gathers(&self, group: &str) -> bool {
        *self.group == *group
    }
}

fn unanswered(operation: &'static str) -> StoreError {
    StoreError::new(operation, "the store's round ended without an answer")
}

#[async_trait]
impl IdempotencyStore for CoalescedStore {
    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        if !self.gathers(group) || lease != self.lease {
            return self.inner.claim(group, id, lease).await;
        }
        self.claims
            .call(id)
            .await
            .unwrap_or_else(|| Err(unanswered("claim")))
    }

    async fn renew(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.inner.renew(group, id, token, lease).await
    }

    async fn complete(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        completion: Completion,
    ) -> Result<(), StoreError> {
        if !self.gathers(group) {
            return self.inner.complete(group, id, token, completion).await;
        }
        self.completions
            .call((id, token, completion))
            .await
            .unwrap_or_else(|| Err(unanswered("complete")))
    }

    async fn release(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
    ) -> Result<(), StoreError> {
        self.inner.release(group, id, token).await
    }

    async fn reopen(&self, group: &str, id: MessageId) -> Result<bool, StoreError> {
        self.inner.reopen(group, id).await
    }

    fn retention(&self) -> Option<Duration> {
        self.inner.retention()
    }
}
