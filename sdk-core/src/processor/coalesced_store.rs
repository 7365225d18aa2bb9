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

/// Store rounds running at once: one is in flight while the next gathers. More rounds let
/// rounds of a single message take the store's connections (`waybill-bench inbox`, one run
/// each: 2,884 single-message msgs/s with four rounds, 3,601 with two).
const ROUNDS: usize = 2;

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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::handler::handler_fn;
    use crate::memory_broker::MemoryBroker;
    use crate::memory_idempotency::InMemoryIdempotencyStore;
    use crate::message::Message;
    use crate::publisher::Publisher;
    use crate::Processor;

    /// What a many-call of the recording store takes, as a database's round trip would.
    const ROUND_TRIP: Duration = Duration::from_millis(1);

    /// The in-memory store, saying it answers many at once or not, recording the sizes of
    /// the `claim_many` and `complete_many` calls it gets.
    struct Recording {
        inner: InMemoryIdempotencyStore,
        many: bool,
        calls: Mutex<Vec<usize>>,
    }

    #[async_trait]
    impl IdempotencyStore for Recording {
        fn answers_many_at_once(&self) -> bool {
            self.many
        }
        async fn claim(&self, g: &str, id: MessageId, l: Duration) -> Result<Claim, StoreError> {
            self.inner.claim(g, id, l).await
        }
        async fn claim_many(
            &self,
            g: &str,
            ids: &[MessageId],
            l: Duration,
        ) -> Vec<Result<Claim, StoreError>> {
            self.calls.lock().unwrap().push(ids.len());
            tokio::time::sleep(ROUND_TRIP).await;
            self.inner.claim_many(g, ids, l).await
        }
        async fn renew(
            &self,
            g: &str,
            id: MessageId,
            t: ClaimToken,
            l: Duration,
        ) -> Result<(), StoreError> {
            self.inner.renew(g, id, t, l).await
        }
        async fn complete(
            &self,
            g: &str,
            id: MessageId,
            t: ClaimToken,
            c: Completion,
        ) -> Result<(), StoreError> {
            self.inner.complete(g, id, t, c).await
        }
        async fn complete_many(
            &self,
            g: &str,
            outcomes: &[(MessageId, ClaimToken, Completion)],
        ) -> Vec<Result<(), StoreError>> {
            self.calls.lock().unwrap().push(outcomes.len());
            tokio::time::sleep(ROUND_TRIP).await;
            self.inner.complete_many(g, outcomes).await
        }
        async fn release(&self, g: &str, id: MessageId, t: ClaimToken) -> Result<(), StoreError> {
            self.inner.release(g, id, t).await
        }
        async fn reopen(&self, g: &str, id: MessageId) -> Result<bool, StoreError> {
            self.inner.reopen(g, id).await
        }
    }

    /// Runs 300 messages over 100 keys through a processor with a 2 ms handler; returns the
    /// sizes of the many-calls the store got.
    async fn many_calls(many: bool) -> Vec<usize> {
        let broker = MemoryBroker::new();
        let subscriber = broker.subscriber("t", "g").unwrap();
        for i in 0..300 {
            let m = Message::new("x").with_key(format!("k{}", i % 100));
            broker.publisher().publish("t", m).await.unwrap();
        }
        let store = Arc::new(Recording {
            inner: InMemoryIdempotencyStore::default(),
            many,
            calls: Mutex::new(Vec::new()),
        });
        let running = Processor::builder("g")
            .concurrency(32)
            .idempotency(Arc::clone(&store) as Arc<dyn IdempotencyStore>)
            .build()
            .unwrap()
            .start(
                subscriber,
                handler_fn(|_m| async {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    Ok(())
                }),
            );
        while running.counters().handled < 300 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let totals = running.shutdown().await.unwrap();
        assert_eq!((totals.handled, totals.duplicates_skipped), (300, 0));
        let calls = store.calls.lock().unwrap().clone();
        calls
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_answers_many_at_once_gets_the_claims_and_completions_together() {
        let calls = many_calls(true).await;
        assert_eq!(
            calls.iter().sum::<usize>(),
            600,
            "300 claims, 300 completions"
        );
        assert!(
            calls.len() < 300 && calls.iter().any(|n| *n > 1),
            "gathered: {} calls, sizes {calls:?}",
            calls.len()
        );
    }

    #[tokio::test]
    async fn a_store_that_answers_one_by_one_is_called_one_by_one() {
        assert_eq!(many_calls(false).await, Vec::<usize>::new());
    }
}
