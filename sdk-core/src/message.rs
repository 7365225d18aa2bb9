//! The message model.

use std::time::SystemTime;

use bytes::Bytes;

use crate::header_names;
use crate::headers::Headers;
use crate::message_id::MessageId;
use crate::trace_context::TraceParent;
use crate::wire_time;

/// A message: stable id, optional ordering key, opaque payload and string headers.
///
/// The id is assigned when the message is created and never changes afterwards, whatever
/// retries, relays or dead-lettering happen to it. The key is the ordering key: messages with the
/// same key are delivered and handled in publish order under [`crate::Ordering::PerKey`].
///
/// ```
/// use waybill_core::Message;
///
/// let message = Message::new(r#"{"order":42}"#)
///     .with_key("order-42")
///     .with_header("content-type", "application/json");
/// assert_eq!(message.key(), Some("order-42"));
/// assert_eq!(message.headers().get("content-type"), Some("application/json"));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    id: MessageId,
    key: Option<String>,
    payload: Bytes,
    headers: Headers,
    created_at: SystemTime,
}

/// A message read from the wire lacks or garbles an SDK header it needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The `waybill-id` header is absent: the message was not produced through waybill.
    #[error("message has no {} header", header_names::MESSAGE_ID)]
    MissingId,
    /// A header's value cannot be parsed.
    #[error("header {name} has an invalid value {value:?}")]
    InvalidHeader {
        /// The header name.
        name: &'static str,
        /// The offending value.
        value: String,
    },
}

impl Message {
    /// A new message with a fresh UUIDv7 id, no key and no headers.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            id: MessageId::new(),
            key: None,
            payload: payload.into(),
            headers: Headers::new(),
            created_at: SystemTime::now(),
        }
    }

    /// Rebuilds a message from stored parts (a database row, a broker record). Keeps `id`.
    pub fn from_parts(
        id: MessageId,
        key: Option<String>,
        payload: Bytes,
        headers: Headers,
        created_at: SystemTime,
    ) -> Self {
        Self {
            id,
            key,
            payload,
            headers,
            created_at,
        }
    }

    /// Sets the ordering key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Adds one header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Replaces all headers.
    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }

    /// Attaches a W3C trace context (`traceparent`).
    pub fn with_trace_parent(mut self, trace: &TraceParent) -> Self {
        trace.inject(&mut self.headers);
        self
    }

    /// The stable message id.
    pub fn id(&self) -> MessageId {
        self.id
    }

    /// The ordering key, if any.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Mutable headers.
    pub fn headers_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }

    /// When the message was created (kept across hand-overs).
    pub fn created_at(&self) -> SystemTime {
        self.created_at
    }

    /// The W3C trace context carried by the message, if any and well formed.
    pub fn trace_parent(&self) -> Option<TraceParent> {
        TraceParent::extract(&self.headers)
    }

    /// Headers to put on the wire: the user headers plus `waybill-id`, `waybill-created-at` and,
    /// when a key is set, `waybill-key` (for brokers without a native key field).
    pub fn wire_headers(&self) -> Headers {
        let mut headers = self.headers.clone();
        headers.insert(header_names::MESSAGE_ID, self.id.to_string());
        headers.insert(
            header_names::CREATED_AT,
            wire_time::format_millis(self.created_at),
        );
        if let Some(key) = &self.key {
            headers.insert(header_names::KEY, key.clone());
        }
        headers
    }

    /// Rebuilds a message from wire headers written by [`Message::wire_headers`].
    ///
    /// `native_key` is the broker's own key field, preferred over the `waybill-key` header. The
    /// SDK identity headers are removed from the returned message's headers.
    ///
    /// # Errors
    /// [`WireError::MissingId`] when `waybill-id` is absent, [`WireError::InvalidHeader`] when the
    /// id or creation time cannot be parsed.
    pub fn from_wire(
        native_key: Option<String>,
        payload: Bytes,
        mut headers: Headers,
    ) -> Result<Self, WireError> {
        let id_text = headers
            .remove(header_names::MESSAGE_ID)
            .ok_or(WireError::MissingId)?;
        let id = id_text
            .parse::<MessageId>()
            .map_err(|_| WireError::InvalidHeader {
                name: header_names::MESSAGE_ID,
                value: id_text.clone(),
            })?;
        let created_at = match headers.remove(header_names::CREATED_AT) {
            Some(text) => wire_time::parse_millis(&text).ok_or(WireError::InvalidHeader {
                name: header_names::CREATED_AT,
                value: text,
            })?,
            None => SystemTime::now(),
        };
        let header_key = headers.remove(header_names::KEY);
        Ok(Self {
            id,
            key: native_key.or(header_key),
            payload,
            headers,
            created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_keeps_identity() {
        let original = Message::new("p").with_key("k").with_header("a", "1");
        let decoded =
            Message::from_wire(None, original.payload().clone(), original.wire_headers()).unwrap();
        assert_eq!(decoded.id(), original.id());
        assert_eq!(decoded.key(), Some("k"));
        assert_eq!(decoded.headers(), original.headers());
        let millis = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(millis(decoded.created_at()), millis(original.created_at()));
    }

    #[test]
    fn wire_without_id_is_an_error() {
        let err = Message::from_wire(None, Bytes::new(), Headers::new()).unwrap_err();
        assert_eq!(err, WireError::MissingId);
        let bad: Headers = [(header_names::MESSAGE_ID, "zzz")].into_iter().collect();
        assert!(matches!(
            Message::from_wire(None, Bytes::new(), bad),
            Err(WireError::InvalidHeader { .. })
        ));
    }
}
