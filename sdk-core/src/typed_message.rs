//! Typed constructors and accessors on [`Message`] and [`IncomingMessage`], through a
//! [`Codec`].

use crate::codec::{decode_with, encode_with, Codec, CodecError};
use crate::header_names;
use crate::incoming::IncomingMessage;
use crate::message::Message;

impl Message {
    /// A new message whose payload is `value` encoded with `codec`, labelled with the codec's
    /// content type (header `content-type`).
    ///
    /// # Errors
    /// [`CodecError::Encode`] when `value` cannot be represented in the codec's format.
    pub fn encoded<T, C: Codec<T>>(codec: &C, value: &T) -> Result<Self, CodecError> {
        let payload = encode_with(codec, value)?;
        Ok(Message::new(payload).with_header(header_names::CONTENT_TYPE, codec.content_type()))
    }

    /// A new message whose payload is `value` as JSON (`content-type: application/json`).
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use waybill_core::Message;
    ///
    /// #[derive(Serialize, Deserialize, PartialEq, Debug)]
    /// struct OrderPlaced { order_id: u64, total_cents: u64 }
    ///
    /// let placed = OrderPlaced { order_id: 42, total_cents: 1999 };
    /// let message = Message::json(&placed)?.with_key("order-42");
    /// assert_eq!(message.headers().get("content-type"), Some("application/json"));
    /// assert_eq!(message.decode_json::<OrderPlaced>()?, placed);
    /// # Ok::<(), waybill_core::codec::CodecError>(())
    /// ```
    ///
    /// # Errors
    /// [`CodecError::Encode`] when `value` has no JSON form (a map with non-string keys).
    #[cfg(feature = "json")]
    pub fn json<T: serde::Serialize + serde::de::DeserializeOwned + 'static>(
        value: &T,
    ) -> Result<Self, CodecError> {
        Self::encoded(&crate::codec::Json, value)
    }

    /// The message's `content-type` header, if it has one.
    pub fn content_type(&self) -> Option<&str> {
        self.headers().get(header_names::CONTENT_TYPE)
    }

    /// Decodes the payload with `codec`.
    ///
    /// # Errors
    /// [`CodecError::UnexpectedContentType`] when the message is labelled with a content type
    /// the codec does not read (an unlabelled payload is decoded as is);
    /// [`CodecError::Decode`] when the bytes are not a valid `T`. Either converts into a
    /// permanent [`HandlerError`](crate::HandlerError) with `?`.
    pub fn decode<T, C: Codec<T>>(&self, codec: &C) -> Result<T, CodecError> {
        decode_with(codec, self.content_type(), self.payload())
    }

    /// Decodes a JSON payload; see [`Message::decode`].
    ///
    /// # Errors
    /// As [`Message::decode`].
    #[cfg(feature = "json")]
    pub fn decode_json<T: serde::Serialize + serde::de::DeserializeOwned + 'static>(
        &self,
    ) -> Result<T, CodecError> {
        self.decode(&crate::codec::Json)
    }
}

impl IncomingMessage {
    /// Decodes the delivered payload with `codec`; see [`Message::decode`].
    ///
    /// # Errors
    /// As [`Message::decode`]; `?` in a handler turns it into a permanent failure, so the
    /// message is dead-lettered with the codec and the decode error in its record.
    pub fn decode<T, C: Codec<T>>(&self, codec: &C) -> Result<T, CodecError> {
        self.message().decode(codec)
    }
}
