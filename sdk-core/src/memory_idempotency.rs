//! An in-process idempotency store, bounded in memory.

mod lease_queue;

use std::collections::hash_map::Entry as MapEntry;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tracing::warn;

use crate::idempotency::{Claim, ClaimToken, Completion, IdempotencyStore, StoreError};
use crate::message_id::MessageId;
use lease_queue::{LeaseQueue, LeaseSeq};

/// An [`IdempotencyStore`] held in this process's memory.
///
/// Good for tests, demos and single-process consumers whose duplicates come from the broker
/// (redeliveries, ambiguous publishes). It forgets everything on restart and is not shared
/// between processes: a multi-instance deployment needs the SQL store of `waybill-outbox`.
///
/// Memory is bounded:
/// - finished entries (handled or dead-lettered) are forgotten after `retention`;
/// - at most `capacity` finished entries are kept: past it, **the oldest finished entry is
///   evicted first** (counted by [`evicted`](Self::evicted), with a warning), and a duplicate
///   of an evicted message would be handled again. Size the capacity above the number of
///   messages that can arrive within the broker's redelivery horizon;
/// - a claim takes memory while it is held: one that ends (completed or released) leaves
///   nothing behind, one whose holder vanished is dropped after its lease.
///
/// Every operation does a bounded amount of work: expired entries are dropped from the front
/// of insertion-ordered queues as operations pass, never by scanning the whole store.
/// Claims carry fencing tokens like every store: a holder whose lease lapsed and was taken
/// over cannot complete.
#[derive(Debug)]
pub struct InMemoryIdempotencyStore {
    retention: Duration,
    capacity: usize,
    evicted: AtomicU64,
    state: Mutex<StoreState>,
}

/// An entry's group (the map's own key, shared) and message id.
type EntryKey = (Arc<str>, MessageId);

#[derive(Debug, Default)]
struct StoreState {
    /// Entries by group, then message id: an operation finds its group by `&str`, without
    /// allocating a key. Hashed with foldhash (seeded per process): SipHash was a tenth of a
    /// processed message's cost on the in-memory broker.
    groups: foldhash::HashMap<Arc<str>, Group>,
    /// Finished entries in the order they finished (= expiry order: one retention for all).
    finished: VecDeque<(EntryKey, Instant)>,
    /// The held claims' leases (a held entry knows its record's number).
    leases: LeaseQueue<EntryKey>,
}

/// One group's entries, with its name (shared by the queues' records).
#[derive(Debug)]
struct Group {
    name: Arc<str>,
    entries: foldhash::HashMap<MessageId, Entry>,
}

impl StoreState {
    fn get(&self, group: &str, id: MessageId) -> Option<&Entry> {
        self.groups.get(group)?.entries.get(&id)
    }

    fn remove(&mut self, group: &str, id: MessageId) {
        if let Some(group) = self.groups.get_mut(group) {
            group.entries.remove(&id);
        }
    }
}

/// The entries of `group`, made on first use.
fn group_of<'a>(groups: &'a mut foldhash::HashMap<Arc<str>, Group>, group: &str) -> &'a mut Group {
    if !groups.contains_key(group) {
        let name: Arc<str> = Arc::from(group);
        let entries = foldhash::HashMap::default();
        groups.insert(Arc::clone(&name), Group { name, entries });
    }
    groups.get_mut(group).expect("inserted above")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Held {
        until: Instant,
        token: ClaimToken,
        /// Its record in the lease queue.
        lease: LeaseSeq,
    },
    Finished {
        until: Instant,
        token: ClaimToken,
        completion: Completion,
    },
}

/// Expired entries dropped per operation at most (the rest go with later operations).
const EXPIRE_PER_OPERATION: usize = 64;

