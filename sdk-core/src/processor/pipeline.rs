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

/// Runs one delivery through claim → handle → classify → settle, inside a span carrying its id.
pub(crate) async fn process(shared: &Shared, delivery: Delivery) {
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
    process_in_span(shared, delivery).instrument(span).await;
}

async fn process_in_span(shared: &Shared, delivery: Delivery) {
    bump(&shared.counters.received);
    let store = shared.config.idempotency.as_deref();
    if let Some(store) = store {
        match claim(shared, store, delivery.message()).await {
            ClaimOutcome::Acquired => {}
            ClaimOutcome::AlreadyDone => {
                debug!("duplicate skipped");
                bump(&shared.counters.duplicates_skipped);
                settle(shared, delivery, Settlement::Ack).await;
                return;
            }
            ClaimOutcome::Abandon => {
                bump(&shared.counters.abandoned);
                return;
            }
        }
    }

    let mut attempt = delivery.message().attempt();
    let mut copy_failures = 0u32;
    let mut first_failure_at = delivery.message().first_failure_at();
    loop {
        let failure = match run_handler(shared, delivery.message()).await {
            Ok(()) => {
                bump(&shared.counters.handled);
                if let Some(store) = store {
                    let id = delivery.message().message().id();
                    if let Err(e) = store.complete(&shared.config.group, id).await {
                        bump(&shared.counters.store_errors);
                        warn!(error = %e, "handled, but the processed marker was not stored: a redelivery would be handled again");
                    }
                }
                settle(shared, delivery, Settlement::Ack).await;
                return;
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
                if !sleep_unless_stopping(shared, delay).await {
                    release(shared, store, delivery.message()).await;
                    bump(&shared.counters.abandoned);
                    return;
                }
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
                return;
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
                return;
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
