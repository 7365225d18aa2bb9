//! Bad input against a real Kafka-protocol broker: each gets a clear error and the message is
//! handed back. Also a handler that misbehaves by blocking far longer than the consumer may go
//! without polling: the subscriber rides it out without losing its group membership.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::kafka::{brokers, config, create_topic_for_test, require_broker, topic};
use waybill_core::{
    handler_fn, FailureClass, IncomingMessage, Message, Processor, PublishOutcome, Publisher,
    Subscriber,
};
use waybill_kafka::{create_topic, KafkaConfig, KafkaPublisher, KafkaSubscriber};

/// A handler blocks on one message for twice `max.poll.interval.ms` while a hundred more
/// arrive; the Processor (concurrency 1, four buffered) stops asking for deliveries. Before
/// the subscriber polled in a task of its own, librdkafka then took the member for wedged
/// ("Application maximum poll interval exceeded"), left the group, and after rejoining read
/// everything uncommitted again: the handler saw messages twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_blocking_past_the_poll_interval_does_not_get_the_consumer_evicted() {
    // Shows the consumer's errors (an eviction's among them) in the test output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    require_broker().await;
    let topic = topic("wb-slow");
    create_topic(&config(), &topic, 1, 1).await.unwrap();
    let poll_interval = Duration::from_secs(6);
    let consumer_config = KafkaConfig::builder(brokers())
        .session_timeout(poll_interval)
        .commit_interval(Duration::from_millis(200))
        .property("topic.metadata.propagation.max.ms", "3000")
        .property(
            "max.poll.interval.ms",
            poll_interval.as_millis().to_string(),
        )
        .build()
        .unwrap();
    let total = 101;
    let messages: Vec<Message> = std::iter::once(Message::new("slow").with_key("k-slow"))
        .chain((1..total).map(|i| Message::new(format!("m{i}")).with_key(format!("k{i}"))))
        .collect();
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    for result in publisher.publish_batch(&topic, messages).await {
        result.expect("published");
    }

    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let handler = {
        let seen = Arc::clone(&seen);
        handler_fn(move |m: IncomingMessage| {
            let seen = Arc::clone(&seen);
            async move {
                let payload = String::from_utf8_lossy(m.message().payload()).into_owned();
                *seen.lock().unwrap().entry(payload.clone()).or_default() += 1;
                if payload == "slow" {
                    tokio::time::sleep(poll_interval * 2).await;
                }
                Ok(())
            }
        })
    };
    let group = format!("{topic}-handlers");
    let subscriber = KafkaSubscriber::connect(consumer_config, &topic, &group)
        .await
        .unwrap();
    let running = Processor::builder(group)
        .at_least_once_effects()
        .concurrency(1)
        .max_buffered(4)
        .build()
        .unwrap()
        .start(subscriber, handler);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.lock().unwrap().len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {total} messages handled",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // An evicted member rejoins at its next poll and reads the uncommitted tail again: give
    // such copies time to show.
    tokio::time::sleep(poll_interval + Duration::from_secs(2)).await;
    let totals = running.shutdown().await.unwrap();
    let seen = seen.lock().unwrap();
    let mut twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    twice.sort();
    assert!(
        twice.is_empty() && totals.receive_errors == 0,
        "the consumer left its group while the handler blocked: {} consumer errors (an \
         evicted member gets librdkafka's \"Application maximum poll interval exceeded\"), \
         {} messages handled more than once, e.g. {:?}",
        totals.receive_errors,
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(seen.len(), total, "every message handled");
}

/// A reader that stops taking deliveries while 12,000 small records wait on one partition:
/// the subscriber pauses the partition at its backlog bound (10,000 records) instead of
/// fetching on, and once the reader takes the backlog down it resumes, and every record
/// arrives once, in offset order — the pause and resume skip nothing and repeat nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_far_behind_pauses_its_partition_and_misses_nothing() {
    require_broker().await;
    let topic = topic("wb-backlog");
    create_topic(&config(), &topic, 1, 1).await.unwrap();
    let total = 12_000;
    let publisher = KafkaPublisher::connect(config()).await.unwrap();
    // In batches below the producer's in-flight bound (10,000), past which a publish fails.
    let messages: Vec<Message> = (0..total)
        .map(|i| Message::new(format!("{i:08}")).with_key("k"))
        .collect();
    for batch in messages.chunks(4_000) {
        for result in publisher.publish_batch(&topic, batch.to_vec()).await {
            result.expect("published");
        }
    }
    let mut subscriber = KafkaSubscriber::connect(config(), &topic, &format!("{topic}-reader"))
        .await
        .unwrap();
    let first = subscriber.receive().await.unwrap().expect("a delivery");
    // The reader stalls: the poller goes on until the bound pauses the partition.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while subscriber.paused_partitions().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the partition was never paused while {} records waited for a stalled reader",
            total - 1
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(subscriber.paused_partitions(), vec![(topic.clone(), 0)]);
    let mut payloads =
        vec![String::from_utf8_lossy(first.message().message().payload()).into_owned()];
    first.ack().await.unwrap();
    while payloads.len() < total {
        let delivery = tokio::time::timeout(Duration::from_secs(30), subscriber.receive())
            .await
            .unwrap_or_else(|_| panic!("stalled after {} of {total} records", payloads.len()))
            .unwrap()
            .expect("a delivery");
        payloads.push(String::from_utf8_lossy(delivery.message().message().payload()).into_owned());
        delivery.ack().await.unwrap();
    }
    assert!(
        subscriber.paused_partitions().is_empty(),
        "the partition stayed paused after its reader caught up"
    );
    let expected: Vec<String> = (0..total).map(|i| format!("{i:08}")).collect();
    assert!(
        payloads == expected,
        "records repeated, skipped or out of order across the pause: first difference at {:?}",
        payloads.iter().zip(&expected).position(|(a, b)| a != b)
    );
    subscriber.close().await.unwrap();
}

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
