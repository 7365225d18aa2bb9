//! Retried copies held until their `waybill-not-before` time.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::header_names;
use crate::incoming::IncomingMessage;
use crate::wire_time;

/// When a retried copy may be handled, from its `waybill-not-before` header (`None`: now).
pub fn not_before(incoming: &IncomingMessage) -> Option<Instant> {
    let text = incoming.message().headers().get(header_names::NOT_BEFORE)?;
    let at = wire_time::parse_millis(text)?;
    let wait = at.duration_since(SystemTime::now()).ok()?;
    Some(Instant::now() + wait)
}

struct Entry<T> {
    due: Instant,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Copies waiting for their due time, earliest first (ties in arrival order), bounded so that
/// a subscriber stops reading while it holds `capacity` of them.
pub struct DelayedCopies<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
    capacity: usize,
}

impl<T> DelayedCopies<T> {
    /// Holds at most `capacity` copies (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            heap: BinaryHeap::new(),
            seq: 0,
            capacity: capacity.max(1),
        }
    }

    /// Holds `item` until `due`.
    pub fn push(&mut self, due: Instant, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            due,
            seq: self.seq,
            item,
        }));
    }

    /// The earliest due time held.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.due)
    }

    /// The earliest copy, if it is due.
    pub fn pop_due(&mut self) -> Option<T> {
        if self.next_due()? <= Instant::now() {
            self.heap.pop().map(|Reverse(e)| e.item)
        } else {
            None
        }
    }

    /// Sleeps until the earliest copy is due; forever when none is held.
    pub async fn wait_due(&self) {
        match self.next_due() {
            Some(due) => tokio::time::sleep_until(due).await,
            None => std::future::pending().await,
        }
    }

    /// Whether `capacity` copies are held (the subscriber should stop reading).
    pub fn is_full(&self) -> bool {
        self.heap.len() >= self.capacity
    }

    /// Copies held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no copy is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Drops every copy (their offsets stay uncommitted, so the group reads them again).
    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn hands_out_copies_in_due_order() {
        let mut d = DelayedCopies::new(2);
        let now = Instant::now();
        d.push(now + Duration::from_secs(2), "late");
        d.push(now + Duration::from_secs(1), "early");
        assert!(d.is_full());
        assert_eq!(d.pop_due(), None, "nothing due yet");
        d.wait_due().await;
        assert_eq!(d.pop_due(), Some("early"));
        d.wait_due().await;
        assert_eq!(d.pop_due(), Some("late"));
        assert!(d.is_empty());
    }
}
