//! The relay's metrics handles (names in `waybill_core::telemetry`), labelled with the relay's
//! name only.

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use waybill_core::telemetry::attributes::RELAY;
use waybill_core::telemetry::names;

use crate::inspect::Backlog;

/// How often a running relay samples its backlog into the gauges.
pub(crate) const BACKLOG_SAMPLE_EVERY: Duration = Duration::from_secs(15);

/// Handles registered when the relay is made: install the recorder first.
pub(crate) struct RelayInstruments {
    published: Counter,
    order_breaches: Counter,
    batch_duration: Histogram,
    pending: Gauge,
    oldest_pending_age: Gauge,
    dead_rows: Gauge,
    shards_owned: Gauge,
    ready: Gauge,
}

impl RelayInstruments {
    pub fn new(relay: &str) -> Self {
        let labels = [(RELAY, relay.to_owned())];
        Self {
            published: counter!(names::RELAY_PUBLISHED, &labels),
            order_breaches: counter!(names::RELAY_ORDER_BREACHES, &labels),
            batch_duration: histogram!(names::RELAY_BATCH_DURATION, &labels),
            pending: gauge!(names::RELAY_PENDING, &labels),
            oldest_pending_age: gauge!(names::RELAY_OLDEST_PENDING_AGE, &labels),
            dead_rows: gauge!(names::RELAY_DEAD_ROWS, &labels),
            shards_owned: gauge!(names::RELAY_SHARDS_OWNED, &labels),
            ready: gauge!(names::RELAY_READY, &labels),
        }
    }

    pub fn published(&self, rows: usize) {
        self.published.increment(rows as u64);
    }

    pub fn order_breach(&self) {
        self.order_breaches.increment(1);
    }

    pub fn batch_done(&self, took: Duration) {
        self.batch_duration.record(took.as_secs_f64());
    }

    pub fn health(&self, ready: bool, shards_owned: usize) {
        self.ready.set(if ready { 1.0 } else { 0.0 });
        self.shards_owned.set(shards_owned as f64);
    }

    pub fn backlog(&self, backlog: &Backlog) {
        self.pending.set(backlog.pending as f64);
        self.oldest_pending_age.set(backlog.oldest_age_seconds);
        self.dead_rows.set(backlog.dead as f64);
    }
}
