//! Fault injection: hooks that decide, message by message, what goes wrong.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::message::Message;

/// What goes wrong with one publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishFault {
    /// The broker refuses the message: not stored, `NotSent`.
    NotSent,
    /// The confirm is lost: reported `Ambiguous`, stored or not as given.
    Ambiguous {
        /// Whether the broker nevertheless stored the message.
        stored: bool,
    },
    /// The topic does not exist (yet): not stored, `NoDestination`.
    NoDestination,
    /// The broker rejects the message for good: not stored, `Permanent`.
    Permanent,
    /// The confirm arrives after this delay (the publish then succeeds).
    Delay(Duration),
}

/// What goes wrong with one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryFault {
    /// The message is delivered, and a second copy is queued behind it (a broker duplicate).
    Duplicate,
    /// The message becomes deliverable only after this delay.
    Delay(Duration),
}

/// What goes wrong with one acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckFault {
    /// The consumer "crashes" before its ack reaches the broker: the ack fails and the message
    /// is delivered again.
    Lost,
}

/// A publish about to happen.
#[derive(Debug)]
pub struct PublishContext<'a> {
    /// Destination topic.
    pub topic: &'a str,
    /// The message.
    pub message: &'a Message,
}

/// A delivery about to happen.
#[derive(Debug)]
pub struct DeliveryContext<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// The message.
    pub message: &'a Message,
    /// Whether this copy was delivered before.
    pub redelivered: bool,
}

/// An acknowledgement about to happen.
#[derive(Debug)]
pub struct AckContext<'a> {
    /// Source topic.
    pub topic: &'a str,
    /// Consumer group.
    pub group: &'a str,
    /// The message being acknowledged.
    pub message: &'a Message,
}

type PublishHook = dyn Fn(&PublishContext<'_>) -> Option<PublishFault> + Send + Sync;
type DeliveryHook = dyn Fn(&DeliveryContext<'_>) -> Option<DeliveryFault> + Send + Sync;
type AckHook = dyn Fn(&AckContext<'_>) -> Option<AckFault> + Send + Sync;

#[derive(Default, Clone)]
struct Hooks {
    publish: Option<Arc<PublishHook>>,
    deliver: Option<Arc<DeliveryHook>>,
    ack: Option<Arc<AckHook>>,
}

/// The broker's fault hooks. Each hook is asked once per operation and returns the fault to
/// inject, or `None` for normal behaviour. Hooks run synchronously while the operation happens,
/// so they can also check invariants ("is this message's effect recorded before its ack?").
///
/// Publish and ack hooks may call the broker (`messages`, `pending`). A delivery hook runs while
/// its group's queue is locked and must not call the broker.
///
/// ```
/// use waybill_core::{MemoryBroker, Message, PublishFault, PublishOutcome, Publisher};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let broker = MemoryBroker::new();
/// broker.faults().fail_next_publishes(1, PublishFault::Ambiguous { stored: true });
/// let err = broker.publisher().publish("t", Message::new("x")).await.unwrap_err();
/// assert_eq!(err.outcome(), PublishOutcome::Ambiguous);
/// assert_eq!(broker.messages("t").len(), 1, "stored although the confirm was lost");
/// # }
/// ```
#[derive(Default)]
pub struct FaultInjector {
    active: AtomicBool,
    hooks: Mutex<Hooks>,
}

impl FaultInjector {
    /// Sets the publish hook (replacing any earlier one).
    pub fn on_publish(
        &self,
        hook: impl Fn(&PublishContext<'_>) -> Option<PublishFault> + Send + Sync + 'static,
    ) {
        self.update(|h| h.publish = Some(Arc::new(hook)));
    }

    /// Sets the delivery hook (replacing any earlier one).
    pub fn on_deliver(
        &self,
        hook: impl Fn(&DeliveryContext<'_>) -> Option<DeliveryFault> + Send + Sync + 'static,
    ) {
        self.update(|h| h.deliver = Some(Arc::new(hook)));
    }

    /// Sets the acknowledgement hook (replacing any earlier one).
    pub fn on_ack(
        &self,
        hook: impl Fn(&AckContext<'_>) -> Option<AckFault> + Send + Sync + 'static,
    ) {
        self.update(|h| h.ack = Some(Arc::new(hook)));
    }

    /// Makes the next `n` publishes fail with `fault`, then behaves normally.
    pub fn fail_next_publishes(&self, n: u64, fault: PublishFault) {
        let left = AtomicU64::new(n);
        self.on_publish(move |_| {
            left.fetch_update(Relaxed, Relaxed, |l| l.checked_sub(1))
                .ok()
                .map(|_| fault)
        });
    }

    /// Removes every hook.
    pub fn clear(&self) {
        self.update(|h| *h = Hooks::default());
    }

    pub(crate) fn publish_fault(&self, ctx: &PublishContext<'_>) -> Option<PublishFault> {
        self.hooks()?.publish.and_then(|h| h(ctx))
    }

    pub(crate) fn delivery_fault(&self, ctx: &DeliveryContext<'_>) -> Option<DeliveryFault> {
        self.hooks()?.deliver.and_then(|h| h(ctx))
    }

    pub(crate) fn ack_fault(&self, ctx: &AckContext<'_>) -> Option<AckFault> {
        self.hooks()?.ack.and_then(|h| h(ctx))
    }

    fn hooks(&self) -> Option<Hooks> {
        if !self.active.load(Relaxed) {
            return None;
        }
        Some(self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn update(&self, change: impl FnOnce(&mut Hooks)) {
        let mut hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut hooks);
        let any = hooks.publish.is_some() || hooks.deliver.is_some() || hooks.ack.is_some();
        self.active.store(any, Relaxed);
    }
}

impl std::fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultInjector")
            .field("active", &self.active.load(Relaxed))
            .finish()
    }
}
