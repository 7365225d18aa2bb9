//! Settlements whose retry or dead-letter copy found no destination yet: kept per message and
//! tried again, with backoff, when the broker delivers the message again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::message_id::MessageId;
use crate::retry_policy::RetryPolicy;
use crate::settlement::Settlement;

/// An entry not tried again for this long is dropped (its message went to another consumer).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// A settlement waiting for its destination.
#[derive(Clone, Debug)]
pub(crate) struct Parked {
    /// The settlement to try again (a retry or a dead letter), unchanged.
    pub settlement: Settlement,
    /// How many times its copy found no destination.
    pub failures: u32,
    /// When the copy first found no destination.
    pub since: Instant,
    /// Not tried again before this.
    pub not_before: Instant,
}

/// The parked settlements of one processor, by message id.
#[derive(Default)]
pub(crate) struct ParkedSettlements {
    entries: Mutex<HashMap<MessageId, Parked>>,
    /// Whether `entries` may hold anything: read before each delivery's lookup, so that the
    /// common case (nothing ever parked) takes no lock. Set under the lock before an insert,
    /// cleared under it when the map is empty.
    any: AtomicBool,
}

impl ParkedSettlements {
    /// Records that `settlement` of message `id` found no destination; returns the entry, whose
    /// `not_before` lies the retry policy's backoff for its failure count ahead.
    pub fn park(&self, id: MessageId, settlement: Settlement, retry: &RetryPolicy) -> Parked {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, p| p.not_before + FORGET_AFTER > now);
        let (failures, since) = entries
            .get(&id)
            .map_or((1, now), |p| (p.failures.saturating_add(1), p.since));
        let parked = Parked {
            settlement,
            failures,
            since,
            not_before: now + retry.delay_for(failures),
        };
        self.any.store(true, Ordering::SeqCst);
        entries.insert(id, parked.clone());
        parked
    }

    /// The parked settlement of message `id`, if any (it stays recorded until
    /// [`ParkedSettlements::forget`], so that the next failure backs off further).
    pub fn get(&self, id: MessageId) -> Option<Parked> {
        if !self.any.load(Ordering::SeqCst) {
            return None;
        }
        self.lock().get(&id).cloned()
    }

    /// Forgets message `id` (its settlement went through).
    pub fn forget(&self, id: MessageId) {
        if !self.any.load(Ordering::SeqCst) {
            return;
        }
        let mut entries = self.lock();
        entries.remove(&id);
        if entries.is_empty() {
            self.any.store(false, Ordering::SeqCst);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MessageId, Parked>> {
        // Inserts and removals only: consistent even after a panic elsewhere.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settlement::Settlement;

    #[tokio::test]
    async fn the_backoff_grows_with_each_failure_and_forget_clears_it() {
        let parked = ParkedSettlements::default();
        let retry = RetryPolicy::builder()
            .min_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(10))
            .jitter(false)
            .build()
            .unwrap();
        let id = MessageId::new();
        let first = parked.park(id, Settlement::Ack, &retry);
        let second = parked.park(id, Settlement::Ack, &retry);
        assert_eq!((first.failures, second.failures), (1, 2));
        assert_eq!(first.since, second.since);
        assert!(
            second.not_before - second.since > first.not_before - first.since,
            "backs off further"
        );
        assert!(parked.get(id).is_some());
        parked.forget(id);
        assert!(parked.get(id).is_none());
    }
}
