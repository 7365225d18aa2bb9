//! The in-memory store's lease records: how claims whose holder vanished are found and
//! dropped without scanning the store.

use std::collections::VecDeque;

use tokio::time::Instant;

/// A lease record's number in its queue. The held entry keeps it, so that finishing,
/// releasing, renewing or taking over the claim withdraws the record at once.
pub(super) type LeaseSeq = u64;

/// Withdrawn records tolerated behind a live one at the front before it is moved to the back.
const CROWD_SLACK: usize = 1_024;

/// One claim's lease: whose, and until when.
#[derive(Debug)]
pub(super) struct LeaseRecord<K> {
    pub key: K,
    pub until: Instant,
}

/// Lease records in the order they were pushed.
///
/// Bounded by the claims still held, not by the claims taken within a lease: a record whose
/// claim ended is withdrawn in place and dropped once it reaches the front, and when a
/// long-held claim at the front keeps more than twice the live records plus
/// [`CROWD_SLACK`] withdrawn ones behind it, [`rotate_front`](Self::rotate_front) moves it
/// to the back. The queue is then no longer in expiry order: a lapsed claim is found when its
/// record reaches the front (its entry's own `until` is what decides a takeover; the queue
/// only frees memory).
#[derive(Debug)]
pub(super) struct LeaseQueue<K> {
    records: VecDeque<Option<LeaseRecord<K>>>,
    /// The number of the front record.
    first: LeaseSeq,
    /// Records not withdrawn.
    live: usize,
}

impl<K> Default for LeaseQueue<K> {
    fn default() -> Self {
        Self {
            records: VecDeque::new(),
            first: 0,
            live: 0,
        }
    }
}

impl<K> LeaseQueue<K> {
    /// Records a lease; returns its number.
    pub fn push(&mut self, key: K, until: Instant) -> LeaseSeq {
        let seq = self.first + self.records.len() as LeaseSeq;
        self.records.push_back(Some(LeaseRecord { key, until }));
        self.live += 1;
        seq
    }

    /// Withdraws record `seq` (its claim ended or has a newer record); nothing when it is
    /// gone already.
    pub fn withdraw(&mut self, seq: LeaseSeq) {
        let slot = seq
            .checked_sub(self.first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| self.records.get_mut(i));
        if let Some(slot) = slot {
            if slot.take().is_some() {
                self.live -= 1;
            }
        }
        self.drop_withdrawn_front();
    }

    /// Removes and returns the front record when its lease ended by `now`.
    pub fn pop_lapsed(&mut self, now: Instant) -> Option<(LeaseSeq, LeaseRecord<K>)> {
        self.drop_withdrawn_front();
        match self.records.front() {
            Some(Some(record)) if record.until <= now => {}
            _ => return None,
        }
        let seq = self.first;
        let record = self.pop_front().expect("a live record at the front");
        self.live -= 1;
        self.drop_withdrawn_front();
        Some((seq, record))
    }

    /// Moves the front record to the back when withdrawn records crowd the queue behind it;
    /// returns its old and new numbers and its key (its entry must take the new number).
    pub fn rotate_front(&mut self) -> Option<(LeaseSeq, LeaseSeq, &K)> {
        self.drop_withdrawn_front();
        if self.records.len() <= 2 * self.live + CROWD_SLACK {
            return None;
        }
        let old = self.first;
        let record = self.pop_front()?;
        self.live -= 1;
        let new = self.push(record.key, record.until);
        self.drop_withdrawn_front();
        let key = &self
            .records
            .back()
            .and_then(Option::as_ref)
            .expect("pushed above")
            .key;
        Some((old, new, key))
    }

    /// Records kept, withdrawn ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.records.len()
    }

    fn pop_front(&mut self) -> Option<LeaseRecord<K>> {
        let record = self.records.pop_front()?;
        self.first += 1;
        record
    }

    fn drop_withdrawn_front(&mut self) {
        while matches!(self.records.front(), Some(None)) {
            self.records.pop_front();
            self.first += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn withdrawn_records_leave_from_the_front_and_numbers_stay_stable() {
        let now = Instant::now();
        let mut queue = LeaseQueue::default();
        let a = queue.push("a", now);
        let b = queue.push("b", now);
        let c = queue.push("c", now);
        queue.withdraw(b);
        assert_eq!(queue.len(), 3, "b waits behind a");
        queue.withdraw(a);
        assert_eq!(queue.len(), 1, "a and b left the front");
        queue.withdraw(a);
        let (seq, record) = queue.pop_lapsed(now).expect("c lapsed");
        assert_eq!((seq, record.key), (c, "c"));
        assert_eq!(queue.len(), 0);
        assert_eq!(queue.push("d", now), c + 1, "numbers keep counting");
    }

    #[test]
    fn a_live_front_record_moves_back_only_when_crowded() {
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let mut queue = LeaseQueue::default();
        let long = queue.push("long", later);
        assert!(queue.pop_lapsed(now).is_none(), "not lapsed");
        let mut seqs = Vec::new();
        for _ in 0..CROWD_SLACK + 2 {
            seqs.push(queue.push("short", later));
        }
        for seq in seqs {
            queue.withdraw(seq);
        }
        let (old, new, key) = queue.rotate_front().expect("crowded");
        assert_eq!((old, *key), (long, "long"));
        assert!(new > old);
        assert_eq!(queue.len(), 1, "the withdrawn records went with it");
        assert!(queue.rotate_front().is_none(), "no longer crowded");
    }
}
