//! Bad input against a real RabbitMQ: each gets a clear error, the message comes back, nothing
//! already accepted is lost.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::rabbitmq::{config, require_broker, url};
use waybill_core::header_names;
use waybill_core::testkit::Ledger;
use waybill_core::{
    typed_handler, DeadLetterRecord, ErrorClass, FailureClass, InMemoryIdempotencyStore,
    IncomingMessage, Message, Processor, PublishOutcome, Publisher, Subscriber,
};
use waybill_rabbitmq::{
    delete_group_topology, delete_topic, RabbitConfig, RabbitPublisher, RabbitSubscriber,
};

fn unique(prefix: &str) -> String {
    let id = waybill_core::MessageId::new().to_string().replace('-', "");
    format!("wb-{prefix}-{}", &id[22..])
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_is_no_destination_yet_and_hands_the_message_back() {
    require_broker().await;
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    let message = Message::new("lost?").with_key("k");
    let id = message.id();
    let err = publisher
        .publish(&unique("nowhere"), message)
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::NoDestination, "{err}");
    assert!(
        err.to_string().contains("404"),
        "names the reply code: {err}"
    );
    assert_eq!(err.into_message().id(), id);

    // The channel the broker closed is replaced: the publisher keeps working.
    let topic = unique("after404");
    let mut sub = RabbitSubscriber::connect(config(), &topic, "g")
        .await
        .unwrap();
    publisher.publish(&topic, Message::new("ok")).await.unwrap();
    let d = sub.receive().await.unwrap().unwrap();
    d.ack().await.unwrap();
    sub.close().await.unwrap();
    delete_group_topology(&config(), &topic, "g", true)
        .await
        .unwrap();
}

#[tokio::test]
async fn publishing_to_an_exchange_without_queues_is_unroutable() {
    require_broker().await;
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    let topic = unique("noqueue");
    publisher.declare_topic(&topic).await.unwrap();
    let message = Message::new("nobody listens");
    let id = message.id();
    let err = publisher.publish(&topic, message).await.unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::NoDestination);
    assert!(err.reason().contains("unroutable"), "{err}");
    assert_eq!(err.message().id(), id);

    let batch: Vec<Message> = (0..20).map(|i| Message::new(format!("{i}"))).collect();
    let ids: Vec<_> = batch.iter().map(Message::id).collect();
    let results = publisher.publish_batch(&topic, batch).await;
    for (result, id) in results.iter().zip(&ids) {
        let err = result
            .as_ref()
            .expect_err("every message of the batch is unroutable");
        assert_eq!(err.outcome(), PublishOutcome::NoDestination);
        assert_eq!(
            err.message().id(),
            *id,
            "each error hands back its own message"
        );
    }
    delete_topic(&config(), &topic).await.unwrap();
}

#[tokio::test]
async fn wrong_credentials_fail_fast_and_permanently() {
    require_broker().await;
    let bad = RabbitConfig::builder(url().replace("guest:guest", "guest:wrong-password"))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = RabbitPublisher::connect(bad.clone())
        .await
        .err()
        .expect("refused");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(err.class(), FailureClass::Permanent, "{err}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(
        !err.to_string().contains("wrong-password"),
        "password masked: {err}"
    );
    let err = RabbitSubscriber::connect(bad, "t", "g")
        .await
        .err()
        .expect("refused");
    assert_eq!(err.class(), FailureClass::Permanent);
}

