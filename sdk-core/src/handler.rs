//! Business code plugged into the runtime: handlers return results, the runtime acknowledges.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::codec::CodecError;
use crate::incoming::IncomingMessage;

/// A boxed error a handler can return.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// How a handler failed, which decides what the runtime does next.
///
/// `?` works on any error in a handler: an error converts into a `HandlerError` through
/// [`HandlerError::classify`] — [`Permanent`](HandlerError::Permanent) for a payload that
/// cannot be decoded ([`CodecError`]), [`Transient`](HandlerError::Transient) for everything
/// else (a database or network error usually passes; if it does not, the retry policy ends in
/// the dead letter, so nothing is lost). Say [`HandlerError::permanent`] yourself for business
/// rules that will never pass.
///
/// Like `anyhow::Error`, `HandlerError` does not implement [`std::error::Error`] itself: that
/// is what lets `From` accept every error type.
///
/// ```
/// use waybill_core::{handler_fn, HandlerError, IncomingMessage};
///
/// let handler = handler_fn(|message: IncomingMessage| async move {
///     let text = std::str::from_utf8(message.message().payload())?; // Transient
///     let amount: u64 = text.parse().map_err(HandlerError::permanent)?; // Permanent
///     assert!(amount < u64::MAX);
///     Ok(())
/// });
/// # let _ = handler;
/// ```
#[derive(Debug)]
pub enum HandlerError {
    /// Might succeed later: retried with the policy's backoff.
    Transient(BoxError),
    /// Might succeed after the given delay (a downstream said "come back later"). A delay up
    /// to the retry policy's `max_in_process_delay` (default 30 s) is waited out in the
    /// consumer; a longer one goes to the broker's delayed retry at once (see
    /// [`crate::RetryPolicy`]).
    RetryAfter(Duration, BoxError),
    /// Will never succeed (malformed payload, business rule violated): dead-lettered at once.
    Permanent(BoxError),
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transient(e) => write!(f, "transient: {e}"),
            Self::RetryAfter(delay, e) => write!(f, "retry after {delay:?}: {e}"),
            Self::Permanent(e) => write!(f, "permanent: {e}"),
        }
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for HandlerError {
    /// Classifies `error` with [`HandlerError::classify`].
    fn from(error: E) -> Self {
        Self::classify(Box::new(error))
    }
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

    /// The class `?` gives an error: permanent for a [`CodecError`] (the payload will not
    /// decode on a second try), transient for any other error.
    pub fn classify(error: BoxError) -> Self {
        if error.is::<CodecError>() {
            Self::Permanent(error)
        } else {
            Self::Transient(error)
        }
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        match self {
            Self::Transient(e) | Self::RetryAfter(_, e) | Self::Permanent(e) => e.as_ref(),
        }
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
