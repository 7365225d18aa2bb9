//! Conversions between waybill messages and AMQP properties and headers.

use bytes::Bytes;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::BasicProperties;
use waybill_core::{header_names, Headers, Message};

use crate::foreign_id::foreign_id;

/// AMQP persistent delivery mode.
const PERSISTENT: u8 = 2;

/// Properties for publishing `message`: persistent, message id, timestamp, and the wire headers
/// (`waybill-id`, `waybill-created-at`, `waybill-key` and the user headers) as long strings.
pub(crate) fn properties(message: &Message, extra: Option<&Headers>) -> BasicProperties {
    let mut headers = message.wire_headers();
    if let Some(extra) = extra {
        headers.merge(extra);
    }
    let mut table = FieldTable::default();
    for (name, value) in headers.iter() {
        table.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    }
    let timestamp = message
        .created_at()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(message.id().to_string().as_str().into())
        .with_timestamp(timestamp)
        .with_headers(table)
}

/// String headers of a delivery. Scalar values become text; arrays and tables (RabbitMQ's
/// `x-death`) are left out.
pub(crate) fn headers(properties: &BasicProperties) -> Headers {
    let mut out = Headers::new();
    let Some(table) = properties.headers() else {
        return out;
    };
    for (name, value) in table.inner() {
        let text = match value {
            AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            AMQPValue::ShortString(s) => s.as_str().to_owned(),
            AMQPValue::Boolean(b) => b.to_string(),
            AMQPValue::ShortShortInt(n) => n.to_string(),
            AMQPValue::ShortShortUInt(n) => n.to_string(),
            AMQPValue::ShortInt(n) => n.to_string(),
            AMQPValue::ShortUInt(n) => n.to_string(),
            AMQPValue::LongInt(n) => n.to_string(),
            AMQPValue::LongUInt(n) => n.to_string(),
            AMQPValue::LongLongInt(n) => n.to_string(),
            AMQPValue::Float(n) => n.to_string(),
            AMQPValue::Double(n) => n.to_string(),
            AMQPValue::Timestamp(n) => n.to_string(),
            AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
            AMQPValue::DecimalValue(_)
            | AMQPValue::FieldArray(_)
            | AMQPValue::FieldTable(_)
            | AMQPValue::Void => continue,
        };
        out.insert(name.as_str(), text);
    }
    out
}

/// Rebuilds the waybill message of a delivery.
///
/// A message from another producer has no `waybill-id`, and one may carry an unreadable one:
/// it gets a stable id derived from what it carries (see [`crate::foreign_id`]), the same on
/// every redelivery, so the idempotency store recognises it when it comes back.
pub(crate) fn message(properties: &BasicProperties, payload: Vec<u8>) -> Message {
    let mut headers = headers(properties);
    if !headers.contains(header_names::MESSAGE_ID) {
        let id = foreign_id(properties, &headers, &payload);
        tracing::debug!(%id, "delivery without a waybill id; derived a stable one");
        headers.insert(header_names::MESSAGE_ID, id.to_string());
    }
    let payload = Bytes::from(payload);
    match Message::from_wire(None, payload.clone(), headers.clone()) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable waybill identity headers; deriving a stable id");
            let id = foreign_id(properties, &headers, &payload);
            headers.remove(header_names::CREATED_AT);
            headers.insert(header_names::MESSAGE_ID, id.to_string());
            Message::from_wire(None, payload, headers).expect("a valid id header was just written")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_the_message() {
        let original = Message::new("body").with_key("k").with_header("a", "1");
        let props = properties(&original, None);
        assert_eq!(props.delivery_mode(), &Some(PERSISTENT));
        let back = message(&props, b"body".to_vec());
        assert_eq!(back.id(), original.id());
        assert_eq!(back.key(), Some("k"));
        assert_eq!(back.headers(), original.headers());
    }

    #[test]
    fn foreign_messages_use_a_uuid_message_id_or_a_stable_derived_one() {
        let id = waybill_core::MessageId::new();
        let props = BasicProperties::default().with_message_id(id.to_string().as_str().into());
        assert_eq!(message(&props, vec![]).id(), id);
        let props = BasicProperties::default().with_message_id("order-7".into());
        let derived = message(&props, vec![]).id();
        assert_ne!(derived, id);
        assert_eq!(message(&props, vec![]).id(), derived, "the same every time");
        let bare = BasicProperties::default();
        assert_eq!(
            message(&bare, b"x".to_vec()).id(),
            message(&bare, b"x".to_vec()).id()
        );
    }

    #[test]
    fn an_unreadable_waybill_id_is_replaced_by_a_stable_one() {
        let mut table = FieldTable::default();
        table.insert(
            header_names::MESSAGE_ID.into(),
            AMQPValue::LongString(LongString::from("not-a-uuid")),
        );
        table.insert(
            header_names::KEY.into(),
            AMQPValue::LongString(LongString::from("k")),
        );
        let props = BasicProperties::default().with_headers(table);
        let first = message(&props, b"x".to_vec());
        assert_eq!(first.id(), message(&props, b"x".to_vec()).id());
        assert_eq!(first.key(), Some("k"), "the key survives");
    }
}
