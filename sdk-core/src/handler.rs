//! Business code plugged into the runtime: handlers return results, the runtime acknowledges.

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::incoming::IncomingMessage;

/// A boxed error a handler can return.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// How a handler failed, which decides what the runtime does next.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Might succeed later: retried with the policy's backoff.
    #[error("transient: {0}")]
    Transient(BoxError),
    /// Might succeed after the given delay (a downstream said "come back later").
    #[error("retry after {0:?}: {1}")]
    RetryAfter(Duration, BoxError),
    /// Will never succeed (malformed payload, business rule violated): dead-lettered at once.
    #[error("permanent: {0}")]
    Permanent(BoxError),
}

impl HandlerError {
    /// A transient failure.
    pub fn transient(error: impl Into<BoxError>) -> Self {
        Self::Transient(error.into())
    }

    /// A failure to retry after `delay`.
    pub fn retry_after(delay: Duration, error: impl Into<BoxError>) -> Self {
        Self::RetryAfter(delay, error.into())
    }

    /// A permanent failure.
    pub fn permanent(error: impl Into<BoxError>) -> Self {
        Self::Permanent(error.into())
    }
}

/// Handles one message. The runtime calls it, classifies the result and settles the delivery.
///
/// A handler must not acknowledge anything itself; returning `Ok(())` means its work is durable
/// (committed). A panic is caught and treated as a transient failure.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles `message`.
    ///
    /// # Errors
    /// A [`HandlerError`] that says whether, and when, to try again.
    async fn handle(&self, message: &IncomingMessage) -> Result<(), HandlerError>;
}

#[async_trait]
impl<H: Handler + ?Sized> Handler for Arc<H> {
    async fn handle(&self, message: &IncomingMessage) -> Result<(), HandlerError> {
        (**self).handle(message).await
    }
}

/// A handler made from an async closure; see [`handler_fn`].
#[derive(Clone)]
pub struct HandlerFn<F>(F);

/// Turns an async closure taking the message by value into a [`Handler`].
///
/// ```
/// use waybill_core::{handler_fn, HandlerError, IncomingMessage};
///
/// let handler = handler_fn(|message: IncomingMessage| async move {
///     if message.message().payload().is_empty() {
///         return Err(HandlerError::permanent("empty payload"));
///     }
///     Ok(())
/// });
/// # let _ = handler;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    HandlerFn(f)
}

#[async_trait]
impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, message: &IncomingMessage) -> Result<(), HandlerError> {
        (self.0)(message.clone()).await
    }
}
