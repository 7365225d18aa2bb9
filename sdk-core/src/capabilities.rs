//! What a backend can and cannot do, declared rather than faked.

/// The behaviours a backend declares. The conformance suite runs the case for each behaviour
/// that is declared and reports the others as unsupported (never as passed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `Settlement::Retry` delivers the copy again only after its delay.
    pub delayed_retry: bool,
    /// `Settlement::DeadLetter` publishes the message with its record to a dead-letter
    /// destination that can be consumed.
    pub dead_letter: bool,
    /// A delivery dropped unsettled, or held by a closed subscriber, is delivered again to a
    /// new subscriber of the same group.
    pub redelivery: bool,
    /// Messages of one key reach a single subscriber in publish order.
    pub per_key_order: bool,
    /// Two consumer groups of one topic each receive every message.
    pub independent_groups: bool,
    /// Several subscribers of one group share the messages without losing any.
    pub competing_consumers: bool,
    /// When a subscriber joins a group, the members re-split the work at once (the broker
    /// tells them), so each message goes to one member. Without it the members still lose
    /// nothing, but until the next periodic rebalance several of them may read the same
    /// messages (duplicates the idempotency store absorbs) and per-key order across members
    /// is not held; the conformance suite then checks no loss only.
    pub prompt_rebalance: bool,
}

impl Capabilities {
    /// Everything supported (the in-memory broker).
    pub fn all() -> Self {
        Self {
            delayed_retry: true,
            dead_letter: true,
            redelivery: true,
            per_key_order: true,
            independent_groups: true,
            competing_consumers: true,
            prompt_rebalance: true,
        }
    }
}
