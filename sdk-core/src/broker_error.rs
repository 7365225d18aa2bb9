//! Errors of receiving, settling and closing, classified for the runtime.

use std::error::Error as StdError;
use std::fmt;

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
            source: None,
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

    /// The operation that failed (`receive`, `ack`, `retry`, `dead-letter`, `close`, ...).
    pub fn operation(&self) -> &'static str {
        self.operation
    }

    /// Human-readable reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}
