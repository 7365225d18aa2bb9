//! `publish_batch` against a real Kafka-protocol broker when librdkafka's local queue fills up
//! in the middle of a batch: the batch waits for its own earlier messages' confirms to make
//! room, in order; a message the queue cannot take even when the batch has nothing left in it
//! fails, and so do its key's later messages.
//!
//! The queue is made tiny with `queue.buffering.max.kbytes` (or `max_in_flight`), and message
//! sizes are chosen so that the outcome does not race the broker's delivery reports.

mod support;

use std::time::Duration;

use support::kafka::{brokers, create_topic_for_test, require_broker};
use waybill_core::{Message, PublishOutcome, Publisher, Subscriber};
use waybill_kafka::{KafkaConfig, KafkaPublisher, KafkaSubscriber};

#[tokio::test]
async fn a_message_the_local_queue_cannot_take_fails_the_keys_later_messages_of_the_batch() {
    require_broker().await;
    let topic = create_topic_for_test("wb-qfull").await;
    let tiny_queue = KafkaConfig::builder(brokers())
        .property("queue.buffering.max.kbytes", "1")
        .build()
        .unwrap();
    let publisher = KafkaPublisher::connect(tiny_queue).await.unwrap();
    let big = || vec![b'x'; 700];
    let batch = vec![
        Message::new(big()).with_key("k"), // fits: 700 of 1,024 bytes
        // QueueFull, even once the first is confirmed and the queue is empty: 1,100 bytes
        Message::new(vec![b'y'; 1_100]).with_key("k"),
        Message::new("small").with_key("k"),  // would fit
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
        "the local queue cannot take the second message: {results:?}"
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

/// A batch larger than the producer's local queue (`max_in_flight` 50, 1,000 messages over 10
/// keys) waits for room instead of failing its tail: every message is confirmed, and each
/// key's messages were written in batch order (their offsets rise within the key's
/// partition). On the old code the messages past the queue's room failed as not sent.
#[tokio::test]
async fn a_batch_larger_than_the_local_queue_waits_for_room_in_order() {
    require_broker().await;
    let topic = create_topic_for_test("wb-qroom").await;
    let small_queue = KafkaConfig::builder(brokers())
        .max_in_flight(50)
        .build()
        .unwrap();
    let publisher = KafkaPublisher::connect(small_queue).await.unwrap();
    let batch: Vec<Message> = (0..1_000)
        .map(|i| Message::new(format!("m{i}")).with_key(format!("k{}", i % 10)))
        .collect();
    let keys: Vec<String> = batch.iter().map(|m| m.key().unwrap().to_owned()).collect();
    let results = publisher.publish_batch(&topic, batch).await;
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 1,000 failed, the first: {:?}",
        failed.len(),
        failed.first()
    );
    let mut last: std::collections::HashMap<&str, (i32, i64)> = std::collections::HashMap::new();
    for (key, result) in keys.iter().zip(&results) {
        let waybill_core::BrokerPosition::PartitionOffset { partition, offset } =
            result.as_ref().unwrap().position
        else {
            panic!("a Kafka receipt names its partition and offset");
        };
        if let Some((p, o)) = last.insert(key, (partition, offset)) {
            assert_eq!(p, partition, "key {key} stays on one partition");
            assert!(
                o < offset,
                "key {key}: offset {offset} after {o}, out of batch order"
            );
        }
    }
    publisher.close().await.unwrap();
}