impl InMemoryIdempotencyStore {
    /// A store that remembers finished messages for `retention`, at most `capacity` of them.
    ///
    /// # Panics
    /// When `capacity` is zero.
    pub fn new(retention: Duration, capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "an idempotency store needs room for one entry"
        );
        Self {
            retention,
            capacity,
            evicted: AtomicU64::new(0),
            state: Mutex::new(StoreState::default()),
        }
    }

    /// Drops every expired lease and finished entry now.
    pub fn purge_expired(&self) {
        let mut state = self.lock();
        expire(&mut state, Instant::now(), usize::MAX);
    }

    /// Number of entries (held and finished) currently remembered.
    pub fn len(&self) -> usize {
        self.lock().groups.values().map(|g| g.entries.len()).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finished entries evicted before their retention because the store was full.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        // Every update is a single insert or remove on each structure, and the queues are only
        // hints checked against the map, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the finished entry `key` for expiry at `until`, evicting the oldest finished
    /// entries past the capacity (one lookup each: a record whose entry changed since is
    /// just discarded).
    fn queue_finished(&self, state: &mut StoreState, key: EntryKey, until: Instant) {
        state.finished.push_back((key, until));
        while state.finished.len() > self.capacity {
            let Some(((old_group, old_id), old_until)) = state.finished.pop_front() else {
                break;
            };
            let Some(group) = state.groups.get_mut(&old_group) else {
                continue;
            };
            let MapEntry::Occupied(entry) = group.entries.entry(old_id) else {
                continue;
            };
            if matches!(entry.get(), Entry::Finished { until, .. } if *until == old_until) {
                entry.remove();
                if self.evicted.fetch_add(1, Relaxed) == 0 {
                    warn!(
                        capacity = self.capacity,
                        "in-memory idempotency store is full: evicting the oldest finished \
                         entries before their retention; a late duplicate of one would be \
                         handled again"
                    );
                }
            }
        }
    }
}

impl Default for InMemoryIdempotencyStore {
    /// One day of retention, at most 100,000 finished entries (a few tens of MB at most).
    fn default() -> Self {
        Self::new(Duration::from_secs(24 * 3600), 100_000)
    }
}

/// Drops up to `budget` expired finished entries and as many lapsed claims (and moves a
/// long-held claim's record out of the way of withdrawn ones, see [`LeaseQueue`]). A finished
/// record whose entry changed since (reopened, claimed again) is just discarded.
fn expire(state: &mut StoreState, now: Instant, budget: usize) {
    let StoreState {
        groups,
        finished,
        leases,
    } = state;
    let mut done = 0;
    while done < budget {
        match finished.front() {
            Some((_, until)) if *until <= now => {}
            _ => break,
        }
        let ((group, id), until) = finished.pop_front().expect("front checked");
        done += 1;
        let Some(entries) = groups.get_mut(&group).map(|g| &mut g.entries) else {
            continue;
        };
        if let MapEntry::Occupied(entry) = entries.entry(id) {
            if matches!(entry.get(), Entry::Finished { until: u, .. } if *u == until) {
                entry.remove();
            }
        }
    }
    for _ in 0..budget {
        if let Some((seq, record)) = leases.pop_lapsed(now) {
            let (group, id) = record.key;
            let Some(entries) = groups.get_mut(&group).map(|g| &mut g.entries) else {
                continue;
            };
            if let MapEntry::Occupied(entry) = entries.entry(id) {
                if matches!(entry.get(), Entry::Held { lease, .. } if *lease == seq) {
                    entry.remove();
                }
            }
        } else if let Some((old, new, (group, id))) = leases.rotate_front() {
            let held = groups
                .get_mut(group)
                .and_then(|g| g.entries.get_mut(id))
                .and_then(|entry| match entry {
                    Entry::Held { lease, .. } if *lease == old => Some(lease),
                    _ => None,
                });
            match held {
                Some(lease) => *lease = new,
                // Not held under that record any more (cannot happen: every change of a held
                // entry withdraws its record); the moved record is not needed.
                None => leases.withdraw(new),
            }
        } else {
            break;
        }
    }
}

#[async_trait]
impl IdempotencyStore for InMemoryIdempotencyStore {
    fn retention(&self) -> Option<Duration> {
        Some(self.retention)
    }

    async fn claim(
        &self,
        group: &str,
        id: MessageId,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let mut state = self.lock();
        expire(&mut state, now, EXPIRE_PER_OPERATION);
        let StoreState { groups, leases, .. } = &mut *state;
        let Group { name, entries } = group_of(groups, group);
        let until = now + lease;
        let mut held = |token| Entry::Held {
            until,
            token,
            lease: leases.push((Arc::clone(name), id), until),
        };
        let token = match entries.entry(id) {
            MapEntry::Occupied(entry) => match *entry.get() {
                Entry::Finished {
                    until, completion, ..
                } if until > now => {
                    return Ok(match completion {
                        Completion::Handled => Claim::AlreadyDone,
                        Completion::DeadLettered => Claim::DeadLettered,
                    })
                }
                Entry::Held { until, .. } if until > now => {
                    return Ok(Claim::InFlight {
                        lease_remaining: until - now,
                    })
                }
                // Expired: taken over.
                lapsed => {
                    let token = ClaimToken::new();
                    let fresh = held(token);
                    if let Entry::Held { lease, .. } = lapsed {
                        leases.withdraw(lease);
                    }
                    *entry.into_mut() = fresh;
                    token
                }
            },
            MapEntry::Vacant(entry) => {
                let token = ClaimToken::new();
                entry.insert(held(token));
                token
            }
        };
        Ok(Claim::Acquired(token))
    }

