//! One consumer group's queue on one topic: ready, delayed and in-flight messages.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::faults::{DeliveryContext, DeliveryFault, FaultInjector};
use crate::message::Message;

/// A message as queued for a group.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub message: Message,
    pub offset: u64,
    pub redelivered: bool,
    /// Set when a delivery fault already delayed this entry: it is not asked again.
    pub fault_applied: bool,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Entry>,
    delayed: BTreeMap<(Instant, u64), Entry>,
    in_flight: foldhash::HashMap<u64, (u64, Entry)>,
    next_tag: u64,
    next_delay_seq: u64,
}

impl QueueState {
    /// Returns an entry to the ready queue at its log position (before every later offset),
    /// flagged redelivered, so messages given back together keep their order.
    fn put_back(&mut self, mut entry: Entry) {
        entry.redelivered = true;
        let at = self
            .ready
            .iter()
            .position(|e| e.offset > entry.offset)
            .unwrap_or(self.ready.len());
        self.ready.insert(at, entry);
    }
}

/// What a receive attempt found.
pub(crate) enum Take {
    /// A message, now in flight under `tag`.
    Message { tag: u64, entry: Entry },
    /// Nothing ready; something becomes due at this instant, if anything.
    Wait(Option<Instant>),
}

pub(crate) struct GroupQueue {
    pub topic: Arc<str>,
    pub group: Arc<str>,
    state: Mutex<QueueState>,
    pub notify: Notify,
}

impl GroupQueue {
    pub fn new(topic: String, group: String, backlog: impl Iterator<Item = Entry>) -> Self {
        let state = QueueState {
            ready: backlog.collect(),
            ..QueueState::default()
        };
        Self {
            topic: topic.into(),
            group: group.into(),
            state: Mutex::new(state),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // Every critical section moves whole entries between collections: consistent even if a
        // fault hook panicked while the lock was held.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn push(&self, entry: Entry) {
        self.lock().ready.push_back(entry);
        self.notify.notify_waiters();
    }

    /// Takes the next ready message for `subscriber`, applying delivery faults.
    pub fn take(&self, subscriber: u64, faults: &FaultInjector) -> Take {
        let now = Instant::now();
        let mut state = self.lock();
        while let Some(entry) = state.delayed.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let entry = entry.remove();
            state.ready.push_back(entry);
        }
        loop {
            let Some(entry) = state.ready.pop_front() else {
                return Take::Wait(state.delayed.keys().next().map(|k| k.0));
            };
            let fault = if entry.fault_applied {
                None
            } else {
                faults.delivery_fault(&DeliveryContext {
                    topic: &self.topic,
                    group: &self.group,
                    message: &entry.message,
                    redelivered: entry.redelivered,
                })
            };
            let mut entry = entry;
            entry.fault_applied = false;
            match fault {
                Some(DeliveryFault::Delay(d)) => {
                    entry.fault_applied = true;
                    let seq = state.next_delay_seq;
                    state.next_delay_seq += 1;
                    state.delayed.insert((now + d, seq), entry);
                    continue;
                }
                Some(DeliveryFault::Duplicate) => {
                    let mut copy = entry.clone();
                    copy.redelivered = true;
                    copy.fault_applied = true;
                    state.ready.push_back(copy);
                }
                None => {}
            }
            let tag = state.next_tag;
            state.next_tag += 1;
            state.in_flight.insert(tag, (subscriber, entry.clone()));
            return Take::Message { tag, entry };
        }
    }

    /// Whether `tag` is still in flight.
    pub fn is_in_flight(&self, tag: u64) -> bool {
        self.lock().in_flight.contains_key(&tag)
    }

    /// Removes `tag` from flight (ack). `None` when it is no longer in flight.
    pub fn complete(&self, tag: u64) -> Option<Entry> {
        self.lock().in_flight.remove(&tag).map(|(_, e)| e)
    }

    /// Puts `tag` back at its log position, flagged redelivered. False if not in flight.
    pub fn requeue(&self, tag: u64) -> bool {
        let mut state = self.lock();
        let Some((_, entry)) = state.in_flight.remove(&tag) else {
            return false;
        };
        state.put_back(entry);
        drop(state);
        self.notify.notify_waiters();
        true
    }

    /// Replaces in-flight `tag` with `copy`, deliverable at `due`. False if not in flight.
    pub fn replace_delayed(&self, tag: u64, copy: Entry, due: Instant) -> bool {
        let mut state = self.lock();
        if state.in_flight.remove(&tag).is_none() {
            return false;
        }
        let seq = state.next_delay_seq;
        state.next_delay_seq += 1;
        state.delayed.insert((due, seq), copy);
        drop(state);
        self.notify.notify_waiters();
        true
    }

    /// Returns every message `subscriber` holds in flight to the queue, at their log positions.
    pub fn requeue_subscriber(&self, subscriber: u64) {
        let mut state = self.lock();
        let mut tags: Vec<u64> = state
            .in_flight
            .iter()
            .filter(|(_, (s, _))| *s == subscriber)
            .map(|(t, _)| *t)
            .collect();
        tags.sort_unstable_by(|a, b| b.cmp(a));
        for tag in tags {
            if let Some((_, entry)) = state.in_flight.remove(&tag) {
                state.put_back(entry);
            }
        }
        drop(state);
        self.notify.notify_waiters();
    }

    /// Messages not yet acknowledged: ready, delayed and in flight.
    pub fn pending(&self) -> usize {
        let state = self.lock();
        state.ready.len() + state.delayed.len() + state.in_flight.len()
    }
}
