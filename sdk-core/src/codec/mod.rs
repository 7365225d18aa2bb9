//! Typed payloads: a [`Codec`] turns a value into payload bytes and back, and names the
//! content type it writes into the `content-type` header.
//!
//! [`Json`] (serde JSON, feature `json`, on by default) and [`Protobuf`] (prost, feature
//! `protobuf`) ship with the crate; any other format implements [`Codec`]. A payload that
//! cannot be decoded is a *permanent* failure ([`CodecError`] converts into
//! [`HandlerError::Permanent`](crate::HandlerError::Permanent)), so the Processor dead-letters
//! it at once, with the codec and the decode error in the dead-letter record — never dropped,
//! never retried forever.

mod content_type;
mod error;
#[cfg(feature = "json")]
mod json;
#[cfg(feature = "protobuf")]
mod protobuf;
#[cfg(all(test, feature = "json"))]
mod tests;

pub use content_type::same_media_type;
pub use error::CodecError;
#[cfg(feature = "json")]
pub use json::Json;
#[cfg(feature = "protobuf")]
pub use protobuf::Protobuf;

use bytes::Bytes;

use crate::handler::BoxError;

/// Encodes values of `T` into payload bytes and decodes them back.
///
/// Implementations are cheap, stateless values (`Json`, `Protobuf`); they are shared between
/// the handler's tasks, hence `Send + Sync`.
pub trait Codec<T>: Send + Sync + 'static {
    /// A short name for errors and dead-letter records, e.g. `json`.
    fn name(&self) -> &'static str;

    /// The media type written into the `content-type` header, e.g. `application/json`.
    fn content_type(&self) -> &'static str;

    /// Whether a payload labelled `content_type` can be read by this codec. The default
    /// compares media types, ignoring parameters (`; charset=utf-8`) and case.
    fn reads(&self, content_type: &str) -> bool {
        same_media_type(content_type, self.content_type())
    }

    /// Encodes `value`.
    ///
    /// # Errors
    /// The format's own error, when `value` cannot be represented (a map with non-string keys
    /// in JSON, for example).
    fn encode(&self, value: &T) -> Result<Bytes, BoxError>;

    /// Decodes a payload.
    ///
    /// # Errors
    /// The format's own error, when the bytes are not a valid `T`.
    fn decode(&self, payload: &[u8]) -> Result<T, BoxError>;
}

/// Encodes `value` with `codec`, naming the codec and the type in the error.
pub(crate) fn encode_with<T, C: Codec<T>>(codec: &C, value: &T) -> Result<Bytes, CodecError> {
    codec.encode(value).map_err(|source| CodecError::Encode {
        codec: codec.name(),
        type_name: std::any::type_name::<T>(),
        source,
    })
}

/// Decodes `payload` labelled with `content_type` (if the message had one) with `codec`.
///
/// A label the codec does not read is refused before decoding: bytes written as, say, Avro
/// must not be parsed by chance as something else.
pub(crate) fn decode_with<T, C: Codec<T>>(
    codec: &C,
    content_type: Option<&str>,
    payload: &[u8],
) -> Result<T, CodecError> {
    if let Some(found) = content_type {
        if !codec.reads(found) {
            return Err(CodecError::UnexpectedContentType {
                codec: codec.name(),
                expected: codec.content_type(),
                found: found.to_owned(),
            });
        }
    }
    codec.decode(payload).map_err(|source| CodecError::Decode {
        codec: codec.name(),
        type_name: std::any::type_name::<T>(),
        source,
    })
}
