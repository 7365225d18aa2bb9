//! Bad input against the in-memory broker: clear errors, the message handed back, nothing lost.

use waybill_core::{MemoryBroker, Message, PublishFault, PublishOutcome, Publisher, Subscriber};

#[tokio::test]
async fn oversized_unknown_and_empty_topics_are_clear_errors_with_the_message_back() {
    let broker = MemoryBroker::builder()
        .auto_create_topics(false)
        .max_message_bytes(1024)
        .build()
        .unwrap();
    broker.create_topic("orders").unwrap();
    let publisher = broker.publisher();

    let big = Message::new(vec![7u8; 2048]);
    let id = big.id();
    let err = publisher.publish("orders", big).await.unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::Permanent);
    assert!(err.reason().contains("exceeds the limit"), "{err}");
    assert_eq!(err.into_message().id(), id);

    let err = publisher
        .publish("nowhere", Message::new("x"))
        .await
        .unwrap_err();
    assert_eq!(
        err.outcome(),
        PublishOutcome::NoDestination,
        "not there yet"
    );
    assert!(err.is_retryable());
    assert!(err.reason().contains("unknown topic"), "{err}");

    let err = publisher.publish("", Message::new("x")).await.unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::Permanent);
    assert!(err.to_string().contains("topic"), "{err}");

    assert!(broker.subscriber("nowhere", "g").is_err());
    assert!(broker.messages("orders").is_empty(), "nothing half-stored");
    assert!(MemoryBroker::builder()
        .max_message_bytes(0)
        .build()
        .is_err());
}

#[tokio::test]
async fn injected_publish_faults_classify_and_store_as_a_broker_would() {
    let broker = MemoryBroker::new();
    let publisher = broker.publisher();
    let mut sub = broker.subscriber("t", "g").unwrap();

    broker
        .faults()
        .fail_next_publishes(1, PublishFault::NotSent);
    let err = publisher.publish("t", Message::new("a")).await.unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::NotSent);
    assert!(err.is_retryable());
    assert_eq!(broker.messages("t").len(), 0);

    broker
        .faults()
        .fail_next_publishes(1, PublishFault::Ambiguous { stored: false });
    let err = publisher.publish("t", Message::new("b")).await.unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::Ambiguous);
    assert_eq!(broker.messages("t").len(), 0);

    // A retry after an ambiguous outcome reuses the same message, so the id is kept.
    broker
        .faults()
        .fail_next_publishes(1, PublishFault::Ambiguous { stored: true });
    let err = publisher.publish("t", Message::new("c")).await.unwrap_err();
    let retried = err.into_message();
    publisher.publish("t", retried.clone()).await.unwrap();
    let stored = broker.messages("t");
    assert_eq!(stored.len(), 2);
    assert!(
        stored.iter().all(|m| m.id() == retried.id()),
        "same id twice: a duplicate to dedupe"
    );

    let first = sub.receive().await.unwrap().unwrap();
    first.ack().await.unwrap();
    let second = sub.receive().await.unwrap().unwrap();
    assert_eq!(second.message().message().id(), retried.id());
    second.ack().await.unwrap();

    broker
        .faults()
        .fail_next_publishes(1, PublishFault::Permanent);
    let err = publisher.publish("t", Message::new("d")).await.unwrap_err();
    assert!(!err.is_retryable());
    broker
        .faults()
        .fail_next_publishes(1, PublishFault::NoDestination);
    let err = publisher
        .publish("t", Message::new("d2"))
        .await
        .unwrap_err();
    assert_eq!(err.outcome(), PublishOutcome::NoDestination);
    assert!(err.is_retryable() && err.is_destination_missing());
    assert_eq!(broker.messages("t").len(), 2, "not stored");
    broker.faults().clear();
    publisher.publish("t", Message::new("e")).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn delivery_delay_and_duplicate_faults() {
    use waybill_core::DeliveryFault;
    let broker = MemoryBroker::new();
    let mut sub = broker.subscriber("t", "g").unwrap();
    broker.faults().on_deliver(|ctx| {
        if ctx.redelivered {
            None
        } else if ctx.message.payload().as_ref() == b"dup" {
            Some(DeliveryFault::Duplicate)
        } else {
            Some(DeliveryFault::Delay(std::time::Duration::from_secs(5)))
        }
    });
    let publisher = broker.publisher();
    publisher.publish("t", Message::new("dup")).await.unwrap();
    let started = tokio::time::Instant::now();
    let a = sub.receive().await.unwrap().unwrap();
    let b = sub.receive().await.unwrap().unwrap();
    assert_eq!(a.message().message().id(), b.message().message().id());
    assert!(b.message().is_redelivered());
    a.ack().await.unwrap();
    b.ack().await.unwrap();

    publisher.publish("t", Message::new("slow")).await.unwrap();
    let c = sub.receive().await.unwrap().unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    c.ack().await.unwrap();
}
