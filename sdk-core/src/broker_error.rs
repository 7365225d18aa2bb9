//! Errors of receiving, settling and closing, classified for the runtime.

use std::error::Error as StdError;
use std::fmt;

use crate::publish_error::PublishOutcome;

/// Whether an operation may succeed when tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// A retry may succeed (connection lost, broker restarting, timeout).
    Transient,
    /// A retry will fail the same way (bad credentials, missing topic, closed handle).
    Permanent,
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        })
    }
}

/// A broker operation other than publish failed: receive, ack, retry, dead letter, close.
#[derive(Debug, thiserror::Error)]
#[error("{operation} failed ({class}): {reason}")]
pub struct BrokerError {
    class: FailureClass,
    operation: &'static str,
    reason: String,
    destination_missing: bool,
    #[source]
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl BrokerError {
    /// A transient failure of `operation`.
    pub fn transient(operation: &'static str, reason: impl Into<String>) -> Self {
        Self::new(FailureClass::Transient, operation, reason)
    }

    /// A permanent failure of `operation`.
    pub fn permanent(operation: &'static str, reason: impl Into<String>) -> Self {
        Self::new(FailureClass::Permanent, operation, reason)
    }

    /// A failure of `operation` with the given class.
    pub fn new(class: FailureClass, operation: &'static str, reason: impl Into<String>) -> Self {
        Self {
            class,
            operation,
            reason: reason.into(),
            destination_missing: false,
            source: None,
        }
    }

    /// A transient failure of `operation` because the destination of a copy (a retry or
    /// dead-letter topic or queue) does not exist yet: see
    /// [`PublishOutcome::NoDestination`]. The processor gives the message back and tries the
    /// same settlement again with backoff, raising an alert, until the destination appears.
    pub fn destination_missing(operation: &'static str, reason: impl Into<String>) -> Self {
        Self {
            destination_missing: true,
            ..Self::transient(operation, reason)
        }
    }

    /// The failure of `operation` that published a copy and got `outcome`: `Permanent` stays
    /// permanent, `NoDestination` is [`BrokerError::destination_missing`], `NotSent` and
    /// `Ambiguous` are transient.
    pub fn from_publish(
        operation: &'static str,
        outcome: PublishOutcome,
        reason: impl Into<String>,
    ) -> Self {
        match outcome {
            PublishOutcome::Permanent => Self::permanent(operation, reason),
            PublishOutcome::NoDestination => Self::destination_missing(operation, reason),
            PublishOutcome::NotSent | PublishOutcome::Ambiguous => {
                Self::transient(operation, reason)
            }
        }
    }

    /// Attaches the underlying error.
    pub fn with_source(mut self, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether a retry may help.
    pub fn class(&self) -> FailureClass {
        self.class
    }

    /// Whether a retry may help (`class() == Transient`).
    pub fn is_transient(&self) -> bool {
        self.class == FailureClass::Transient
    }

    /// Whether the operation failed because its destination does not exist yet (a retry or
    /// dead-letter copy found no topic or queue); such a failure is transient.
    pub fn is_destination_missing(&self) -> bool {
        self.destination_missing
    }

    /// The operation that failed (`receive`, `ack`, `retry`, `dead-letter`, `close`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// Human-readable reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
