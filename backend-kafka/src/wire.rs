//! Conversions between waybill messages and Kafka records.

use bytes::Bytes;
use rdkafka::message::{BorrowedMessage, Header, Headers as _, OwnedHeaders};
use rdkafka::Message as _;
use waybill_core::{header_names, Headers, Message, MessageId};

/// What goes into a record's headers: the user headers plus `waybill-id` and
/// `waybill-created-at` (the key travels in Kafka's own key field).
pub(crate) fn identity_headers(message: &Message) -> Headers {
    let mut wire = message.wire_headers();
    wire.remove(header_names::KEY);
    wire
}

/// `headers` as record headers.
pub(crate) fn record_headers(headers: &Headers) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers.iter() {
        out = out.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    out
}

/// Bytes counted against the size limit: key, payload and the record headers.
pub(crate) fn record_size(message: &Message, headers: &Headers) -> usize {
    message.key().map_or(0, str::len)
        + message.payload().len()
        + headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// Rebuilds the waybill message of a consumed record.
///
/// A record from another producer has no `waybill-id`: it gets an id derived from its topic,
/// partition and offset, so that every redelivery of it carries the same id and the
/// idempotency store can drop duplicates.
pub(crate) fn message(record: &BorrowedMessage<'_>) -> Message {
    let mut headers = Headers::new();
    if let Some(hs) = record.headers() {
        for h in hs.iter() {
            if let Some(value) = h.value {
                headers.insert(h.key, String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    let key = record
        .key()
        .map(|k| String::from_utf8_lossy(k).into_owned());
    if !headers.contains(header_names::MESSAGE_ID) {
        let id = position_id(record.topic(), record.partition(), record.offset());
        headers.insert(header_names::MESSAGE_ID, id.to_string());
    }
    let payload = Bytes::copy_from_slice(record.payload().unwrap_or_default());
    match Message::from_wire(key.clone(), payload.clone(), headers.clone()) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable waybill identity headers; using the record's position");
            headers.remove(header_names::CREATED_AT);
            headers.insert(
                header_names::MESSAGE_ID,
                position_id(record.topic(), record.partition(), record.offset()).to_string(),
            );
            Message::from_wire(key, payload, headers).expect("a valid id header was just written")
        }
    }
}

/// A stable id for the record at `topic`/`partition`/`offset` (UUID v5).
pub(crate) fn position_id(topic: &str, partition: i32, offset: i64) -> MessageId {
    MessageId::from_uuid(uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!("kafka:{topic}:{partition}:{offset}").as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_records_get_an_id_from_their_position() {
        assert_eq!(position_id("t", 0, 5), position_id("t", 0, 5));
        assert_ne!(position_id("t", 0, 5), position_id("t", 1, 5));
    }

    #[test]
    fn record_headers_carry_the_identity_but_not_the_key() {
        let m = Message::new("x").with_key("k").with_header("a", "1");
        let h = record_headers(&identity_headers(&m));
        let names: Vec<&str> = (0..h.count()).map(|i| h.get(i).key).collect();
        assert!(names.contains(&header_names::MESSAGE_ID));
        assert!(names.contains(&"a"));
        assert!(!names.contains(&header_names::KEY));
    }
}
