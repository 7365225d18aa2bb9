//! What goes wrong turning values into payloads and back.

use crate::handler::BoxError;

/// A value could not be encoded, or a payload could not be decoded.
///
/// In a handler, `?` turns it into a permanent [`HandlerError`](crate::HandlerError)
/// ([`HandlerError::classify`](crate::HandlerError::classify)): the message is dead-lettered
/// at once with this text in its record.
///
/// The text names the codec, the Rust type and the format's own error, so that a dead-letter
/// record says exactly why a message was refused.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value cannot be represented in the codec's format.
    #[error("codec {codec} cannot encode {type_name}: {source}")]
    Encode {
        /// The codec's name (`json`, `protobuf`).
        codec: &'static str,
        /// The Rust type that was encoded.
        type_name: &'static str,
        /// The format's error.
        source: BoxError,
    },
    /// The message is labelled with a content type the codec does not read.
    #[error("payload has content type {found:?}, codec {codec} reads {expected}")]
    UnexpectedContentType {
        /// The codec's name.
        codec: &'static str,
        /// The content type the codec reads.
        expected: &'static str,
        /// The message's `content-type` header.
        found: String,
    },
    /// The payload is not a valid value of the expected type.
    #[error("codec {codec} cannot decode the payload as {type_name}: {source}")]
    Decode {
        /// The codec's name.
        codec: &'static str,
        /// The Rust type that was expected.
        type_name: &'static str,
        /// The format's error (for JSON: what is wrong, with line and column).
        source: BoxError,
    },
}
