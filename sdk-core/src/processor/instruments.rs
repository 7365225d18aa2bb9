//! The processor's metrics handles, registered once — at the start when the subscriber names
//! its destination, else at the first delivery (see [`crate::telemetry`] for names and
//! attributes).

use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::telemetry::attributes::{CLAIM_RESULT, DESTINATION, GROUP, OUTCOME};
use crate::telemetry::names;

/// How a handler run ended, for `messaging.process.duration`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunEnd {
    Ok,
    Error,
    Panic,
}

/// Handles for one processor (destination and group fixed).
pub(crate) struct Instruments {
    pub consumed: Counter,
    pub retries: Counter,
    pub dead_lettered: Counter,
    pub duplicates_skipped: Counter,
    pub handler_panics: Counter,
    pub settle_errors: Counter,
    pub in_flight: Gauge,
    /// `waybill.processor.ready`: 1 while receiving works, 0 while it fails or once stopped.
    pub ready: Gauge,
    run_ok: Histogram,
    run_error: Histogram,
    run_panic: Histogram,
    pub claims_acquired: Counter,
    pub claims_duplicate: Counter,
    pub claims_lease_lost: Counter,
    pub claims_store_error: Counter,
}

impl Instruments {
    /// Registers the handles for `destination` and `group` with the installed recorder.
    pub fn new(destination: &str, group: &str) -> Self {
        let labels = [
            (DESTINATION, destination.to_owned()),
            (GROUP, group.to_owned()),
        ];
        let with = |key: &'static str, value: &'static str| {
            let mut all: Vec<(&'static str, String)> = labels.to_vec();
            all.push((key, value.to_owned()));
            all
        };
        let ready = gauge!(names::PROCESSOR_READY, &labels);
        // Registered at the start (the subscriber is connected) or at a delivery (receiving
        // works); a failed receive sets it to 0.
        ready.set(1.0);
        Self {
            ready,
            consumed: counter!(names::CONSUMED_MESSAGES, &labels),
            retries: counter!(names::RETRIES, &labels),
            dead_lettered: counter!(names::DEAD_LETTERED, &labels),
            duplicates_skipped: counter!(names::DUPLICATES_SKIPPED, &labels),
            handler_panics: counter!(names::HANDLER_PANICS, &labels),
            settle_errors: counter!(names::SETTLE_ERRORS, &labels),
            in_flight: gauge!(names::IN_FLIGHT, &labels),
            run_ok: histogram!(names::PROCESS_DURATION, &with(OUTCOME, "ok")),
            run_error: histogram!(names::PROCESS_DURATION, &with(OUTCOME, "error")),
            run_panic: histogram!(names::PROCESS_DURATION, &with(OUTCOME, "panic")),
            claims_acquired: counter!(names::INBOX_CLAIMS, &with(CLAIM_RESULT, "acquired")),
            claims_duplicate: counter!(names::INBOX_CLAIMS, &with(CLAIM_RESULT, "duplicate")),
            claims_lease_lost: counter!(names::INBOX_CLAIMS, &with(CLAIM_RESULT, "lease_lost")),
            claims_store_error: counter!(names::INBOX_CLAIMS, &with(CLAIM_RESULT, "store_error")),
        }
    }

    /// Records one handler run.
    pub fn handler_ran(&self, end: RunEnd, took: Duration) {
        let histogram = match end {
            RunEnd::Ok => &self.run_ok,
            RunEnd::Error => &self.run_error,
            RunEnd::Panic => &self.run_panic,
        };
        histogram.record(took.as_secs_f64());
    }
}
