//! Conversions between waybill messages and RocketMQ messages.
//!
//! Headers travel as user properties; the key travels as `waybill-key` (keys may hold spaces,
//! which RocketMQ's `KEYS` property splits on) and also as `KEYS` when it has none, so that
//! the broker's key index finds it.

use cheetah_string::CheetahString;
use rocketmq_model::common::message::message_client_id_setter::MessageClientIDSetter;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message as RocketMessage;
use rocketmq_model::common::message::STRING_HASH_SET;
use waybill_core::{header_names, Headers, Message, MessageId};

/// Why a message cannot be written as a RocketMQ message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// A header name RocketMQ reserves for itself.
    #[error("header {0:?} is a RocketMQ system property name")]
    Reserved(String),
    /// RocketMQ separates properties with \u{1} and \u{2}; they cannot appear inside one.
    #[error("header {0:?} contains the control character \\u{{1}} or \\u{{2}}, which RocketMQ uses as separators")]
    Separator(String),
    /// RocketMQ refuses empty property values.
    #[error("header {0:?} has an empty value, which RocketMQ refuses")]
    EmptyValue(String),
    /// The client refused the message.
    #[error("{0}")]
    Client(String),
}

/// The headers a message travels with: user headers plus `waybill-id`, `waybill-created-at`
/// and `waybill-key`.
pub(crate) fn wire_headers(message: &Message) -> Result<Headers, WireError> {
    let headers = message.wire_headers();
    for (name, value) in headers.iter() {
        if STRING_HASH_SET.contains(name) {
            return Err(WireError::Reserved(name.to_owned()));
        }
        if [name, value].iter().any(|s| s.contains(['\u{1}', '\u{2}'])) {
            return Err(WireError::Separator(name.to_owned()));
        }
        if value.is_empty() {
            return Err(WireError::EmptyValue(name.to_owned()));
        }
    }
    Ok(headers)
}

/// Bytes counted against the size limit: body plus properties (with their separators).
pub(crate) fn wire_size(message: &Message, headers: &Headers) -> usize {
    message.payload().len()
        + headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
}

/// A RocketMQ message for `topic` carrying `message` with `headers` (from [`wire_headers`]).
pub(crate) fn rocket_message(
    topic: &str,
    message: &Message,
    headers: &Headers,
) -> Result<RocketMessage, WireError> {
    let mut builder = RocketMessage::builder()
        .topic(topic)
        .body(message.payload().clone());
    if let Some(key) = message.key().filter(|k| !k.contains(' ') && !k.is_empty()) {
        builder = builder.key(key);
    }
    for (name, value) in headers.iter() {
        builder = builder
            .raw_property(name, value)
            .map_err(|e| WireError::Client(format!("{e}")))?;
    }
    builder
        .build()
        .map_err(|e| WireError::Client(format!("{e}")))
}

/// Rebuilds the waybill message of a consumed RocketMQ message.
///
/// A message from another producer has no `waybill-id`: it gets an id derived from its
/// `UNIQ_KEY` (or, without one, its queue position), so that every redelivery of it carries
/// the same id and the idempotency store can drop duplicates.
pub(crate) fn message(ext: &MessageExt) -> Message {
    let mut headers = Headers::new();
    for (name, value) in ext.properties() {
        if !STRING_HASH_SET.contains(name.as_str()) {
            headers.insert(name.as_str(), value.as_str());
        }
    }
    let key = headers.remove(header_names::KEY).or_else(|| {
        ext.properties()
            .get(&CheetahString::from_static_str("KEYS"))
            .map(|k| k.to_string())
    });
    let foreign_id = || foreign_id(ext);
    if !headers.contains(header_names::MESSAGE_ID) {
        headers.insert(header_names::MESSAGE_ID, foreign_id().to_string());
    }
    let payload = ext.body().unwrap_or_default();
    match Message::from_wire(key.clone(), payload.clone(), headers.clone()) {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable waybill identity headers; using the message's own id");
            headers.remove(header_names::CREATED_AT);
            headers.insert(header_names::MESSAGE_ID, foreign_id().to_string());
            Message::from_wire(key, payload, headers).expect("a valid id header was just written")
        }
    }
}

/// A stable id for a message without `waybill-id` (UUID v5 of its `UNIQ_KEY` or position).
fn foreign_id(ext: &MessageExt) -> MessageId {
    let name = match MessageClientIDSetter::get_uniq_id(ext) {
        Some(uniq) => format!("rocketmq:uniq:{uniq}"),
        None => format!(
            "rocketmq:{}:{}:{}:{}",
            ext.topic(),
            ext.broker_name(),
            ext.queue_id(),
            ext.queue_offset()
        ),
    };
    MessageId::from_uuid(uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        name.as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_headers_rocketmq_cannot_carry() {
        let m = Message::new("x").with_header("KEYS", "a");
        assert_eq!(wire_headers(&m), Err(WireError::Reserved("KEYS".into())));
        let m = Message::new("x").with_header("a", "b\u{1}c");
        assert!(matches!(wire_headers(&m), Err(WireError::Separator(_))));
        let m = Message::new("x").with_header("a", "");
        assert!(matches!(wire_headers(&m), Err(WireError::EmptyValue(_))));
    }

    #[test]
    fn carries_identity_key_and_headers() {
        let m = Message::new("body")
            .with_key("order 7")
            .with_header("tenant", "acme");
        let h = wire_headers(&m).unwrap();
        let r = rocket_message("orders", &m, &h).unwrap();
        assert_eq!(r.body_slice(), b"body");
        let props = r.properties().as_map();
        let get = |n: &str| props.get(&CheetahString::from(n)).map(|v| v.to_string());
        assert_eq!(get("tenant").as_deref(), Some("acme"));
        assert_eq!(get(header_names::KEY).as_deref(), Some("order 7"));
        assert_eq!(get(header_names::MESSAGE_ID), Some(m.id().to_string()));
        assert_eq!(get("KEYS"), None, "a key with a space is not indexed");
    }
}