    async fn renew(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        lease: Duration,
    ) -> Result<(), StoreError> {
        let until = Instant::now() + lease;
        let mut state = self.lock();
        let StoreState { groups, leases, .. } = &mut *state;
        let Some(Group { name, entries }) = groups.get_mut(group) else {
            return Err(StoreError::not_holder("renew"));
        };
        match entries.get_mut(&id) {
            Some(Entry::Held {
                until: u,
                token: t,
                lease: seq,
            }) if *t == token => {
                leases.withdraw(*seq);
                *seq = leases.push((Arc::clone(name), id), until);
                *u = until;
                Ok(())
            }
            // Finished by this holder (e.g. its marker landed first): nothing left to renew.
            Some(Entry::Finished { token: t, .. }) if *t == token => Ok(()),
            _ => Err(StoreError::not_holder("renew")),
        }
    }

    async fn complete(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
        completion: Completion,
    ) -> Result<(), StoreError> {
        let until = Instant::now() + self.retention;
        let mut state = self.lock();
        let StoreState { groups, leases, .. } = &mut *state;
        let group = group_of(groups, group);
        let finished = Entry::Finished {
            until,
            token,
            completion,
        };
        match group.entries.entry(id) {
            MapEntry::Occupied(entry) => match *entry.get() {
                Entry::Held { token: t, .. } | Entry::Finished { token: t, .. } if t != token => {
                    return Err(StoreError::not_holder("complete"))
                }
                // Ours: record it.
                ours => {
                    if let Entry::Held { lease, .. } = ours {
                        leases.withdraw(lease);
                    }
                    *entry.into_mut() = finished;
                }
            },
            // Gone (lapsed and purged with nobody else claiming): record it.
            MapEntry::Vacant(entry) => {
                entry.insert(finished);
            }
        }
        let key = (Arc::clone(&group.name), id);
        self.queue_finished(&mut state, key, until);
        Ok(())
    }

    async fn release(
        &self,
        group: &str,
        id: MessageId,
        token: ClaimToken,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(&Entry::Held {
            token: t, lease, ..
        }) = state.get(group, id)
        {
            if t == token {
                state.remove(group, id);
                state.leases.withdraw(lease);
            }
        }
        Ok(())
    }

