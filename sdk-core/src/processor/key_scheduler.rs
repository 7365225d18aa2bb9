//! Per-key serial handling: one message per key at a time, keys in parallel.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;

use super::pipeline::{process, Outcome, Shared};
use crate::delivery::Delivery;

type Queued = (Delivery, OwnedSemaphorePermit);

/// Keys that have a message being handled, with the messages waiting behind it.
#[derive(Default)]
pub(crate) struct KeyScheduler {
    waiting: Mutex<HashMap<String, VecDeque<Queued>>>,
}

impl KeyScheduler {
    /// Handles `delivery` after every earlier message of its key; unkeyed messages go at once.
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
            let mut waiting = self.lock();
            if let Some(queue) = waiting.get_mut(key) {
                queue.push_back((delivery, permit));
                return;
            }
            let key = key.to_owned();
            waiting.insert(key.clone(), VecDeque::new());
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
                let next = {
                    let mut waiting = scheduler.lock();
                    match waiting.get_mut(&key).and_then(VecDeque::pop_front) {
                        Some(next) => next,
                        None => {
                            waiting.remove(&key);
                            guard.armed = false;
                            return;
                        }
                    }
                };
                (delivery, permit) = next;
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Queued>>> {
        // Only push/pop/insert/remove happen under the lock: a poisoned map is still consistent.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
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
