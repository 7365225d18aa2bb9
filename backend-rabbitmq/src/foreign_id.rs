//! A stable id for a delivery that carries no usable waybill id.
//!
//! RabbitMQ gives a stored message no id or position of its own, so the id has to come from
//! what the producer wrote, which comes back unchanged on every redelivery:
//!
//! 1. the AMQP `message-id` property when it is a UUID (taken as it is);
//! 2. any other non-empty `message-id`: UUID v5 of it;
//! 3. otherwise UUID v5 of the content: the body, the properties the producer set and its
//!    headers, leaving out what the broker adds or changes on the way (`x-delivery-count`,
//!    `x-death` and the other dead-lettering headers, `expiration`, which dead-lettering
//!    removes).
//!
//! The content rule cannot tell apart two messages that a producer published with the same
//! body, properties and headers (and no `message-id` or timestamp): they count as one message,
//! and the idempotency store handles only the first. Producers that may publish identical
//! messages on purpose must set `message-id`.

use lapin::BasicProperties;
use uuid::Uuid;
use waybill_core::{Headers, MessageId};

/// Headers the broker adds or changes between deliveries of one published message.
const BROKER_HEADERS: [&str; 11] = [
    "x-delivery-count",
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-received-from",
    "CC",
    "BCC",
];

/// The stable id of a delivery without a usable `waybill-id` (see the module docs).
///
/// `headers` are the delivery's headers as text (see [`crate::wire::headers`]).
pub(crate) fn foreign_id(
    properties: &BasicProperties,
    headers: &Headers,
    payload: &[u8],
) -> MessageId {
    if let Some(id) = properties.message_id().as_ref().map(|id| id.as_str()) {
        if let Ok(id) = id.parse::<MessageId>() {
            return id;
        }
        if !id.is_empty() {
            return v5(format!("rabbitmq:message-id:{id}").as_bytes());
        }
    }
    v5(&fingerprint(properties, headers, payload))
}

fn v5(name: &[u8]) -> MessageId {
    MessageId::from_uuid(Uuid::new_v5(&Uuid::NAMESPACE_OID, name))
}

/// The bytes the content id is derived from: each field as `name`, length, value, so that no
/// two different contents encode alike.
fn fingerprint(properties: &BasicProperties, headers: &Headers, payload: &[u8]) -> Vec<u8> {
    let mut out = b"rabbitmq:content".to_vec();
    let mut field = |name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(&(value.len() as u64).to_be_bytes());
        out.extend_from_slice(value);
    };
    let text = |s: &Option<lapin::types::ShortString>| s.as_ref().map(|s| s.as_str().to_owned());
    let stable = [
        ("content-type", text(properties.content_type())),
        ("content-encoding", text(properties.content_encoding())),
        ("correlation-id", text(properties.correlation_id())),
        ("reply-to", text(properties.reply_to())),
        ("type", text(properties.kind())),
        ("user-id", text(properties.user_id())),
        ("app-id", text(properties.app_id())),
        ("cluster-id", text(properties.cluster_id())),
        ("priority", properties.priority().map(|p| p.to_string())),
        ("timestamp", properties.timestamp().map(|t| t.to_string())),
    ];
    for (name, value) in stable {
        if let Some(value) = value {
            field(name, value.as_bytes());
        }
    }
    // Headers iterate in name order.
    for (name, value) in headers.iter() {
        if !BROKER_HEADERS.contains(&name) {
            field(&format!("header:{name}"), value.as_bytes());
        }
    }
    field("body", payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(properties: &BasicProperties, headers: &Headers, body: &str) -> MessageId {
        foreign_id(properties, headers, body.as_bytes())
    }

    #[test]
    fn a_uuid_message_id_is_taken_as_it_is() {
        let uuid = MessageId::new();
        let props = BasicProperties::default().with_message_id(uuid.to_string().as_str().into());
        assert_eq!(id(&props, &Headers::new(), "x"), uuid);
    }

    #[test]
    fn another_message_id_names_the_message_whatever_its_content() {
        let props = BasicProperties::default().with_message_id("order-7".into());
        let a = id(&props, &Headers::new(), "x");
        assert_eq!(a, id(&props, &Headers::new(), "changed"));
        let other = BasicProperties::default().with_message_id("order-8".into());
        assert_ne!(a, id(&other, &Headers::new(), "x"));
    }

    #[test]
    fn without_a_message_id_the_content_names_it_but_broker_headers_do_not() {
        let props = BasicProperties::default();
        let mut headers = Headers::new();
        headers.insert("tenant", "a");
        let first = id(&props, &headers, "body");
        headers.insert("x-delivery-count", "3");
        headers.insert("x-first-death-reason", "delivery_limit");
        assert_eq!(
            first,
            id(&props, &headers, "body"),
            "broker headers ignored"
        );
        assert_ne!(first, id(&props, &headers, "other body"));
        headers.insert("tenant", "b");
        assert_ne!(
            first,
            id(&props, &headers, "body"),
            "producer headers count"
        );
        let typed = BasicProperties::default().with_type("order.created".into());
        assert_ne!(first, id(&typed, &Headers::new(), "body"));
        let expiring = BasicProperties::default().with_expiration("60000".into());
        assert_eq!(
            id(&expiring, &Headers::new(), "body"),
            id(&props, &Headers::new(), "body"),
            "expiration is dropped by dead-lettering, so it does not count"
        );
    }

    #[test]
    fn fields_cannot_run_into_each_other() {
        let mut a = Headers::new();
        a.insert("k", "ab");
        let mut b = Headers::new();
        b.insert("k", "a");
        let props = BasicProperties::default();
        assert_ne!(id(&props, &a, "c"), id(&props, &b, "bc"));
    }
}