    async fn reopen(&self, group: &str, id: MessageId) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let dead = matches!(
            state.get(group, id),
            Some(Entry::Finished {
                completion: Completion::DeadLettered,
                ..
            })
        );
        if dead {
            state.remove(group, id);
        }
        Ok(dead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(claim: Claim) -> ClaimToken {
        match claim {
            Claim::Acquired(token) => token,
            other => panic!("expected Acquired, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn claim_complete_release_and_lease_expiry() {
        let store = InMemoryIdempotencyStore::new(Duration::from_secs(60), 100);
        let id = MessageId::new();
        let lease = Duration::from_secs(5);
        let first = token(store.claim("g", id, lease).await.unwrap());
        assert!(matches!(
            store.claim("g", id, lease).await.unwrap(),
            Claim::InFlight { .. }
        ));
        token(store.claim("other-group", id, lease).await.unwrap());
        store.release("g", id, first).await.unwrap();
        let second = token(store.claim("g", id, lease).await.unwrap());

        tokio::time::advance(Duration::from_secs(6)).await;
        let third = token(store.claim("g", id, lease).await.unwrap());
        assert_ne!(
            second, third,
            "an expired lease is taken over with a new token"
        );
        let stale = store
            .complete("g", id, second, Completion::Handled)
            .await
            .unwrap_err();
        assert!(stale.is_not_holder(), "{stale}");
        assert!(store.renew("g", id, second, lease).await.is_err());
        store.release("g", id, second).await.unwrap();
        assert!(
            matches!(
                store.claim("g", id, lease).await.unwrap(),
                Claim::InFlight { .. }
            ),
            "a stale release leaves the holder's claim"
        );
        store
            .complete("g", id, third, Completion::Handled)
            .await
            .unwrap();
        store
            .complete("g", id, third, Completion::Handled)
            .await
            .expect("completing twice with the holder's token is fine");
        assert_eq!(
            store.claim("g", id, lease).await.unwrap(),
            Claim::AlreadyDone
        );
        store.release("g", id, third).await.unwrap();
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

    #[tokio::test(start_paused = true)]
    async fn renewal_keeps_the_claim_past_its_first_lease() {
        let store = InMemoryIdempotencyStore::new(Duration::from_secs(60), 100);
        let id = MessageId::new();
        let lease = Duration::from_secs(5);
        let held = token(store.claim("g", id, lease).await.unwrap());
        for _ in 0..4 {
            tokio::time::advance(Duration::from_secs(3)).await;
            store.renew("g", id, held, lease).await.unwrap();
            assert!(matches!(
                store.claim("g", id, lease).await.unwrap(),
                Claim::InFlight { .. }
            ));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_stay_dead_until_reopened() {
        let store = InMemoryIdempotencyStore::new(Duration::from_secs(60), 100);
        let id = MessageId::new();
        let lease = Duration::from_secs(5);
        let held = token(store.claim("g", id, lease).await.unwrap());
        assert!(!store.reopen("g", id).await.unwrap(), "nothing dead yet");
        store
            .complete("g", id, held, Completion::DeadLettered)
            .await
            .unwrap();
        assert_eq!(
            store.claim("g", id, lease).await.unwrap(),
            Claim::DeadLettered
        );
        assert!(store.reopen("g", id).await.unwrap());
        token(store.claim("g", id, lease).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_evicts_the_oldest_finished_entries_first() {
        let store = InMemoryIdempotencyStore::new(Duration::from_secs(3600), 3);
        let lease = Duration::from_secs(5);
        let ids: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
        for id in &ids {
            let held = token(store.claim("g", *id, lease).await.unwrap());
            store
                .complete("g", *id, held, Completion::Handled)
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.evicted(), 2);
        for id in &ids[2..] {
            assert_eq!(
                store.claim("g", *id, lease).await.unwrap(),
                Claim::AlreadyDone
            );
        }
        assert!(matches!(
            store.claim("g", ids[0], lease).await.unwrap(),
            Claim::Acquired(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_go_without_an_explicit_purge() {
        let store = InMemoryIdempotencyStore::new(Duration::from_secs(10), 1_000);
        let lease = Duration::from_secs(1);
        handle_new(&store, 50, lease).await;
        for _ in 0..50 {
            // Abandoned leases (a crashed holder never completes).
            token(store.claim("g", MessageId::new(), lease).await.unwrap());
        }
        assert_eq!(store.len(), 100);
        tokio::time::advance(Duration::from_secs(11)).await;
        token(store.claim("g", MessageId::new(), lease).await.unwrap());
        assert_eq!(store.len(), 1, "expired entries dropped as operations pass");
    }

    /// Claims and completes `n` new messages.
    async fn handle_new(store: &InMemoryIdempotencyStore, n: usize, lease: Duration) {
        for _ in 0..n {
            let id = MessageId::new();
            let held = token(store.claim("g", id, lease).await.unwrap());
            store
                .complete("g", id, held, Completion::Handled)
                .await
                .unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn finished_claims_leave_no_lease_records_behind() {
        let store = InMemoryIdempotencyStore::new(Duration::from_secs(3600), 100_000);
        let lease = Duration::from_secs(60);
        handle_new(&store, 20_000, lease).await;
        let records = store.lock().leases.len();
        assert!(
            records <= 64,
            "{records} lease records kept for 20,000 finished claims: memory grows with the \
             message rate times the lease"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_holder_does_not_keep_the_finished_claims_records() {
        let store = InMemoryIdempotencyStore::new(Duration::from_secs(3600), 100_000);
        let lease = Duration::from_secs(60);
        // Claimed first and never finished within the test: its record heads the queue.
        let long = MessageId::new();
        token(store.claim("g", long, lease).await.unwrap());
        handle_new(&store, 20_000, lease).await;
        let records = store.lock().leases.len();
        assert!(
            records <= 2_048,
            "{records} lease records kept behind one long holder"
        );
        assert!(
            matches!(
                store.claim("g", long, lease).await.unwrap(),
                Claim::InFlight { .. }
            ),
            "the long holder still holds its claim"
        );
        tokio::time::advance(Duration::from_secs(61)).await;
        handle_new(&store, 64, lease).await;
        assert!(
            matches!(
                store.claim("g", long, lease).await.unwrap(),
                Claim::Acquired(_)
            ),
            "its lapsed lease is taken over"
        );
    }
}
