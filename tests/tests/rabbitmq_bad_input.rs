//! Bad input against a real RabbitMQ: each gets a clear error, the message comes back, nothing
//! already accepted is lost.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::rabbitmq::{config, require_broker, url};
use waybill_core::testkit::Ledger;
use waybill_core::{
    handler_fn, DeadLetterRecord, ErrorClass, FailureClass, HandlerError, InMemoryIdempotencyStore,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_payload_is_dead_lettered_and_the_consumer_keeps_going() {
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
    let mut bad_id = None;
    for i in 0..20 {
        let body = if i == 7 {
            "{not json".to_owned()
        } else {
            format!("{{\"amount\":{i}}}")
        };
        let m = Message::new(body).with_key(format!("order-{}", i % 3));
        if i == 7 {
            bad_id = Some(m.id());
        } else {
            ledger.confirmed(m.id());
        }
        publisher.publish(&topic, m).await.unwrap();
    }
    let handler = {
        let ledger = Arc::clone(&ledger);
        handler_fn(move |m: IncomingMessage| {
            let ledger = Arc::clone(&ledger);
            async move {
                let body = std::str::from_utf8(m.message().payload()).unwrap_or_default();
                if !body.starts_with('{') || !body.ends_with('}') {
                    return Err(HandlerError::permanent(format!(
                        "malformed payload: {body:?}"
                    )));
                }
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
    let letter = tokio::time::timeout(Duration::from_secs(20), dead.receive())
        .await
        .expect("a dead letter arrives")
        .unwrap()
        .unwrap();
    let record = DeadLetterRecord::read_from(letter.message().message().headers()).unwrap();
    letter.ack().await.unwrap();
    for _ in 0..200 {
        if ledger.effects() == 19 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let totals = running.shutdown().await.unwrap();
    dead.close().await.unwrap();
    delete_group_topology(&config(), &topic, "billing", true)
        .await
        .unwrap();

    assert_eq!(Some(record.message_id), bad_id);
    assert_eq!(record.error_class, ErrorClass::Permanent);
    assert!(
        record.error_message.contains("malformed payload"),
        "{record:?}"
    );
    assert_eq!(record.origin, topic);
    assert_eq!(record.group, "billing");
    assert!(ledger.report().is_clean(), "{:?}", ledger.report());
    assert_eq!(totals.handled, 19);
    assert_eq!(totals.dead_lettered, 1);
}
