//! The Processor's side of the idempotency protocol: a handler slot and a claim taken together
//! right before the handler runs, the lease renewed while it runs, the outcome recorded with
//! the claim's fencing token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::{debug, error, warn};

use super::counters::Event;
use super::pipeline::{sleep_unless_stopping, Shared};
use crate::idempotency::{Claim, Completion, HeldClaim, IdempotencyStore};
use crate::incoming::IncomingMessage;

/// What a claim attempt decided.
pub(crate) enum Acquisition<'a> {
    /// Run the handler now, in this slot, under this claim (`None` without a store).
    Run {
        slot: Option<SemaphorePermit<'a>>,
        claim: Option<HeldClaim>,
    },
    /// The message was handled before: acknowledge it.
    AlreadyDone,
    /// The message was dead-lettered before and this copy is no replay: acknowledge it.
    DeadLettered,
    /// Shutdown began: give the delivery back.
    Abandon,
}

/// Takes a handler slot, then the claim. The claim is taken only once the slot is held, so a
/// lease never runs down while the message waits for a slot; while another holder's lease is
/// live the slot is given up during the wait. Store failures are retried with backoff: a
/// message is never handled without a claim when a store is configured.
pub(crate) async fn acquire<'a>(shared: &'a Shared, incoming: &IncomingMessage) -> Acquisition<'a> {
    let mut waits = 0u32;
    loop {
        let slot = match &shared.running {
            None => None,
            // A free slot is taken at once (unless shutdown began); only a wait for one
            // watches for shutdown.
            Some(limit) => {
                let free = if *shared.stopping.borrow() {
                    None
                } else {
                    limit.try_acquire().ok()
                };
                let permit = match free {
                    Some(permit) => Some(permit),
                    None => Box::pin(wait_for_slot(shared, limit)).await,
                };
                let Some(permit) = permit else {
                    return Acquisition::Abandon;
                };
                Some(permit)
            }
        };
        let Some(store) = shared.config.idempotency.as_deref() else {
            return Acquisition::Run { slot, claim: None };
        };
        let id = incoming.message().id();
        let group = &shared.config.group;
        let wait = match store.claim(group, id, shared.config.claim_lease).await {
            Ok(Claim::Acquired(token)) => {
                shared.counters.bump(Event::ClaimAcquired);
                let claim = HeldClaim::new(Arc::clone(&shared.group), id, token);
                return Acquisition::Run {
                    slot,
                    claim: Some(claim),
                };
            }
            Ok(Claim::AlreadyDone) => return Acquisition::AlreadyDone,
            Ok(Claim::DeadLettered) if !incoming.is_replay() => return Acquisition::DeadLettered,
            Ok(Claim::DeadLettered) => match store.reopen(group, id).await {
                Ok(_) => {
                    debug!("replayed dead letter reopened");
                    continue;
                }
                Err(e) => {
                    shared.counters.bump(Event::StoreError);
                    warn!(error = %e, "could not reopen a dead-lettered message for its replay; retrying");
                    shared.config.retry.delay_for(waits + 1)
                }
            },
            Ok(Claim::InFlight { lease_remaining }) => {
                debug!(?lease_remaining, "message in flight elsewhere; waiting");
                lease_remaining.min(shared.config.retry.delay_for(waits + 1))
            }
            Err(e) => {
                shared.counters.bump(Event::StoreError);
                warn!(error = %e, "idempotency claim failed; retrying");
                shared.config.retry.delay_for(waits + 1)
            }
        };
        drop(slot);
        waits = waits.saturating_add(1);
        // Boxed, as every wait off the common path: a message's task stays small.
        if !Box::pin(sleep_unless_stopping(
            shared,
            wait.max(Duration::from_millis(1)),
        ))
        .await
        {
            return Acquisition::Abandon;
        }
    }
}

