//! Per-key serial handling: one message per key at a time, keys in parallel.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit};
use tracing::warn;

use super::pipeline::{process, Outcome, Shared};
use crate::delivery::Delivery;
use crate::message_id::MessageId;

type Queued = (Delivery, OwnedSemaphorePermit);

/// A key with a message being handled (or awaited), and the messages waiting behind it.
#[derive(Default)]
struct KeyLine {
    queue: VecDeque<Queued>,
    /// A message of this key whose settlement failed: the broker delivers it again, and
    /// nothing queued behind it runs until it is back (or the hold runs out).
    awaiting: Option<MessageId>,
    /// Wakes the key's task when the awaited message arrives (made when a message is first
    /// awaited: most lines never await one).
    arrived: Option<Arc<Notify>>,
}

/// Keys that have a message being handled, with the messages waiting behind it.
#[derive(Default)]
pub(crate) struct KeyScheduler {
    lines: Mutex<foldhash::HashMap<Arc<str>, KeyLine>>,
}

impl KeyScheduler {
    /// Handles `delivery` after every earlier message of its key; unkeyed messages go at once.
    /// A message the key awaits (see [`KeyLine::awaiting`]) goes to the front of its line.
    pub fn dispatch(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        delivery: Delivery,
        permit: OwnedSemaphorePermit,
    ) {
        let Some(key) = delivery.message().message().key() else {
            spawn_single(shared, delivery, permit);
            return;
        };
        let key = {
            let mut lines = self.lock();
            if let Some(line) = lines.get_mut(key) {
                let id = delivery.message().message().id();
                if line.awaiting == Some(id) {
                    line.awaiting = None;
                    line.queue.push_front((delivery, permit));
                    if let Some(arrived) = &line.arrived {
                        arrived.notify_one();
                    }
                } else {
                    line.queue.push_back((delivery, permit));
                }
                return;
            }
            let key: Arc<str> = Arc::from(key);
            lines.insert(Arc::clone(&key), KeyLine::default());
            key
        };
        let scheduler = Arc::clone(self);
        let shared = Arc::clone(shared);
        tokio::spawn(async move {
            // Frees the key (giving back whatever waits behind it) if this task ends early,
            // including by a panic outside the handler.
            let mut guard = KeyGuard {
                scheduler: &scheduler,
                key: &key,
                armed: true,
            };
            let (mut delivery, mut permit) = (delivery, permit);
            loop {
                let outcome = process(&shared, delivery).await;
                drop(permit);
                if outcome == Outcome::GivenBack || *shared.stopping.borrow() {
                    // The broker delivers this key's messages again, in order: handling the
                    // ones queued behind now would put them ahead of it.
                    return;
                }
                if let Outcome::Unsettled(id) = outcome {
                    if !scheduler.await_redelivery(&shared, &key, id).await {
                        return;
                    }
                }
                let next = {
                    let mut lines = scheduler.lock();
                    match lines.get_mut(&key).and_then(|line| line.queue.pop_front()) {
                        Some(next) => next,
                        None => {
                            lines.remove(&key);
                            guard.armed = false;
                            return;
                        }
                    }
                };
                (delivery, permit) = next;
            }
        });
    }

    /// Holds `key` until message `id` is delivered again (it then heads the line), the hold
    /// runs out (the key goes on, with a warning) or shutdown begins (returns false).
    async fn await_redelivery(&self, shared: &Shared, key: &str, id: MessageId) -> bool {
        let arrived = {
            let mut lines = self.lock();
            let Some(line) = lines.get_mut(key) else {
                return false;
            };
            // The broker may have delivered it again already (behind later messages of the
            // key, as it was not awaited yet): it heads the line now.
            let back = line
                .queue
                .iter()
                .position(|(d, _)| d.message().message().id() == id);
            if let Some(at) = back {
                let again = line.queue.remove(at).expect("found above");
                line.queue.push_front(again);
                return true;
            }
            line.awaiting = Some(id);
            Arc::clone(line.arrived.get_or_insert_with(Arc::default))
        };
        let mut stopping = shared.stopping.clone();
        tokio::select! {
            () = arrived.notified() => true,
            _ = stopping.wait_for(|s| *s) => false,
            () = tokio::time::sleep(shared.config.redelivery_hold) => {
                let mut lines = self.lock();
                if let Some(line) = lines.get_mut(key) {
                    if line.awaiting.take().is_some() {
                        warn!(
                            message_id = %id,
                            hold = ?shared.config.redelivery_hold,
                            "a message whose settlement failed was not delivered again in time; \
                             later messages of its key go on and may overtake it"
                        );
                    }
                }
                true
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, foldhash::HashMap<Arc<str>, KeyLine>> {
        // Only push/pop/insert/remove happen under the lock: a poisoned map is still consistent.
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a key and gives back its queued deliveries unless disarmed.
struct KeyGuard<'a> {
    scheduler: &'a KeyScheduler,
    key: &'a str,
    armed: bool,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Dropping the deliveries unsettled makes the broker deliver them again.
            let given_back = self.scheduler.lock().remove(self.key);
            drop(given_back);
        }
    }
}

/// Handles one message on its own task.
pub(crate) fn spawn_single(shared: &Arc<Shared>, delivery: Delivery, permit: OwnedSemaphorePermit) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let _ = process(&shared, delivery).await;
        drop(permit);
    });
}
