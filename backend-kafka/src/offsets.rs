//! Which offsets may be committed: per partition, everything below the lowest offset still in
//! flight (completion is out of order under the Processor's concurrency).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

/// Where a delivery came from, and under which assignment of its partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    generation: u64,
}

#[derive(Default)]
struct Partition {
    generation: u64,
    in_flight: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
}

/// In-flight offsets of the partitions a consumer holds.
#[derive(Default)]
pub(crate) struct Offsets {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    partitions: HashMap<(String, i32), Partition>,
    generations: u64,
}

impl Offsets {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The partition was (re)assigned: earlier positions of it no longer count.
    pub fn assigned(&self, topic: &str, partition: i32) {
        let mut state = self.lock();
        state.generations += 1;
        let generation = state.generations;
        state.partitions.insert(
            (topic.to_owned(), partition),
            Partition {
                generation,
                ..Partition::default()
            },
        );
    }

    /// The partition was taken away.
    pub fn revoked(&self, topic: &str, partition: i32) {
        self.lock()
            .partitions
            .remove(&(topic.to_owned(), partition));
    }

    /// Records a received offset as in flight.
    pub fn received(&self, topic: &str, partition: i32, offset: i64) -> Position {
        let mut state = self.lock();
        if !state
            .partitions
            .contains_key(&(topic.to_owned(), partition))
        {
            state.generations += 1;
            let generation = state.generations;
            state.partitions.insert(
                (topic.to_owned(), partition),
                Partition {
                    generation,
                    ..Partition::default()
                },
            );
        }
        let p = state
            .partitions
            .get_mut(&(topic.to_owned(), partition))
            .expect("inserted above");
        p.in_flight.insert(offset);
        p.next = p.next.max(offset + 1);
        Position {
            topic: topic.to_owned(),
            partition,
            offset,
            generation: p.generation,
        }
    }

    /// Marks `position` completed; returns the offset to store (the next one to consume after
    /// the contiguous completed prefix), or `None` when the partition moved on meanwhile.
    pub fn completed(&self, position: &Position) -> Option<i64> {
        let mut state = self.lock();
        let p = state
            .partitions
            .get_mut(&(position.topic.clone(), position.partition))?;
        if p.generation != position.generation {
            return None;
        }
        p.in_flight.remove(&position.offset);
        Some(p.in_flight.first().copied().unwrap_or(p.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contiguous_completed_prefix_is_stored() {
        let o = Offsets::default();
        let p: Vec<Position> = (10..14).map(|n| o.received("t", 0, n)).collect();
        assert_eq!(o.completed(&p[2]), Some(10), "12 done, 10 still open");
        assert_eq!(o.completed(&p[0]), Some(11));
        assert_eq!(o.completed(&p[1]), Some(13), "10..=12 done");
        assert_eq!(o.completed(&p[3]), Some(14));
    }

    #[test]
    fn a_reassigned_partition_ignores_old_positions() {
        let o = Offsets::default();
        let old = o.received("t", 1, 5);
        o.revoked("t", 1);
        assert_eq!(o.completed(&old), None);
        o.assigned("t", 1);
        let new = o.received("t", 1, 5);
        assert_eq!(o.completed(&old), None, "stale generation");
        assert_eq!(o.completed(&new), Some(6));
    }
}