/// Waits for a handler slot; `None` once shutdown began.
async fn wait_for_slot<'a>(shared: &Shared, limit: &'a Semaphore) -> Option<SemaphorePermit<'a>> {
    let mut stopping = shared.stopping.clone();
    tokio::select! {
        biased;
        _ = stopping.wait_for(|s| *s) => None,
        permit = limit.acquire() => Some(permit.expect("semaphore never closed")),
    }
}

/// Runs `work` while renewing `claim`'s lease every third of it, so a handler slower than the
/// lease keeps its claim. A renewal refused because another consumer took the message over
/// is logged and counted; the handler is not interrupted, and its outcome will be refused.
pub(crate) async fn with_renewal<T>(
    shared: &Shared,
    claim: Option<&HeldClaim>,
    work: impl Future<Output = T>,
) -> T {
    let (Some(claim), Some(store)) = (claim, shared.config.idempotency.as_deref()) else {
        return work.await;
    };
    let mut work = std::pin::pin!(work);
    // Most handlers finish within their first poll: the renewal (a timer, boxed so that every
    // message's task stays small) is set up only for those that do not.
    if let Poll::Ready(done) = poll_once(work.as_mut()).await {
        return done;
    }
    let renewal = Box::pin(keep_renewed(shared, store, claim));
    tokio::select! {
        biased;
        done = work => done,
        never = renewal => match never {},
    }
}

/// Polls `work` once and says what it gave.
async fn poll_once<T>(mut work: Pin<&mut impl Future<Output = T>>) -> Poll<T> {
    std::future::poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await
}

enum Never {}

async fn keep_renewed(shared: &Shared, store: &dyn IdempotencyStore, claim: &HeldClaim) -> Never {
    let lease = shared.config.claim_lease;
    let every = (lease / 3).max(Duration::from_millis(10));
    let mut lost = false;
    loop {
        tokio::time::sleep(every).await;
        if lost {
            continue;
        }
        match store
            .renew(claim.group(), claim.id(), claim.token(), lease)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_holder() => {
                lost = true;
                shared.counters.bump(Event::LeaseLost);
                error!(
                    "the claim lapsed and another consumer took the message over while this \
                     handler runs; its outcome will be refused (a transactional marker rolls \
                     its effect back)"
                );
            }
            Err(e) => {
                shared.counters.bump(Event::StoreError);
                warn!(error = %e, "could not renew the claim; trying again");
            }
        }
    }
}

/// Records how the claim ended, retrying store failures with backoff until shutdown: a
/// missing marker would let a later copy of the message have its effect again.
pub(crate) async fn finish(shared: &Shared, claim: Option<&HeldClaim>, completion: Completion) {
    let (Some(claim), Some(store)) = (claim, shared.config.idempotency.as_deref()) else {
        return;
    };
    let mut failures = 0u32;
    loop {
        match store
            .complete(claim.group(), claim.id(), claim.token(), completion)
            .await
        {
            Ok(()) => return,
            Err(e) if e.is_not_holder() => {
                shared.counters.bump(Event::LeaseLost);
                error!(
                    ?completion,
                    "the claim was taken over by another consumer before this outcome was \
                     recorded: without a transactional marker the effect may have happened twice"
                );
                return;
            }
            Err(e) => {
                shared.counters.bump(Event::StoreError);
                failures = failures.saturating_add(1);
                warn!(error = %e, "the outcome was not stored yet; retrying");
                let wait = shared.config.retry.delay_for(failures);
                if !Box::pin(sleep_unless_stopping(shared, wait)).await {
                    warn!("shutdown before the outcome was stored: a redelivery would be handled again");
                    return;
                }
            }
        }
    }
}

/// Gives the claim up so the next copy can be claimed at once.
pub(crate) async fn release(shared: &Shared, claim: Option<&HeldClaim>) {
    let (Some(claim), Some(store)) = (claim, shared.config.idempotency.as_deref()) else {
        return;
    };
    if let Err(e) = store
        .release(claim.group(), claim.id(), claim.token())
        .await
    {
        shared.counters.bump(Event::StoreError);
        warn!(error = %e, "could not release claim; it lapses with its lease");
    }
}
