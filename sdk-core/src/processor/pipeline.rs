//! What happens to one delivery, in the fixed order the runtime guarantees.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn, Instrument};

use super::config::ProcessorConfig;
use super::counters::{bump, Counters};
use crate::dead_letter::{DeadLetterRecord, ErrorClass};
use crate::delivery::Delivery;
use crate::handler::{Handler, HandlerError};
use crate::idempotency::{Claim, IdempotencyStore};
use crate::incoming::IncomingMessage;
use crate::retry_policy::RetryDecision;
use crate::settlement::{RetryRequest, Settlement};

/// State shared by the fetch loop and every message task.
pub(crate) struct Shared {
    pub config: ProcessorConfig,
    pub handler: Arc<dyn Handler>,
    pub counters: Arc<Counters>,
    pub stopping: watch::Receiver<bool>,
    /// Limits running handlers when messages are buffered behind their keys.
    pub running: Option<Arc<Semaphore>>,
}

/// A failed attempt, classified.
struct Failure {
    class: ErrorClass,
    requested_delay: Option<Duration>,
    text: String,
}

enum ClaimOutcome {
    Acquired,
    AlreadyDone,
    Abandon,
}

/// How a delivery left the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Acked, retried on the broker or dead-lettered (or the broker refused the settlement,
    /// and will deliver it again: its successors may go on, the effect or dead letter is done).
    Settled,
    /// Given back unsettled (shutdown): the broker delivers it again, so messages of the same
    /// key queued behind it must not be handled before it.
    GivenBack,
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

/// Claims (when a store is configured). `None` means the delivery was finished here: skipped
/// as a duplicate, or given back.
async fn claim_or_finish(shared: &Shared, delivery: Delivery) -> Result<Delivery, Outcome> {
    let Some(store) = shared.config.idempotency.as_deref() else {
        return Ok(delivery);
    };
    match claim(shared, store, delivery.message()).await {
        ClaimOutcome::Acquired => Ok(delivery),
        ClaimOutcome::AlreadyDone => {
            debug!("duplicate skipped");
            bump(&shared.counters.duplicates_skipped);
            settle(shared, delivery, Settlement::Ack).await;
            Err(Outcome::Settled)
        }
        ClaimOutcome::Abandon => {
            bump(&shared.counters.abandoned);
            Err(Outcome::GivenBack)
        }
    }
}

async fn process_in_span(shared: &Shared, delivery: Delivery) -> Outcome {
    bump(&shared.counters.received);
    let store = shared.config.idempotency.as_deref();
    let mut delivery = match claim_or_finish(shared, delivery).await {
        Ok(d) => d,
        Err(outcome) => return outcome,
    };
    let mut attempt = delivery.message().attempt();
    let mut copy_failures = 0u32;
    let mut first_failure_at = delivery.message().first_failure_at();
    loop {
        let failure = match run_handler(shared, delivery.message()).await {
            Ok(()) => {
                bump(&shared.counters.handled);
                complete(shared, store, delivery.message()).await;
                settle(shared, delivery, Settlement::Ack).await;
                return Outcome::Settled;
            }
            Err(failure) => failure,
        };
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
                // Give the claim up while waiting: a wait may outlast the lease, and a copy
                // arriving meanwhile must not find a lapsed claim that we still act on.
                release(shared, store, delivery.message()).await;
                if !sleep_unless_stopping(shared, delay).await {
                    bump(&shared.counters.abandoned);
                    return Outcome::GivenBack;
                }
                delivery = match claim_or_finish(shared, delivery).await {
                    Ok(d) => d,
                    Err(outcome) => return outcome,
                };
                attempt = attempt.saturating_add(1);
            }
            RetryDecision::Broker(delay) => {
                bump(&shared.counters.retried);
                release(shared, store, delivery.message()).await;
                let request = RetryRequest {
                    delay,
                    next_attempt: attempt.saturating_add(1),
                    first_failure_at: first,
                };
                settle(shared, delivery, Settlement::Retry(request)).await;
                return Outcome::Settled;
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
                let message = delivery.message().clone();
                if settle(shared, delivery, Settlement::DeadLetter(record)).await {
                    bump(&shared.counters.dead_lettered);
                }
                release(shared, store, &message).await;
                return Outcome::Settled;
            }
        }
    }
}

