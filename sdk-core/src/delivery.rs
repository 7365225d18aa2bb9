//! A received message that must be settled exactly once.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::broker_error::BrokerError;
use crate::dead_letter::DeadLetterRecord;
use crate::incoming::IncomingMessage;
use crate::settlement::{RetryRequest, Settlement};

/// The backend half of a delivery: performs the settlement on the broker.
///
/// Implementations must make the settlement durable before returning `Ok`: a retry or dead
/// letter publishes its copy with a confirm *before* the original is acknowledged. Dropping a
/// settler without calling [`Settle::settle`] abandons the delivery: the broker must deliver the
/// message again (at once, on reconnect or after a restart, as the broker does).
#[async_trait]
pub trait Settle: Send {
    /// Settles the delivery of `incoming`.
    ///
    /// # Errors
    /// [`BrokerError`]; the delivery then counts as abandoned and will be delivered again.
    async fn settle(
        self: Box<Self>,
        incoming: &IncomingMessage,
        settlement: Settlement,
    ) -> Result<(), BrokerError>;
}

/// A received message plus the right to settle it.
///
/// Settling consumes the delivery, so it can be settled at most once; a delivery dropped without
/// being settled is redelivered by the broker (at-least-once). Users of the
/// [`crate::Processor`] never touch deliveries: the runtime settles them.
pub struct Delivery {
    incoming: IncomingMessage,
    settler: Box<dyn Settle>,
}

impl Delivery {
    /// Pairs a received message with the backend's settler.
    pub fn new(incoming: IncomingMessage, settler: Box<dyn Settle>) -> Self {
        Self { incoming, settler }
    }

    /// The received message.
    pub fn message(&self) -> &IncomingMessage {
        &self.incoming
    }

    /// Records (or clears) the claim the runtime holds while the handler runs.
    pub(crate) fn set_claim(&mut self, claim: Option<crate::idempotency::HeldClaim>) {
        self.incoming.set_claim(claim);
    }

    /// Acknowledges: the message is done and will not be delivered again.
    ///
    /// # Errors
    /// [`BrokerError`]; the message will then be delivered again.
    pub async fn ack(self) -> Result<(), BrokerError> {
        self.settle(Settlement::Ack).await
    }

    /// Asks for a copy after `delay` on the next attempt number, then acknowledges this one.
    ///
    /// # Errors
    /// [`BrokerError`]; the original is then not acknowledged and will be delivered again.
    pub async fn retry(self, delay: Duration) -> Result<(), BrokerError> {
        let request = RetryRequest {
            delay,
            next_attempt: self.incoming.attempt().saturating_add(1),
            first_failure_at: self
                .incoming
                .first_failure_at()
                .unwrap_or_else(SystemTime::now),
        };
        self.settle(Settlement::Retry(request)).await
    }

    /// Publishes the message with `record` to the dead letter, then acknowledges this one.
    ///
    /// # Errors
    /// [`BrokerError`]; the original is then not acknowledged and will be delivered again.
    pub async fn dead_letter(self, record: DeadLetterRecord) -> Result<(), BrokerError> {
        self.settle(Settlement::DeadLetter(record)).await
    }

    /// Settles with an explicit [`Settlement`].
    ///
    /// # Errors
    /// [`BrokerError`]; the message will then be delivered again.
    ///
    /// # Cancel safety
    /// Not cancel safe: a cancelled settlement may or may not have reached the broker; the
    /// message may then be delivered again.
    pub async fn settle(self, settlement: Settlement) -> Result<(), BrokerError> {
        let Self { incoming, settler } = self;
        settler.settle(&incoming, settlement).await
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("incoming", &self.incoming)
            .finish_non_exhaustive()
    }
}
