//! [`DeadLetterMode::HoldKey`] in the pipeline: a key whose message went dead holds its later
//! messages back (dead-lettered unhandled, "held behind `<id>`") until that message is replayed
//! and handled, or the operator releases the key.

use std::time::Duration;

use tracing::{info, warn};

use super::counters::Event;
use super::pipeline::{sleep_unless_stopping, Shared};
use crate::incoming::IncomingMessage;
use crate::key_holds::{DeadLetterMode, KeyHoldStore};
use crate::message_id::MessageId;

/// What the key's hold says about a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HoldCheck {
    /// Handle it. `head` when the key is held behind this very message (its replay, or a
    /// redelivery after a crash between the hold and the dead letter): its success lifts the
    /// hold.
    Go { head: bool },
    /// Dead-letter it unhandled: its key is held behind this other message.
    HeldBehind(MessageId),
    /// Shutdown began while the store failed: give the delivery back.
    Abandon,
}

/// The key-hold store and the message's key, when the processor holds keys and the message
/// has one.
fn holding<'a>(
    shared: &'a Shared,
    incoming: &'a IncomingMessage,
) -> Option<(&'a dyn KeyHoldStore, &'a str)> {
    if shared.config.dead_letter_mode != DeadLetterMode::HoldKey {
        return None;
    }
    let store = shared.config.key_holds.as_deref()?;
    Some((store, incoming.message().key()?))
}

/// Reads the hold on the message's key. Store failures are retried with backoff, so a
/// message of a held key is never handled because the store did not answer.
///
/// Without key holding it answers at once; the store's path is boxed so that the common
/// case keeps every message's task small.
pub(crate) async fn check(shared: &Shared, incoming: &IncomingMessage) -> HoldCheck {
    let Some((store, key)) = holding(shared, incoming) else {
        return HoldCheck::Go { head: false };
    };
    let id = incoming.message().id();
    let answer = Box::pin(retrying(shared, "read the hold on its key", || {
        store.held_behind(&shared.config.group, key)
    }))
    .await;
    match answer {
        None => HoldCheck::Abandon,
        Some(None) => HoldCheck::Go { head: false },
        Some(Some(head)) if head == id => HoldCheck::Go { head: true },
        Some(Some(head)) => HoldCheck::HeldBehind(head),
    }
}

/// Holds the message's key behind it, before its dead letter is published (so that no later
/// message of the key can be handled once the dead letter is out). Returns false when
/// shutdown began while the store failed; true at once when keys are not held.
pub(crate) async fn hold(shared: &Shared, incoming: &IncomingMessage) -> bool {
    let Some((store, key)) = holding(shared, incoming) else {
        return true;
    };
    let id = incoming.message().id();
    let held = Box::pin(retrying(shared, "hold its key", || {
        store.hold(&shared.config.group, key, id)
    }))
    .await;
    match held {
        Some(behind) => {
            warn!(key, held_behind = %behind, "key held: its later messages are dead-lettered unhandled until the dead one is replayed and handled, or the key released");
            true
        }
        None => false,
    }
}

/// Lifts the hold the message's key had behind it, now that it was handled.
pub(crate) async fn release(shared: &Shared, incoming: &IncomingMessage) {
    let Some((store, key)) = holding(shared, incoming) else {
        return;
    };
    let id = incoming.message().id();
    let released = Box::pin(retrying(shared, "release its key", || {
        store.release(&shared.config.group, key, id)
    }))
    .await;
    match released {
        Some(_) => info!(key, message_id = %id, "held key released: its dead message was handled"),
        None => warn!(
            alert = true,
            key,
            message_id = %id,
            "shutdown began before the hold on this key could be lifted, although the message \
             it waited for was handled: its later messages stay held; release the key"
        ),
    }
}

/// Calls `operation` until it answers, backing off on store errors; `None` once shutdown began.
async fn retrying<T, F, Fut>(shared: &Shared, what: &str, mut operation: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::idempotency::StoreError>>,
{
    let mut failures = 0u32;
    loop {
        match operation().await {
            Ok(answer) => return Some(answer),
            Err(e) => {
                shared.counters.bump(Event::StoreError);
                failures = failures.saturating_add(1);
                let wait = shared.config.retry.delay_for(failures);
                warn!(error = %e, ?wait, "the key-hold store failed to {what}; retrying");
                if !sleep_unless_stopping(shared, wait.max(Duration::from_millis(1))).await {
                    return None;
                }
            }
        }
    }
}