/// Records the message as done, retrying store failures with backoff until shutdown: a
/// missing marker would let a later copy of the message have its effect again.
async fn complete(
    shared: &Shared,
    store: Option<&dyn IdempotencyStore>,
    incoming: &IncomingMessage,
) {
    let Some(store) = store else { return };
    let id = incoming.message().id();
    let mut failures = 0u32;
    loop {
        match store.complete(&shared.config.group, id).await {
            Ok(()) => return,
            Err(e) => {
                bump(&shared.counters.store_errors);
                failures = failures.saturating_add(1);
                warn!(error = %e, "handled, but the processed marker was not stored yet; retrying");
                if !sleep_unless_stopping(shared, shared.config.retry.delay_for(failures)).await {
                    warn!("shutdown before the processed marker was stored: a redelivery would be handled again");
                    return;
                }
            }
        }
    }
}

/// Claims the message, waiting while another holder's lease is live. Store failures are retried
/// with backoff: a message is never handled without a claim when a store is configured.
async fn claim(
    shared: &Shared,
    store: &dyn IdempotencyStore,
    incoming: &IncomingMessage,
) -> ClaimOutcome {
    let id = incoming.message().id();
    let mut waits = 0u32;
    loop {
        let wait = match store
            .claim(&shared.config.group, id, shared.config.claim_lease)
            .await
        {
            Ok(Claim::Acquired) => return ClaimOutcome::Acquired,
            Ok(Claim::AlreadyDone) => return ClaimOutcome::AlreadyDone,
            Ok(Claim::InFlight { lease_remaining }) => {
                debug!(?lease_remaining, "message in flight elsewhere; waiting");
                lease_remaining.min(shared.config.retry.delay_for(waits + 1))
            }
            Err(e) => {
                bump(&shared.counters.store_errors);
                warn!(error = %e, "idempotency claim failed; retrying");
                shared.config.retry.delay_for(waits + 1)
            }
        };
        waits = waits.saturating_add(1);
        if !sleep_unless_stopping(shared, wait.max(Duration::from_millis(1))).await {
            return ClaimOutcome::Abandon;
        }
    }
}

async fn release(
    shared: &Shared,
    store: Option<&dyn IdempotencyStore>,
    incoming: &IncomingMessage,
) {
    if let Some(store) = store {
        if let Err(e) = store
            .release(&shared.config.group, incoming.message().id())
            .await
        {
            bump(&shared.counters.store_errors);
            warn!(error = %e, "could not release claim; it lapses with its lease");
        }
    }
}

/// Runs the handler with panics caught and classified.
async fn run_handler(shared: &Shared, incoming: &IncomingMessage) -> Result<(), Failure> {
    let _running = match &shared.running {
        Some(limit) => Some(limit.acquire().await.expect("semaphore never closed")),
        None => None,
    };
    let outcome = AssertUnwindSafe(shared.handler.handle(incoming))
        .catch_unwind()
        .await;
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(HandlerError::Transient(e))) => Err(Failure {
            class: ErrorClass::Transient,
            requested_delay: None,
            text: e.to_string(),
        }),
        Ok(Err(HandlerError::RetryAfter(delay, e))) => Err(Failure {
            class: ErrorClass::Transient,
            requested_delay: Some(delay),
            text: e.to_string(),
        }),
        Ok(Err(HandlerError::Permanent(e))) => Err(Failure {
            class: ErrorClass::Permanent,
            requested_delay: None,
            text: e.to_string(),
        }),
        Err(panic) => {
            bump(&shared.counters.panics);
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            warn!(panic = %text, "handler panicked");
            Err(Failure {
                class: ErrorClass::Panic,
                requested_delay: None,
                text: format!("handler panicked: {text}"),
            })
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
async fn sleep_unless_stopping(shared: &Shared, delay: Duration) -> bool {
    let mut stopping = shared.stopping.clone();
    if *stopping.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stopping.wait_for(|s| *s) => false,
    }
}
