//! Why a publish failed, and the message handed back.

use std::error::Error as StdError;
use std::fmt;

use crate::message::Message;

/// What a failed publish means for the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PublishOutcome {
    /// The broker certainly did not store the message: retrying cannot duplicate it.
    NotSent,
    /// The broker may or may not have stored it (confirm lost, connection cut with the message
    /// outstanding): a retry is safe only because consumers deduplicate on the message id.
    Ambiguous,
    /// The broker certainly did not store the message because its destination does not exist
    /// yet: an unknown topic, a RabbitMQ exchange nobody declared or one with no queue bound
    /// (`basic.return`). Retrying cannot duplicate it and succeeds once the destination is
    /// created (a consumer declared its queue, an operator created the topic), which is why this
    /// is not [`PublishOutcome::Permanent`]: deploying a producer before its consumers must not
    /// lose messages. Callers retry with backoff for a bounded time and raise an alert meanwhile
    /// (the outbox relay parks the row, the processor gives the delivery back).
    NoDestination,
    /// Retrying cannot help: too large, invalid name or headers, refused by policy or
    /// permissions.
    Permanent,
}

impl fmt::Display for PublishOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotSent => "not sent",
            Self::Ambiguous => "ambiguous",
            Self::NoDestination => "no destination yet",
            Self::Permanent => "permanent",
        })
    }
}

/// A publish that the broker did not confirm. Always hands the message back.
#[derive(Debug, thiserror::Error)]
#[error("publish to {topic:?} failed ({outcome}): {reason}")]
pub struct PublishError {
    outcome: PublishOutcome,
    topic: String,
    reason: String,
    message: Box<Message>,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl PublishError {
    /// A failure of the given outcome for `message` published to `topic`.
    pub fn new(
        outcome: PublishOutcome,
        topic: impl Into<String>,
        message: Message,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            outcome,
            topic: topic.into(),
            reason: reason.into(),
            message: Box::new(message),
            source: None,
        }
    }

    /// Shorthand for [`PublishOutcome::NotSent`].
    pub fn not_sent(topic: impl Into<String>, message: Message, reason: impl Into<String>) -> Self {
        Self::new(PublishOutcome::NotSent, topic, message, reason)
    }

    /// Shorthand for [`PublishOutcome::Ambiguous`].
    pub fn ambiguous(
        topic: impl Into<String>,
        message: Message,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(PublishOutcome::Ambiguous, topic, message, reason)
    }

    /// Shorthand for [`PublishOutcome::NoDestination`].
    pub fn no_destination(
        topic: impl Into<String>,
        message: Message,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(PublishOutcome::NoDestination, topic, message, reason)
    }

    /// Shorthand for [`PublishOutcome::Permanent`].
    pub fn permanent(
        topic: impl Into<String>,
        message: Message,
        reason: impl Into<String>,
    ) -> Self {
        Self::new(PublishOutcome::Permanent, topic, message, reason)
    }

    /// Attaches the underlying broker error.
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What the failure means for the message.
    pub fn outcome(&self) -> PublishOutcome {
        self.outcome
    }

    /// Whether publishing the same message again is reasonable (`NotSent`, `Ambiguous` or
    /// `NoDestination`; only `Permanent` is not).
    pub fn is_retryable(&self) -> bool {
        match self.outcome {
            PublishOutcome::NotSent | PublishOutcome::Ambiguous | PublishOutcome::NoDestination => {
                true
            }
            PublishOutcome::Permanent => false,
        }
    }

    /// Whether the destination did not exist (yet): [`PublishOutcome::NoDestination`].
    pub fn is_destination_missing(&self) -> bool {
        self.outcome == PublishOutcome::NoDestination
    }

    /// The destination that was attempted.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Human-readable reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The message that was not confirmed.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Takes the message back, to retry or store it.
    pub fn into_message(self) -> Message {
        *self.message
    }
}
