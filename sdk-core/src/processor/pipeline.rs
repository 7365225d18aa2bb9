//! What happens to one delivery, in the fixed order the runtime guarantees.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn, Instrument};

use super::claims::{self, Acquisition};
use super::config::ProcessorConfig;
use super::counters::{bump, Counters};
use super::handler_run::run_handler;
use crate::dead_letter::{DeadLetterRecord, ErrorClass};
use crate::delivery::Delivery;
use crate::handler::Handler;
use crate::idempotency::Completion;
use crate::message_id::MessageId;
use crate::retry_policy::RetryDecision;
use crate::settlement::{RetryRequest, Settlement};

/// State shared by the fetch loop and every message task.
pub(crate) struct Shared {
    pub config: ProcessorConfig,
    /// The group name, shared by every claim.
    pub group: Arc<str>,
    pub handler: Arc<dyn Handler>,
    pub counters: Arc<Counters>,
    pub stopping: watch::Receiver<bool>,
    /// Limits running handlers when messages are buffered behind their keys.
    pub running: Option<Arc<Semaphore>>,
}

/// How a delivery left the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Acked, retried on the broker or dead-lettered, or acknowledged after its effect was
    /// recorded (a refused ack then only brings a duplicate the store skips): its successors
    /// may go on.
    Settled,
    /// Given back unsettled (shutdown): the broker delivers it again, so messages of the same
    /// key queued behind it must not be handled before it.
    GivenBack,
    /// Its retry or dead-letter copy could not be published, so the broker delivers this
    /// message again: its key must wait for that copy before its successors go on.
    Unsettled(MessageId),
}

/// Runs one delivery through claim → handle → classify → settle, inside a span carrying its id.
pub(crate) async fn process(shared: &Shared, delivery: Delivery) -> Outcome {
    let incoming = delivery.message();
    let span = tracing::info_span!(
        "waybill.handle",
        message_id = %incoming.message().id(),
        topic = %incoming.origin().topic,
        group = %shared.config.group,
        attempt = incoming.attempt(),
        trace_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        if let Some(trace) = incoming.message().trace_parent() {
            span.record("trace_id", trace.trace_id());
        }
    }
    process_in_span(shared, delivery).instrument(span).await
}

async fn process_in_span(shared: &Shared, mut delivery: Delivery) -> Outcome {
    bump(&shared.counters.received);
    let id = delivery.message().message().id();
    let mut attempt = delivery.message().attempt();
    let mut copy_failures = 0u32;
    let mut first_failure_at = delivery.message().first_failure_at();
    loop {
        let (slot, claim) = match claims::acquire(shared, delivery.message()).await {
            Acquisition::Run { slot, claim } => (slot, claim),
            Acquisition::AlreadyDone | Acquisition::DeadLettered => {
                debug!("duplicate skipped");
                bump(&shared.counters.duplicates_skipped);
                settle(shared, delivery, Settlement::Ack).await;
                return Outcome::Settled;
            }
            Acquisition::Abandon => {
                bump(&shared.counters.abandoned);
                return Outcome::GivenBack;
            }
        };
        delivery.set_claim(claim.clone());
        let result = claims::with_renewal(
            shared,
            claim.as_ref(),
            run_handler(shared, delivery.message()),
        )
        .await;
        let failure = match result {
            Ok(()) => {
                bump(&shared.counters.handled);
                claims::finish(shared, claim.as_ref(), Completion::Handled).await;
                drop(slot);
                settle(shared, delivery, Settlement::Ack).await;
                return Outcome::Settled;
            }
            Err(failure) => failure,
        };
        drop(slot);
        delivery.set_claim(None);
        bump(&shared.counters.failed_attempts);
        let now = SystemTime::now();
        let first = *first_failure_at.get_or_insert(now);
        copy_failures += 1;
        let decision = match failure.class {
            ErrorClass::Permanent => RetryDecision::GiveUp,
            ErrorClass::Transient | ErrorClass::Panic => {
                shared
                    .config
                    .retry
                    .decide(attempt, copy_failures, first, failure.requested_delay)
            }
        };
        debug!(attempt, class = %failure.class, error = %failure.text, ?decision, "attempt failed");
        match decision {
            RetryDecision::InProcess(delay) => {
                bump(&shared.counters.retried);
                // Give the claim up while waiting: a copy arriving meanwhile may be handled by
                // whoever claims it; this one claims again (and may find it done) after the wait.
                claims::release(shared, claim.as_ref()).await;
                if !sleep_unless_stopping(shared, delay).await {
                    bump(&shared.counters.abandoned);
                    return Outcome::GivenBack;
                }
                attempt = attempt.saturating_add(1);
            }
            RetryDecision::Broker(delay) => {
                bump(&shared.counters.retried);
                claims::release(shared, claim.as_ref()).await;
                let request = RetryRequest {
                    delay,
                    next_attempt: attempt.saturating_add(1),
                    first_failure_at: first,
                };
                if settle(shared, delivery, Settlement::Retry(request)).await {
                    return Outcome::Settled;
                }
                return Outcome::Unsettled(id);
            }
            RetryDecision::GiveUp => {
                let record = DeadLetterRecord::for_delivery(
                    delivery.message(),
                    attempt,
                    first,
                    now,
                    failure.class,
                    failure.text,
                );
                warn!(attempts = attempt, class = %record.error_class, error = %record.error_message, "dead-lettering");
                if settle(shared, delivery, Settlement::DeadLetter(record)).await {
                    bump(&shared.counters.dead_lettered);
                    // Later copies of a dead-lettered message are skipped until it is replayed.
                    claims::finish(shared, claim.as_ref(), Completion::DeadLettered).await;
                    return Outcome::Settled;
                }
                claims::release(shared, claim.as_ref()).await;
                return Outcome::Unsettled(id);
            }
        }
    }
}

/// Settles; returns whether the broker accepted. A refused settlement leaves the message to be
/// delivered again.
async fn settle(shared: &Shared, delivery: Delivery, settlement: Settlement) -> bool {
    match delivery.settle(settlement).await {
        Ok(()) => true,
        Err(e) => {
            bump(&shared.counters.settle_errors);
            warn!(error = %e, "settlement failed; the message will be delivered again");
            false
        }
    }
}

/// Sleeps for `delay`; returns false at once if shutdown began.
pub(crate) async fn sleep_unless_stopping(shared: &Shared, delay: Duration) -> bool {
    let mut stopping = shared.stopping.clone();
    if *stopping.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stopping.wait_for(|s| *s) => false,
    }
}
