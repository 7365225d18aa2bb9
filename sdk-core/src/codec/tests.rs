use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, Json};
use crate::{header_names, HandlerError, Message};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct OrderPlaced {
    order_id: u64,
    total_cents: u64,
}

#[test]
fn json_round_trip_labels_the_payload() {
    let placed = OrderPlaced {
        order_id: 7,
        total_cents: 250,
    };
    let message = Message::json(&placed).unwrap();
    assert_eq!(message.content_type(), Some("application/json"));
    assert_eq!(
        message.payload().as_ref(),
        br#"{"order_id":7,"total_cents":250}"#
    );
    assert_eq!(message.decode_json::<OrderPlaced>().unwrap(), placed);
}

#[test]
fn an_unlabelled_payload_is_decoded_as_is() {
    let message = Message::new(r#"{"order_id":1,"total_cents":2}"#);
    assert_eq!(message.content_type(), None);
    assert_eq!(
        message.decode(&Json).ok(),
        Some(OrderPlaced {
            order_id: 1,
            total_cents: 2
        })
    );
}

#[test]
fn json_reads_its_relatives_and_refuses_other_formats() {
    let body = r#"{"order_id":1,"total_cents":2}"#;
    for label in [
        "application/json; charset=utf-8",
        "TEXT/JSON",
        "application/cloudevents+json",
    ] {
        let message = Message::new(body).with_header(header_names::CONTENT_TYPE, label);
        assert!(message.decode_json::<OrderPlaced>().is_ok(), "{label}");
    }
    let avro = Message::new(body).with_header(header_names::CONTENT_TYPE, "application/avro");
    let error = avro.decode_json::<OrderPlaced>().unwrap_err();
    assert!(
        matches!(error, CodecError::UnexpectedContentType { .. }),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        r#"payload has content type "application/avro", codec json reads application/json"#
    );
}

#[test]
fn a_decode_error_names_codec_type_and_position_and_is_permanent() {
    let message = Message::new(r#"{"order_id":"seven"}"#)
        .with_header(header_names::CONTENT_TYPE, "application/json");
    let error = message.decode_json::<OrderPlaced>().unwrap_err();
    let text = error.to_string();
    assert!(
        text.starts_with("codec json cannot decode the payload as "),
        "{text}"
    );
    assert!(
        text.contains("OrderPlaced") && text.contains("line 1 column"),
        "{text}"
    );
    assert!(matches!(
        HandlerError::from(error),
        HandlerError::Permanent(_)
    ));
}

#[test]
fn a_value_without_a_json_form_is_an_encode_error() {
    let mut map = std::collections::BTreeMap::new();
    map.insert((1, 2), "pair keys have no JSON form".to_owned());
    let error = Message::json(&map).unwrap_err();
    assert!(
        matches!(error, CodecError::Encode { codec: "json", .. }),
        "{error:?}"
    );
}

#[cfg(feature = "protobuf")]
#[test]
fn protobuf_round_trip_and_refusal() {
    use crate::codec::Protobuf;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Shipped {
        #[prost(uint64, tag = "1")]
        order_id: u64,
        #[prost(string, tag = "2")]
        carrier: String,
    }
    let shipped = Shipped {
        order_id: 9,
        carrier: "post".into(),
    };
    let message = Message::encoded(&Protobuf, &shipped).unwrap();
    assert_eq!(message.content_type(), Some("application/x-protobuf"));
    assert_eq!(message.decode::<Shipped, _>(&Protobuf).unwrap(), shipped);
    let truncated = Message::new(message.payload().slice(..3))
        .with_header(header_names::CONTENT_TYPE, "application/protobuf");
    let error = truncated.decode::<Shipped, _>(&Protobuf).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("codec protobuf cannot decode"),
        "{error}"
    );
    let as_json = Message::json(&OrderPlaced {
        order_id: 1,
        total_cents: 1,
    })
    .unwrap();
    assert!(matches!(
        as_json.decode::<Shipped, _>(&Protobuf),
        Err(CodecError::UnexpectedContentType { .. })
    ));
}

#[test]
fn question_mark_classifies_other_errors_as_transient() {
    let error = HandlerError::from(std::io::Error::other("database is restarting"));
    assert!(matches!(error, HandlerError::Transient(_)), "{error}");
    assert_eq!(error.to_string(), "transient: database is restarting");
}
