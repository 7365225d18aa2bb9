//! Stores that break the idempotency contract while claiming success, to show the store
//! suite catches each breakage.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use waybill_core::testkit::store_conformance::StoreTarget;
use waybill_core::{
    BoxError, Claim, ClaimToken, Completion, IdempotencyStore, InMemoryIdempotencyStore, MessageId,
    StoreError,
};

/// How a broken store breaks the contract.
#[derive(Clone, Copy, Debug)]
pub enum Breakage {
    /// Ignores fencing tokens: a stale holder's renew and complete succeed.
    Unfenced,
    /// Claims by reading, then writing: concurrent claimers can all acquire.
    RacyClaim,
    /// Never forgets a finished entry, whatever the retention.
    NoExpiry,
    /// A release deletes the entry even after it was completed.
    ReleaseForgetsCompletion,
}

/// A target whose stores are broken as `breakage` says.
pub struct BrokenTarget(pub Breakage);

#[async_trait]
impl StoreTarget for BrokenTarget {
    fn name(&self) -> String {
        format!("broken store ({:?})", self.0)
    }

    async fn store(&self, retention: Duration) -> Result<Arc<dyn IdempotencyStore>, BoxError> {
        Ok(match self.0 {
            Breakage::Unfenced => {
                Arc::new(Unfenced(InMemoryIdempotencyStore::new(retention, 1 << 16)))
            }
            Breakage::RacyClaim => Arc::new(RacyClaim::default()),
            Breakage::NoExpiry => Arc::new(InMemoryIdempotencyStore::new(
                Duration::from_secs(24 * 3600),
                1 << 16,
            )),
            Breakage::ReleaseForgetsCompletion => Arc::new(ReleaseForgets {
                inner: InMemoryIdempotencyStore::new(retention, 1 << 16),
                forgotten: Mutex::default(),
            }),
        })
    }
}

/// Turns "not the holder" refusals into successes.
struct Unfenced(InMemoryIdempotencyStore);

fn accept_stale(result: Result<(), StoreError>) -> Result<(), StoreError> {
    match result {
        Err(e) if e.is_not_holder() => Ok(()),
        other => other,
    }
}

#[async_trait]
impl IdempotencyStore for Unfenced {
    async fn claim(&self, g: &str, id: MessageId, lease: Duration) -> Result<Claim, StoreError> {
        self.0.claim(g, id, lease).await
    }
    async fn renew(
        &self,
        g: &str,
        id: MessageId,
        t: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        accept_stale(self.0.renew(g, id, t, lease).await)
    }
    async fn complete(
        &self,
        g: &str,
        id: MessageId,
        t: ClaimToken,
        c: Completion,
    ) -> Result<(), StoreError> {
        accept_stale(self.0.complete(g, id, t, c).await)
    }
    async fn release(&self, g: &str, id: MessageId, t: ClaimToken) -> Result<(), StoreError> {
        self.0.release(g, id, t).await
    }
    async fn reopen(&self, g: &str, id: MessageId) -> Result<bool, StoreError> {
        self.0.reopen(g, id).await
    }
}

/// A claim's token and, once finished, its outcome.
type Entry = (ClaimToken, Option<Completion>);

/// A map of entries where a claim checks, yields, then writes.
#[derive(Default)]
struct RacyClaim {
    entries: Mutex<HashMap<(String, MessageId), Entry>>,
}

impl RacyClaim {
    fn get(&self, g: &str, id: MessageId) -> Option<Entry> {
        self.entries
            .lock()
            .unwrap()
            .get(&(g.to_owned(), id))
            .copied()
    }
    fn put(&self, g: &str, id: MessageId, entry: Option<Entry>) {
        let mut entries = self.entries.lock().unwrap();
        match entry {
            Some(e) => entries.insert((g.to_owned(), id), e),
            None => entries.remove(&(g.to_owned(), id)),
        };
    }
}

#[async_trait]
impl IdempotencyStore for RacyClaim {
    async fn claim(&self, g: &str, id: MessageId, lease: Duration) -> Result<Claim, StoreError> {
        let seen = self.get(g, id);
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(match seen {
            Some((_, Some(Completion::Handled))) => Claim::AlreadyDone,
            Some((_, Some(Completion::DeadLettered))) => Claim::DeadLettered,
            Some((_, None)) => Claim::InFlight {
                lease_remaining: lease,
            },
            None => {
                let token = ClaimToken::new();
                self.put(g, id, Some((token, None)));
                Claim::Acquired(token)
            }
        })
    }
    async fn renew(
        &self,
        _: &str,
        _: MessageId,
        _: ClaimToken,
        _: Duration,
    ) -> Result<(), StoreError> {
        Ok(())
    }
    async fn complete(
        &self,
        g: &str,
        id: MessageId,
        t: ClaimToken,
        c: Completion,
    ) -> Result<(), StoreError> {
        self.put(g, id, Some((t, Some(c))));
        Ok(())
    }
    async fn release(&self, g: &str, id: MessageId, _: ClaimToken) -> Result<(), StoreError> {
        self.put(g, id, None);
        Ok(())
    }
    async fn reopen(&self, g: &str, id: MessageId) -> Result<bool, StoreError> {
        let dead = matches!(self.get(g, id), Some((_, Some(Completion::DeadLettered))));
        if dead {
            self.put(g, id, None);
        }
        Ok(dead)
    }
}

/// A release that forgets whatever was recorded, completion included.
struct ReleaseForgets {
    inner: InMemoryIdempotencyStore,
    forgotten: Mutex<Vec<(String, MessageId)>>,
}

#[async_trait]
impl IdempotencyStore for ReleaseForgets {
    async fn claim(&self, g: &str, id: MessageId, lease: Duration) -> Result<Claim, StoreError> {
        let forgotten = self.forgotten.lock().unwrap().contains(&(g.to_owned(), id));
        if forgotten {
            self.forgotten
                .lock()
                .unwrap()
                .retain(|e| e != &(g.to_owned(), id));
            return Ok(Claim::Acquired(ClaimToken::new()));
        }
        self.inner.claim(g, id, lease).await
    }
    async fn renew(
        &self,
        g: &str,
        id: MessageId,
        t: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        self.inner.renew(g, id, t, lease).await
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
    async fn release(&self, g: &str, id: MessageId, t: ClaimToken) -> Result<(), StoreError> {
        self.forgotten.lock().unwrap().push((g.to_owned(), id));
        self.inner.release(g, id, t).await
    }
    async fn reopen(&self, g: &str, id: MessageId) -> Result<bool, StoreError> {
        self.inner.reopen(g, id).await
    }
}
