//! Handlers that take several messages at once, so that a consumer writes a batch of effects
//! and their inbox markers in one database transaction.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::handler::HandlerError;
use crate::incoming::IncomingMessage;

/// Handles a batch of messages. Run it with
/// [`Processor::start_batch`](crate::Processor::start_batch); the runtime claims, settles,
/// retries and dead-letters each message of a batch on its own, exactly as for a
/// [`Handler`](crate::Handler).
///
/// **What a batch holds.** Up to [`max_batch`](crate::ProcessorBuilder::max_batch) messages
/// that are ready at the same moment (or within the
/// [`batch_window`](crate::ProcessorBuilder::batch_window)), each already claimed in the
/// idempotency store, so a transactional marker (`mark_done_in`, `mark_all_done_in` of the
/// SQL stores) can be written for every one of them. Under
/// [`Ordering::PerKey`](crate::Ordering::PerKey) a batch holds at most one message of each
/// key, and a key's next message joins a later batch only once this one is settled: per-key
/// order holds across batches exactly as with a single-message handler. (Hot keys therefore
/// make batches smaller, never out of order.)
///
/// **What it returns.**
/// - `Ok(failures)`: every message not named in `failures` took its effect durably (the
///   transaction committed); each named one did not, and fails with its own
///   [`HandlerError`]: it is retried or dead-lettered alone, and the others are acknowledged.
/// - `Err(error)`: no message of the batch took effect (the transaction rolled back). The
///   runtime then hands each message of the batch to the handler again **alone**, at once, so
///   that one bad message fails by itself and its batch-mates go through; a message that
///   fails alone too is retried or dead-lettered by its own result.
/// - A panic counts as `Err` for the batch, and as a panic for a message handled alone.
///
/// A handler must not acknowledge anything itself. Returning `Ok` for a message whose effect
/// did not commit loses that effect; name it in `failures` instead.
///
/// ```
/// use waybill_core::{batch_handler_fn, BatchFailures, HandlerError, IncomingMessage};
///
/// let handler = batch_handler_fn(|batch: Vec<IncomingMessage>| async move {
///     let mut failures = BatchFailures::none();
///     for (i, message) in batch.iter().enumerate() {
///         if message.message().payload().is_empty() {
///             failures.fail(i, HandlerError::permanent("empty payload"));
///         }
///     }
///     // ... write the effects of the others, and their markers, in one transaction ...
///     Ok::<_, HandlerError>(failures)
/// });
/// # let _ = handler;
/// ```
#[async_trait]
pub trait BatchHandler: Send + Sync + 'static {
    /// Handles `batch` (never empty), in the order received.
    ///
    /// # Errors
    /// A [`HandlerError`] when nothing of the batch took effect; see the trait's docs.
    async fn handle_batch(&self, batch: &[IncomingMessage]) -> Result<BatchFailures, HandlerError>;
}

#[async_trait]
impl<H: BatchHandler + ?Sized> BatchHandler for Arc<H> {
    async fn handle_batch(&self, batch: &[IncomingMessage]) -> Result<BatchFailures, HandlerError> {
        (**self).handle_batch(batch).await
    }
}

/// The messages of a batch that failed, by their index in the batch, each with its error.
#[derive(Debug, Default)]
pub struct BatchFailures {
    failed: Vec<(usize, HandlerError)>,
}

impl BatchFailures {
    /// No message failed.
    pub fn none() -> Self {
        Self::default()
    }

    /// Records that the message at `index` failed with `error` (a later call for the same
    /// index replaces it). An index beyond the batch is ignored with a warning.
    pub fn fail(&mut self, index: usize, error: HandlerError) {
        self.failed.retain(|(i, _)| *i != index);
        self.failed.push((index, error));
    }

    /// As [`fail`](Self::fail), by value.
    #[must_use]
    pub fn with(mut self, index: usize, error: HandlerError) -> Self {
        self.fail(index, error);
        self
    }

    /// Whether no message failed.
    pub fn is_empty(&self) -> bool {
        self.failed.is_empty()
    }

    /// How many messages failed.
    pub fn len(&self) -> usize {
        self.failed.len()
    }

    /// Takes the failures out, by index.
    pub(crate) fn into_failed(self) -> Vec<(usize, HandlerError)> {
        self.failed
    }
}

/// A batch handler made from an async closure; see [`batch_handler_fn`].
#[derive(Clone)]
pub struct BatchHandlerFn<F>(F);

/// Turns an async closure taking the batch by value into a [`BatchHandler`].
pub fn batch_handler_fn<F, Fut>(f: F) -> BatchHandlerFn<F>
where
    F: Fn(Vec<IncomingMessage>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<BatchFailures, HandlerError>> + Send + 'static,
{
    BatchHandlerFn(f)
}

#[async_trait]
impl<F, Fut> BatchHandler for BatchHandlerFn<F>
where
    F: Fn(Vec<IncomingMessage>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<BatchFailures, HandlerError>> + Send + 'static,
{
    async fn handle_batch(&self, batch: &[IncomingMessage]) -> Result<BatchFailures, HandlerError> {
        (self.0)(batch.to_vec()).await
    }
}
