//! Handlers that receive a decoded value instead of raw bytes.

use std::future::Future;
use std::marker::PhantomData;

use async_trait::async_trait;
use tracing::warn;

use crate::codec::Codec;
use crate::handler::{Handler, HandlerError};
use crate::incoming::IncomingMessage;

/// A handler that decodes each payload with a codec before calling an async closure; see
/// [`typed_handler`] and [`typed_handler_with`].
pub struct TypedHandler<C, T, F> {
    codec: C,
    handle: F,
    // `fn() -> T`: the handler neither owns nor shares a `T`, so it is Send + Sync whatever T is.
    value: PhantomData<fn() -> T>,
}

/// A handler for JSON payloads: each message is decoded into `T` with serde, then `f` runs
/// with the value and the message (for its id, key, headers, origin and claim).
///
/// A payload that is not a valid `T`, or is labelled with a content type other than JSON, is a
/// permanent failure: the Processor dead-letters it at once, and the record's error message
/// names the codec, the type and the decode error. The closure is not called for it.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use waybill_core::{typed_handler, HandlerError, IncomingMessage};
///
/// #[derive(Serialize, Deserialize)] // the JSON codec works both ways
/// struct OrderPlaced { order_id: u64 }
///
/// let handler = typed_handler(|order: OrderPlaced, message: IncomingMessage| async move {
///     if order.order_id == 0 {
///         return Err(HandlerError::permanent("order 0 does not exist"));
///     }
///     let _ = message.message().id(); // the stable id, e.g. for an idempotency marker
///     Ok(())
/// });
/// # let _ = handler;
/// ```
#[cfg(feature = "json")]
pub fn typed_handler<T, F, Fut>(f: F) -> TypedHandler<crate::codec::Json, T, F>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
    F: Fn(T, IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    typed_handler_with(crate::codec::Json, f)
}

/// A handler whose payloads are decoded with `codec` (for example
/// [`Protobuf`](crate::codec::Protobuf)); otherwise as [`typed_handler`].
pub fn typed_handler_with<C, T, F, Fut>(codec: C, f: F) -> TypedHandler<C, T, F>
where
    C: Codec<T>,
    T: Send + 'static,
    F: Fn(T, IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    TypedHandler {
        codec,
        handle: f,
        value: PhantomData,
    }
}

#[async_trait]
impl<C, T, F, Fut> Handler for TypedHandler<C, T, F>
where
    C: Codec<T>,
    T: Send + 'static,
    F: Fn(T, IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    async fn handle(&self, message: &IncomingMessage) -> Result<(), HandlerError> {
        let value = message.decode(&self.codec).map_err(|error| {
            warn!(message_id = %message.message().id(), %error, "payload cannot be decoded");
            error
        })?;
        (self.handle)(value, message.clone()).await
    }
}
