//! An in-process idempotency store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::idempotency::{Claim, IdempotencyStore, StoreError};
use crate::message_id::MessageId;

/// An [`IdempotencyStore`] held in this process's memory.
///
/// Good for tests, demos and single-process consumers whose duplicates come from the broker
/// (redeliveries, ambiguous publishes). It forgets everything on restart and is not shared
/// between processes: a multi-instance deployment needs the SQL store of `waybill-outbox`.
/// Completed entries are forgotten after `retention`.
#[derive(Debug)]
pub struct InMemoryIdempotencyStore {
    retention: Duration,
    state: Mutex<StoreState>,
}

#[derive(Debug, Default)]
struct StoreState {
    groups: HashMap<String, HashMap<MessageId, Entry>>,
    operations_since_purge: u64,
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    Held { until: Instant },
    Done { until: Instant },
}

const PURGE_EVERY: u64 = 50_000;

impl InMemoryIdempotencyStore {
    /// A store that remembers completed messages for `retention`.
    pub fn new(retention: Duration) -> Self {
        Self {
            retention,
            state: Mutex::new(StoreState::default()),
        }
    }

    /// Drops expired leases and completed entries older than the retention.
    pub fn purge_expired(&self) {
        let mut state = self.lock();
        purge(&mut state, Instant::now());
    }

    /// Number of entries (held and completed) currently remembered.
    pub fn len(&self) -> usize {
        self.lock().groups.values().map(HashMap::len).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        // A panic while holding this lock cannot leave the map half-updated (single inserts
        // and removes), so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for InMemoryIdempotencyStore {
    /// Seven days of retention.
    fn default() -> Self {
        Self::new(Duration::from_secs(7 * 24 * 3600))
    }
}

fn purge(state: &mut StoreState, now: Instant) {
    for entries in state.groups.values_mut() {
        entries.retain(|_, e| match e {
            Entry::Held { until } | Entry::Done { until } => *until > now,
        });
    }
    state.groups.retain(|_, entries| !entries.is_empty());
    state.operations_since_purge = 0;
}

#[async_trait]
impl IdempotencyStore for InMemoryIdempotencyStore {
    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        state.operations_since_purge += 1;
        if state.operations_since_purge >= PURGE_EVERY {
            purge(&mut state, now);
        }
        if !state.groups.contains_key(group) {
            state.groups.insert(group.to_owned(), HashMap::new());
        }
        let entries = state.groups.get_mut(group).expect("inserted above");
        let claim = match entries.get(&id) {
            Some(Entry::Done { until }) if *until > now => return Ok(Claim::AlreadyDone),
            Some(Entry::Held { until }) if *until > now => {
                return Ok(Claim::InFlight {
                    lease_remaining: *until - now,
                })
            }
            _ => Claim::Acquired,
        };
        entries.insert(id, Entry::Held { until: now + lease });
        Ok(claim)
    }

    async fn complete(&self, group: &str, id: MessageId) -> Result<(), StoreError> {
        let until = Instant::now() + self.retention;
        let mut state = self.lock();
        if !state.groups.contains_key(group) {
            state.groups.insert(group.to_owned(), HashMap::new());
        }
        let entries = state.groups.get_mut(group).expect("inserted above");
        entries.insert(id, Entry::Done { until });
        Ok(())
    }

    async fn release(&self, group: &str, id: MessageId) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(entries) = state.groups.get_mut(group) {
            if matches!(entries.get(&id), Some(Entry::Held { .. })) {
                entries.remove(&id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn claim_complete_release_and_lease_expiry() {
        let store = InMemoryIdempotencyStore::new(Duration::from_secs(60));
        let id = MessageId::new();
        let lease = Duration::from_secs(5);
        assert_eq!(store.claim("g", id, lease).await.unwrap(), Claim::Acquired);
        assert!(matches!(
            store.claim("g", id, lease).await.unwrap(),
            Claim::InFlight { .. }
        ));
        assert_eq!(
            store.claim("other-group", id, lease).await.unwrap(),
            Claim::Acquired,
            "groups are independent"
        );
        store.release("g", id).await.unwrap();
        assert_eq!(store.claim("g", id, lease).await.unwrap(), Claim::Acquired);

        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(
            store.claim("g", id, lease).await.unwrap(),
            Claim::Acquired,
            "an expired lease is taken over"
        );
        store.complete("g", id).await.unwrap();
        assert_eq!(
            store.claim("g", id, lease).await.unwrap(),
            Claim::AlreadyDone
        );
        store.release("g", id).await.unwrap();
        assert_eq!(
            store.claim("g", id, lease).await.unwrap(),
            Claim::AlreadyDone,
            "release does not undo completion"
        );

        tokio::time::advance(Duration::from_secs(61)).await;
        store.purge_expired();
        assert_eq!(
            store.len(),
            0,
            "lapsed leases and old completions are purged"
        );
    }
}
