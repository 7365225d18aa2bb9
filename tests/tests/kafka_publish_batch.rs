//! `publish_batch` against a real Kafka-protocol broker when librdkafka's local queue fills up
//! in the middle of a batch.
//!
//! The queue is made tiny with `queue.buffering.max.kbytes` and message sizes are chosen so
//! that the queue is full for a large message and has room again for the small one after it,
//! deterministically, without racing the broker's delivery reports (a tiny
//! `queue.buffering.max.messages` shows the same, but only when a delivery report happens to
//! free a slot between two enqueues).

mod support;

use std::time::Duration;

use support::kafka::{brokers, create_topic_for_test, require_broker};
use waybill_core::{Message, PublishOutcome, Publisher, Subscriber};
use waybill_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};

#[tokio::test]
async fn a_local_queue_full_fails_the_keys_later_messages_of_the_batch() {
    require_broker().await;
    let topic = create_topic_for_test("wb-qfull").await;
    let tiny_queue = KafkaConfig::builder(brokers())
        .property("queue.buffering.max.kbytes", "1")
        .build()
        .unwrap();
    let publisher = KafkaPublisher::connect(tiny_queue).await.unwrap();
    let big = || vec![b'x'; 700];
    let batch = vec![
        Message::new(big()).with_key("k"),    // fits: 700 of 1,024 bytes
        Message::new(big()).with_key("k"),    // QueueFull: 1,400 bytes
        Message::new("small").with_key("k"),  // would fit: 705 bytes
        Message::new("other").with_key("k2"), // another key: unaffected
    ];
    let ids: Vec<_> = batch.iter().map(Message::id).collect();
    let results = publisher.publish_batch(&topic, batch).await;
    let outcomes: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().map(|_| ()).map_err(|e| e.outcome()))
        .collect();
    assert_eq!(
        outcomes[1],
        Err(PublishOutcome::NotSent),
        "the local queue was full for the second message: {results:?}"
    );
    assert_eq!(
        outcomes[2],
        Err(PublishOutcome::NotSent),
        "a later message of key k must not be written before the one that failed: {results:?}"
    );
    assert!(
        results[2]
            .as_ref()
            .unwrap_err()
            .reason()
            .contains("earlier message"),
        "{results:?}"
    );
    assert_eq!(outcomes[0], Ok(()), "{results:?}");
    assert_eq!(outcomes[3], Ok(()), "other keys go on: {results:?}");
    for (result, id) in results.iter().zip(&ids) {
        if let Err(e) = result {
            assert_eq!(e.message().id(), *id, "each error hands back its message");
        }
    }
    publisher.close().await.unwrap();

    // What reached the topic: of key k only the first message.
    let mut subscriber = KafkaSubscriber::connect(support::kafka::config(), &topic, "check")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(received) =
        tokio::time::timeout(Duration::from_secs(8), subscriber.receive()).await
    {
        let delivery = received.unwrap().expect("open");
        seen.push(delivery.message().message().id());
        delivery.ack().await.unwrap();
        if seen.len() == 2 {
            break;
        }
    }
    subscriber.close().await.unwrap();
    seen.sort();
    let mut expected = vec![ids[0], ids[3]];
    expected.sort();
    assert_eq!(seen, expected);
}