#[tokio::test]
async fn a_broker_that_is_down_at_start_fails_within_the_connect_timeout() {
    let down = RabbitConfig::builder("amqp://guest:guest@127.0.0.1:1/%2f")
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = RabbitPublisher::connect(down.clone())
        .await
        .err()
        .expect("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err.class(), FailureClass::Transient, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    assert!(RabbitSubscriber::connect(down, "t", "g").await.is_err());
}

/// A charge as the billing consumer reads it (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Charge {
    amount: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_mislabelled_payloads_are_dead_lettered_with_the_decode_error() {
    require_broker().await;
    let topic = unique("malformed");
    let subscriber = RabbitSubscriber::connect(config(), &topic, "billing")
        .await
        .unwrap();
    let mut dead = RabbitSubscriber::dead_letters(config(), &topic, "billing")
        .await
        .unwrap();
    let publisher = RabbitPublisher::connect(config()).await.unwrap();
    let ledger = Arc::new(Ledger::new());
    let (mut malformed_id, mut mislabelled_id) = (None, None);
    for i in 0..20 {
        let m = match i {
            // JSON by label, not by content: the typed handler must refuse it.
            7 => Message::new("{not json")
                .with_header(header_names::CONTENT_TYPE, "application/json"),
            // Valid JSON bytes, but labelled as another format: refused before decoding.
            13 => Message::new(r#"{"amount":13}"#)
                .with_header(header_names::CONTENT_TYPE, "application/avro"),
            _ => Message::json(&Charge { amount: i }).unwrap(),
        }
        .with_key(format!("order-{}", i % 3));
        match i {
            7 => malformed_id = Some(m.id()),
            13 => mislabelled_id = Some(m.id()),
            _ => ledger.confirmed(m.id()),
        }
        publisher.publish(&topic, m).await.unwrap();
    }
    let handler = {
        let ledger = Arc::clone(&ledger);
        typed_handler(move |charge: Charge, m: IncomingMessage| {
            let ledger = Arc::clone(&ledger);
            async move {
                assert_ne!(
                    charge.amount, 7,
                    "the malformed payload never reaches the closure"
                );
                ledger.effect(m.message().id(), None);
                Ok(())
            }
        })
    };
    let running = Processor::builder("billing")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .unwrap()
        .start(subscriber, handler);
    let mut records = Vec::new();
    for _ in 0..2 {
        let letter = tokio::time::timeout(Duration::from_secs(20), dead.receive())
            .await
            .expect("a dead letter arrives")
            .unwrap()
            .unwrap();
        records.push(DeadLetterRecord::read_from(letter.message().message().headers()).unwrap());
        letter.ack().await.unwrap();
    }
    for _ in 0..200 {
        if ledger.effects() == 18 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let totals = running.shutdown().await.unwrap();
    dead.close().await.unwrap();
    delete_group_topology(&config(), &topic, "billing", true)
        .await
        .unwrap();

    let record_of = |id| {
        records
            .iter()
            .find(|r| Some(r.message_id) == id)
            .expect("dead-lettered")
    };
    let malformed = record_of(malformed_id);
    assert_eq!(malformed.error_class, ErrorClass::Permanent);
    assert!(
        malformed
            .error_message
            .contains("codec json cannot decode the payload as")
            && malformed.error_message.contains("Charge")
            && malformed.error_message.contains("line 1 column"),
        "the record names the codec, the type and serde's error: {malformed:?}"
    );
    assert_eq!(malformed.origin, topic);
    assert_eq!(malformed.group, "billing");
    let mislabelled = record_of(mislabelled_id);
    assert_eq!(mislabelled.error_class, ErrorClass::Permanent);
    assert!(
        mislabelled.error_message.contains("\"application/avro\"")
            && mislabelled
                .error_message
                .contains("codec json reads application/json"),
        "{mislabelled:?}"
    );
    assert!(ledger.report().is_clean(), "{:?}", ledger.report());
    assert_eq!(totals.handled, 18);
    assert_eq!(totals.dead_lettered, 2);
}

#[tokio::test]
async fn a_partitioned_group_refuses_a_bad_or_changed_partition_count_and_a_group_declared_unpartitioned(
) {
    use waybill_rabbitmq::{delete_partitioned_group_topology, RabbitPartitionedSubscriber};
    require_broker().await;
    let topic = unique("partitioned-bad");
    for partitions in [0, waybill_rabbitmq::MAX_PARTITIONS + 1] {
        let err =
            match RabbitPartitionedSubscriber::connect(config(), &topic, "g", partitions).await {
                Ok(_) => panic!("{partitions} partitions accepted"),
                Err(e) => e,
            };
        assert_eq!(err.class(), FailureClass::Permanent, "{err}");
        assert!(
            err.to_string().contains("partitions"),
            "names the setting: {err}"
        );
    }

    // A group first run unpartitioned keeps its retry tiers' route to its work queue: joining
    // it partitioned is refused, naming the argument, and its messages stay where they are.
    let mut plain = RabbitSubscriber::connect(config(), &topic, "g")
        .await
        .unwrap();
    let err = match RabbitPartitionedSubscriber::connect(config(), &topic, "g", 4).await {
        Ok(_) => panic!("an unpartitioned group joined as partitioned"),
        Err(e) => e,
    };
    assert_eq!(err.class(), FailureClass::Permanent, "{err}");
    assert!(
        err.to_string().contains("406") && err.to_string().contains("x-dead-letter"),
        "names the conflicting argument: {err}"
    );
    plain.close().await.unwrap();
    delete_group_topology(&config(), &topic, "g", false)
        .await
        .unwrap();
    delete_partitioned_group_topology(&config(), &topic, "g", 4, false)
        .await
        .unwrap();

    // And the other way round: a partitioned group cannot be joined unpartitioned.
    let mut member = RabbitPartitionedSubscriber::connect(config(), &topic, "h", 4)
        .await
        .unwrap();
    let err = match RabbitSubscriber::connect(config(), &topic, "h").await {
        Ok(_) => panic!("a partitioned group joined as unpartitioned"),
        Err(e) => e,
    };
    assert_eq!(err.class(), FailureClass::Permanent, "{err}");
    assert!(err.to_string().contains("406"), "{err}");
    // Nor with another partition count: the two schemes' bindings would send a key to two
    // partitions.
    let err = match RabbitPartitionedSubscriber::connect(config(), &topic, "h", 6).await {
        Ok(_) => panic!("a group of 4 partitions joined with 6"),
        Err(e) => e,
    };
    assert_eq!(err.class(), FailureClass::Permanent, "{err}");
    assert!(
        err.to_string().contains("406") && err.to_string().contains("alternate-exchange"),
        "names the conflicting argument: {err}"
    );
    member.close().await.unwrap();
    delete_group_topology(&config(), &topic, "h", false)
        .await
        .unwrap();
    delete_partitioned_group_topology(&config(), &topic, "h", 4, true)
        .await
        .unwrap();
}
