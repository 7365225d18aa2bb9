//! The processed-message store that makes a redelivered message have no second effect.

use std::time::Duration;

use async_trait::async_trait;

use crate::message_id::MessageId;

/// Result of [`IdempotencyStore::claim`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This caller holds the message for `lease`: handle it, then `complete` or `release`.
    Acquired,
    /// The message was handled to completion before: skip it and acknowledge.
    AlreadyDone,
    /// Another holder's lease is live: wait about this long and claim again.
    InFlight {
        /// Time left on the other holder's lease.
        lease_remaining: Duration,
    },
}

/// The store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("idempotency store {operation} failed: {reason}")]
pub struct StoreError {
    operation: &'static str,
    reason: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// `operation` (`claim`, `complete`, `release`) failed because of `reason`.
    pub fn new(operation: &'static str, reason: impl Into<String>) -> Self {
        Self {
            operation,
            reason: reason.into(),
            source: None,
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The failed operation.
    pub fn operation(&self) -> &'static str {
        self.operation
    }
}

/// Records which messages a consumer group has handled, keyed by `(group, message id)`.
///
/// Protocol: `claim` before handling; on success `complete`, on failure `release`. A holder that
/// crashes loses its claim when the lease runs out, so another instance can take over. Entries
/// for completed messages are kept for a retention period that must exceed the broker's
/// redelivery horizon (how late a duplicate can still arrive).
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Tries to take `id` for `group` for `lease`.
    ///
    /// # Errors
    /// [`StoreError`] when the store is unreachable; the runtime then does not handle the message.
    async fn claim(&self, group: &str, id: MessageId, lease: Duration)
        -> Result<Claim, StoreError>;

    /// Marks `id` as handled: later claims answer `AlreadyDone`.
    ///
    /// # Errors
    /// [`StoreError`]; the message may then be handled again if delivered again.
    async fn complete(&self, group: &str, id: MessageId) -> Result<(), StoreError>;

    /// Gives up a claim without completing, so the next claim is `Acquired` at once.
    ///
    /// # Errors
    /// [`StoreError`]; the claim then lapses when its lease runs out.
    async fn release(&self, group: &str, id: MessageId) -> Result<(), StoreError>;
}
