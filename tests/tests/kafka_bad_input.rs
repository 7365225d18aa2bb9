//! Bad input against a real Kafka-protocol broker: each gets a clear error and the message is
//! handed back.

mod support;

use std::time::Duration;

use support::kafka::{config, create_topic_for_test, require_broker, topic};
use waybill_core::{FailureClass, Message, PublishOutcome, Publisher};
use waybill_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};

#[tokio::test]
async fn an_unknown_topic_is_no_destination_yet_and_the_message_comes_back() {
    require_broker().await;
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    let missing = topic("wb-missing");
    let message = Message::new("lost?").with_key("k");
    let err = publisher
        .publish(&missing, message.clone())
        .await
        .expect_err("auto-create is off: the topic must not appear");
    assert_eq!(err.outcome(), PublishOutcome::NoDestination, "{err}");
    assert!(err.is_retryable(), "the topic may be created later: {err}");
    assert!(err.to_string().to_lowercase().contains("unknown"), "{err}");
    assert_eq!(err.message().id(), message.id());
    assert_eq!(err.message().payload(), message.payload());
    let subscriber = KafkaSubscriber::connect(config(), &missing, "g").await;
    let err = subscriber
        .err()
        .expect("subscribing to a missing topic fails");
    assert_eq!(err.class(), FailureClass::Permanent);
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn an_oversized_message_is_refused_and_handed_back() {
    require_broker().await;
    let t = create_topic_for_test("wb-big").await;
    let small_limit = KafkaConfig::builder(support::kafka::brokers())
        .message_max_bytes(10_000)
        .build()
        .unwrap();
    let publisher = KafkaPublisher::connect(small_limit).await.unwrap();
    let big = Message::new(vec![7u8; 20_000]);
    let err = publisher.publish(&t, big.clone()).await.unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::Permanent);
    assert!(err.to_string().contains("exceeds"), "{err}");
    assert_eq!(err.into_message().payload().len(), 20_000);
    // In a batch only the oversized one fails.
    let results = publisher
        .publish_batch(&t, vec![Message::new("ok"), big, Message::new("ok too")])
        .await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert!(results[1].is_err());
}

#[tokio::test]
async fn a_broker_that_is_down_at_start_is_a_clear_transient_error() {
    let down = KafkaConfig::builder("127.0.0.1:1").build().unwrap();
    let started = std::time::Instant::now();
    let err = KafkaPublisher::connect(down.clone())
        .await
        .err()
        .expect("nothing listens on port 1");
    assert_eq!(err.class(), FailureClass::Transient);
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = KafkaSubscriber::connect(down, "t", "g")
        .await
        .err()
        .expect("no subscriber without a broker");
    assert!(
        err.to_string().contains("127.0.0.1:1") || err.class() == FailureClass::Transient,
        "{err}"
    );
}

#[tokio::test]
async fn invalid_settings_and_names_are_refused_up_front() {
    let err = KafkaConfig::builder("127.0.0.1:9092")
        .property("enable.idempotence", "false")
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "property");
    assert!(err.to_string().contains("enable.idempotence"), "{err}");
    assert_eq!(
        KafkaConfig::builder("").build().unwrap_err().field(),
        "brokers"
    );
    require_broker().await;
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    let err = publisher
        .publish("not a topic!", Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::Permanent);
    assert!(err.to_string().contains("topic"), "{err}");
}
