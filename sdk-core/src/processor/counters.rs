//! Counters the application can read while the processor runs.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use super::instruments::Instruments;
use crate::incoming::Origin;

/// What happened, counted in [`Counters`] and, where an instrument exists, in the metrics
/// recorder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Received,
    Handled,
    FailedAttempt,
    Retried,
    DeadLettered,
    DuplicateSkipped,
    Panic,
    Abandoned,
    SettleError,
    DestinationWait,
    StoreError,
    LeaseLost,
    ReceiveError,
    /// A message dead-lettered unhandled behind its key's dead message (also `DeadLettered`).
    HeldBack,
    /// A claim was taken (metrics only).
    ClaimAcquired,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub received: AtomicU64,
    pub handled: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub duplicates_skipped: AtomicU64,
    pub panics: AtomicU64,
    pub abandoned: AtomicU64,
    pub settle_errors: AtomicU64,
    pub destination_waits: AtomicU64,
    pub store_errors: AtomicU64,
    pub leases_lost: AtomicU64,
    pub receive_errors: AtomicU64,
    pub held_back: AtomicU64,
    /// The metrics handles, registered at the start when the subscriber names its destination,
    /// else at the first delivery (its destination names them).
    instruments: OnceLock<Instruments>,
}

impl Counters {
    /// Registers the metrics handles for the destination and group of `origin`, once.
    pub fn observe(&self, origin: &Origin, group: &str) {
        self.register(&origin.topic, group);
    }

    /// Registers the metrics handles for `destination` and `group`, once (the first call
    /// names them).
    pub fn register(&self, destination: &str, group: &str) {
        self.instruments
            .get_or_init(|| Instruments::new(destination, group));
    }

    /// The metrics handles, once a delivery registered them.
    pub fn instruments(&self) -> Option<&Instruments> {
        self.instruments.get()
    }

    /// Counts `event`.
    pub fn bump(&self, event: Event) {
        let instruments = self.instruments.get();
        let (atomic, counter) = match event {
            Event::Received => (Some(&self.received), instruments.map(|i| &i.consumed)),
            Event::Handled => (Some(&self.handled), None),
            Event::FailedAttempt => (Some(&self.failed_attempts), None),
            Event::Retried => (Some(&self.retried), instruments.map(|i| &i.retries)),
            Event::DeadLettered => (
                Some(&self.dead_lettered),
                instruments.map(|i| &i.dead_lettered),
            ),
            Event::DuplicateSkipped => {
                if let Some(i) = instruments {
                    i.claims_duplicate.increment(1);
                }
                (
                    Some(&self.duplicates_skipped),
                    instruments.map(|i| &i.duplicates_skipped),
                )
            }
            Event::Panic => (Some(&self.panics), instruments.map(|i| &i.handler_panics)),
            Event::Abandoned => (Some(&self.abandoned), None),
            Event::SettleError => (
                Some(&self.settle_errors),
                instruments.map(|i| &i.settle_errors),
            ),
            Event::DestinationWait => (Some(&self.destination_waits), None),
            Event::StoreError => (
                Some(&self.store_errors),
                instruments.map(|i| &i.claims_store_error),
            ),
            Event::LeaseLost => (
                Some(&self.leases_lost),
                instruments.map(|i| &i.claims_lease_lost),
            ),
            Event::ReceiveError => (Some(&self.receive_errors), None),
            Event::HeldBack => (Some(&self.held_back), None),
            Event::ClaimAcquired => (None, instruments.map(|i| &i.claims_acquired)),
        };
        if let Some(atomic) = atomic {
            atomic.fetch_add(1, Relaxed);
        }
        if let Some(counter) = counter {
            counter.increment(1);
        }
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            received: self.received.load(Relaxed),
            handled: self.handled.load(Relaxed),
            failed_attempts: self.failed_attempts.load(Relaxed),
            retried: self.retried.load(Relaxed),
            dead_lettered: self.dead_lettered.load(Relaxed),
            duplicates_skipped: self.duplicates_skipped.load(Relaxed),
            panics: self.panics.load(Relaxed),
            abandoned: self.abandoned.load(Relaxed),
            settle_errors: self.settle_errors.load(Relaxed),
            destination_waits: self.destination_waits.load(Relaxed),
            store_errors: self.store_errors.load(Relaxed),
            leases_lost: self.leases_lost.load(Relaxed),
            receive_errors: self.receive_errors.load(Relaxed),
            held_back: self.held_back.load(Relaxed),
        }
    }
}

/// A point-in-time copy of the processor's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    /// Deliveries received from the subscriber (duplicates and redeliveries included).
    pub received: u64,
    /// Deliveries whose handler succeeded (their effect happened; see `settle_errors` for acks
    /// the broker then refused).
    pub handled: u64,
    /// Handler attempts that failed (errors and panics).
    pub failed_attempts: u64,
    /// Retries scheduled, in process or on the broker.
    pub retried: u64,
    /// Messages published to the dead letter and acknowledged.
    pub dead_lettered: u64,
    /// Deliveries skipped because the idempotency store had them as done or dead-lettered.
    pub duplicates_skipped: u64,
    /// Handler panics caught (also counted in `failed_attempts`).
    pub panics: u64,
    /// Deliveries given back unsettled (shutdown, failed settlement): the broker redelivers them.
    pub abandoned: u64,
    /// Acks, retries or dead letters the broker refused.
    pub settle_errors: u64,
    /// Retry or dead-letter copies that found no destination (a topic or queue not created
    /// yet; also counted in `settle_errors`): the message was given back and the same
    /// settlement is tried again with backoff. Alert when it grows.
    pub destination_waits: u64,
    /// Idempotency store operations that failed.
    pub store_errors: u64,
    /// Claims lost while handling: another consumer took the message over after this one's
    /// lease lapsed (a renewal or the outcome was refused by the fencing token).
    pub leases_lost: u64,
    /// Transient receive errors.
    pub receive_errors: u64,
    /// Messages dead-lettered unhandled because an earlier message of their key is dead
    /// ([`DeadLetterMode::HoldKey`](crate::DeadLetterMode::HoldKey); also counted in
    /// `dead_lettered`).
    pub held_back: u64,
}

impl CountersSnapshot {
    /// Deliveries that reached a final settlement: handled + dead-lettered + duplicates skipped.
    pub fn settled(&self) -> u64 {
        self.handled + self.dead_lettered + self.duplicates_skipped
    }
}
