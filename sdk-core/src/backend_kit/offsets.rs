//! Which offsets may be committed: per partition or queue, everything below the lowest offset
//! still in flight (completion is out of order under the Processor's concurrency).

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Mutex;

/// Where a delivery came from, and under which assignment of its partition or queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackedOffset<Q> {
    /// The partition or queue.
    pub queue: Q,
    /// The delivery's offset within it.
    pub offset: i64,
    generation: u64,
}

#[derive(Default)]
struct Queue {
    generation: u64,
    in_flight: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
}

/// In-flight offsets of the partitions or queues a consumer holds.
///
/// Every assignment of a queue gets a new generation; completing a position of an earlier
/// generation returns `None`, so acknowledgements that arrive after a rebalance never commit
/// offsets for the queue's new owner.
pub struct InFlightOffsets<Q> {
    inner: Mutex<State<Q>>,
}

struct State<Q> {
    queues: HashMap<Q, Queue>,
    generations: u64,
}

impl<Q> State<Q> {
    /// An empty queue entry under a new generation.
    fn fresh_queue(&mut self) -> Queue {
        self.generations += 1;
        Queue {
            generation: self.generations,
            ..Queue::default()
        }
    }
}

impl<Q> Default for InFlightOffsets<Q> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(State {
                queues: HashMap::new(),
                generations: 0,
            }),
        }
    }
}

impl<Q: Hash + Eq + Clone> InFlightOffsets<Q> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<Q>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The queue was (re)assigned: earlier positions of it no longer count.
    pub fn assigned(&self, queue: &Q) {
        let mut state = self.lock();
        let fresh = state.fresh_queue();
        state.queues.insert(queue.clone(), fresh);
    }

    /// The queue was taken away.
    pub fn revoked(&self, queue: &Q) {
        self.lock().queues.remove(queue);
    }

    /// Whether the queue is held (assigned, or received from since).
    pub fn holds(&self, queue: &Q) -> bool {
        self.lock().queues.contains_key(queue)
    }

    /// Records a received offset as in flight.
    pub fn received(&self, queue: &Q, offset: i64) -> TrackedOffset<Q> {
        let mut state = self.lock();
        if !state.queues.contains_key(queue) {
            let fresh = state.fresh_queue();
            state.queues.insert(queue.clone(), fresh);
        }
        let q = state.queues.get_mut(queue).expect("inserted above");
        q.in_flight.insert(offset);
        q.next = q.next.max(offset + 1);
        TrackedOffset {
            queue: queue.clone(),
            offset,
            generation: q.generation,
        }
    }

    /// Marks `position` completed; returns the offset to commit (the next one to consume after
    /// the contiguous completed prefix), or `None` when the queue moved on meanwhile.
    pub fn completed(&self, position: &TrackedOffset<Q>) -> Option<i64> {
        let mut state = self.lock();
        let q = state.queues.get_mut(&position.queue)?;
        if q.generation != position.generation {
            return None;
        }
        q.in_flight.remove(&position.offset);
        Some(q.in_flight.first().copied().unwrap_or(q.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contiguous_completed_prefix_is_committable() {
        let o = InFlightOffsets::default();
        let p: Vec<_> = (10..14).map(|n| o.received(&("t", 0), n)).collect();
        assert_eq!(o.completed(&p[2]), Some(10), "12 done, 10 still open");
        assert_eq!(o.completed(&p[0]), Some(11));
        assert_eq!(o.completed(&p[1]), Some(13), "10..=12 done");
        assert_eq!(o.completed(&p[3]), Some(14));
    }

    #[test]
    fn a_reassigned_queue_ignores_old_positions() {
        let o = InFlightOffsets::default();
        let old = o.received(&("t", 1), 5);
        o.revoked(&("t", 1));
        assert!(!o.holds(&("t", 1)));
        assert_eq!(o.completed(&old), None);
        o.assigned(&("t", 1));
        let new = o.received(&("t", 1), 5);
        assert_eq!(o.completed(&old), None, "stale generation");
        assert_eq!(o.completed(&new), Some(6));
    }
}
