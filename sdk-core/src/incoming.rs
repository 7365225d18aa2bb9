//! A message as a consumer sees it: the message plus where it came from.

use std::sync::Arc;
use std::time::SystemTime;

use crate::header_names;
use crate::idempotency::HeldClaim;
use crate::message::Message;
use crate::wire_time;

/// Where a delivered message was consumed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// Topic or queue the message was consumed from (shared, cheap to clone).
    pub topic: Arc<str>,
    /// Consumer group (Kafka group, RabbitMQ subscription queue, RocketMQ consumer group).
    pub group: Arc<str>,
    /// Partition (Kafka) or queue id (RocketMQ), when the broker has one.
    pub partition: Option<i32>,
    /// Offset of this delivery within the partition or queue, when the broker has one.
    pub offset: Option<i64>,
}

/// A delivered message handed to a [`crate::Handler`].
#[derive(Clone, Debug)]
pub struct IncomingMessage {
    message: Message,
    origin: Origin,
    redelivered: bool,
    claim: Option<HeldClaim>,
}

impl IncomingMessage {
    /// Wraps a delivered message. `redelivered` is the broker's hint that this copy was delivered
    /// before (it may be false for a duplicate the broker does not know about).
    pub fn new(message: Message, origin: Origin, redelivered: bool) -> Self {
        Self {
            message,
            origin,
            redelivered,
            claim: None,
        }
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Where it was consumed from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Whether the broker flagged this as a redelivery.
    pub fn is_redelivered(&self) -> bool {
        self.redelivered
    }

    /// The 1-based handling attempt this copy is on, from the `waybill-attempt` header
    /// (1 when absent or unreadable).
    pub fn attempt(&self) -> u32 {
        self.message
            .headers()
            .get(header_names::ATTEMPT)
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| *n >= 1)
            .unwrap_or(1)
    }

    /// Time of the first failed attempt on an earlier copy, from `waybill-first-failure-at`.
    pub fn first_failure_at(&self) -> Option<SystemTime> {
        self.message
            .headers()
            .get(header_names::FIRST_FAILURE_AT)
            .and_then(wire_time::parse_millis)
    }

    /// The idempotency claim the Processor holds on this message while its handler runs
    /// (`None` without a store, or outside a handler). A transactional marker such as
    /// `PgIdempotencyStore::mark_done_in` takes it, so that only the current holder can
    /// commit the effect.
    pub fn claim(&self) -> Option<&HeldClaim> {
        self.claim.as_ref()
    }

    /// Whether this copy is a dead-letter replay (header `waybill-replayed-at`).
    pub fn is_replay(&self) -> bool {
        self.message
            .headers()
            .get(header_names::REPLAYED_AT)
            .is_some()
    }

    /// The same message carrying `claim`: for consumer runtimes other than the Processor, and
    /// tests, that claim messages themselves and hand them to a transactional marker.
    pub fn with_claim(mut self, claim: HeldClaim) -> Self {
        self.claim = Some(claim);
        self
    }

    pub(crate) fn set_claim(&mut self, claim: Option<HeldClaim>) {
        self.claim = claim;
    }

    /// Takes the message out.
    pub fn into_message(self) -> Message {
        self.message
    }
}
