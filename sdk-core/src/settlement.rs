//! The three ways a delivery can end, and the retry instructions that travel with a copy.

use std::time::{Duration, SystemTime};

use crate::dead_letter::DeadLetterRecord;
use crate::header_names;
use crate::headers::Headers;
use crate::wire_time;

/// How a delivery is settled.
#[derive(Clone, Debug, PartialEq)]
pub enum Settlement {
    /// The work is done: remove the message from the broker.
    Ack,
    /// Deliver a copy again after a delay, then remove this one.
    Retry(RetryRequest),
    /// Publish the message with its dead-letter record (confirmed), then remove this one.
    DeadLetter(DeadLetterRecord),
}

/// Instructions for the retried copy of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryRequest {
    /// How long to wait before the copy may be handled.
    pub delay: Duration,
    /// The attempt number the copy will be on (written to `waybill-attempt`).
    pub next_attempt: u32,
    /// When the first failure happened (written to `waybill-first-failure-at`).
    pub first_failure_at: SystemTime,
}

impl RetryRequest {
    /// Writes `waybill-attempt`, `waybill-first-failure-at` and `waybill-not-before`
    /// (now + delay) into the headers of the copy. Backends call this when they republish.
    pub fn apply_to(&self, headers: &mut Headers) {
        headers.insert(header_names::ATTEMPT, self.next_attempt.to_string());
        headers.insert(
            header_names::FIRST_FAILURE_AT,
            wire_time::format_millis(self.first_failure_at),
        );
        headers.insert(
            header_names::NOT_BEFORE,
            wire_time::format_millis(SystemTime::now() + self.delay),
        );
    }
}
