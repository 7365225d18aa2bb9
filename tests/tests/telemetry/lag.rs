//! Consumer lag on real Kafka and RabbitMQ: a group's probe counts what was published and not
//! consumed (per partition on Kafka, the work queue on RabbitMQ, with the dead-letter queue's
//! depth), a processor's `lag()` falls to 0 once it consumed everything, and the gauges carry
//! the same numbers.

use std::time::{Duration, Instant};

use waybill_core::telemetry::names;
use waybill_core::{
    handler_fn, ConsumerLag, HandlerError, IncomingMessage, Message, Processor, Publisher,
    RunningProcessor, Subscriber,
};

use super::series;
use crate::support;

/// Polls `lag()` every 200 ms until its total is `want` (up to `limit`); returns the last
/// reading.
async fn lag_reaches(running: &RunningProcessor, want: u64, limit: Duration) -> ConsumerLag {
    let started = Instant::now();
    loop {
        let lag = running.lag().await.expect("lag reading");
        if lag.total() == want || started.elapsed() > limit {
            return lag;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The sum of the `waybill.consumer.lag` gauges of `system` and `group`.
fn lag_gauges(system: &str, group: &str) -> (usize, f64) {
    let all = series();
    let lines: Vec<f64> = super::matching(
        &all,
        names::CONSUMER_LAG,
        &[
            ("messaging.system", system),
            ("messaging.consumer.group.name", group),
        ],
    )
    .map(|v| match v {
        super::Value::Gauge(g) => *g,
        other => panic!("lag is a gauge: {other:?}"),
    })
    .collect();
    (lines.len(), lines.iter().sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_lag_is_log_end_minus_committed_per_partition() {
    super::recording();
    let _alone = support::fault::exclusive().await; // not while a test restarts the broker
    let topic = support::kafka::create_topic_for_test("wb-lag").await;
    let group = format!("{topic}-g");
    let publisher = waybill_kafka::KafkaPublisher::connect(support::kafka::config())
        .await
        .unwrap();
    for i in 0..20 {
        let m = Message::new(format!("m{i}")).with_key(format!("k{}", i % 7));
        publisher.publish(&topic, m).await.unwrap();
    }
    let subscriber =
        waybill_kafka::KafkaSubscriber::connect(support::kafka::config(), &topic, &group)
            .await
            .unwrap();
    let probe = subscriber.lag_probe().expect("Kafka reports lag");
    let before = probe.lag().await.unwrap();
    assert_eq!(before.system, "kafka");
    assert_eq!(before.group, group);
    assert_eq!(before.total(), 20, "{before:?}");
    let main_partitions = before
        .partitions
        .iter()
        .filter(|p| p.destination == topic)
        .count();
    assert_eq!(
        main_partitions,
        support::kafka::PARTITIONS as usize,
        "one line per partition: {before:?}"
    );

    let running = Processor::for_subscriber(&subscriber)
        .at_least_once_effects()
        .lag_interval(Duration::from_millis(500))
        .build()
        .unwrap()
        .start(
            subscriber,
            handler_fn(|_m: IncomingMessage| async { Ok::<(), HandlerError>(()) }),
        );
    let after = lag_reaches(&running, 0, Duration::from_secs(30)).await;
    assert_eq!(after.total(), 0, "consumed and committed: {after:?}");
    assert_eq!(running.counters().handled, 20);
    let (lines, sum) = lag_gauges("kafka", &group);
    assert!(
        lines >= support::kafka::PARTITIONS as usize,
        "a gauge per partition"
    );
    assert!(sum.abs() < f64::EPSILON, "the gauges read 0 too: {sum}");
    running.shutdown().await.unwrap();
    publisher.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_lag_counts_ready_messages_and_the_dead_letter_queue() {
    super::recording();
    support::rabbitmq::require_broker().await;
    let topic = support::unique_topic("wb-lag-rabbit");
    let group = "wb-lag-g";
    let prefetch = 10u16;
    let config = waybill_rabbitmq::RabbitConfig::builder(support::rabbitmq::url())
        .prefetch(prefetch)
        .retry_tiers([Duration::from_millis(250)])
        .build()
        .unwrap();
    let subscriber = waybill_rabbitmq::RabbitSubscriber::connect(config.clone(), &topic, group)
        .await
        .unwrap();
    let publisher = waybill_rabbitmq::RabbitPublisher::connect(support::rabbitmq::config())
        .await
        .unwrap();
    let probe = subscriber.lag_probe().expect("RabbitMQ reports lag");
    // The subscriber already consumes with a prefetch; hold it off by not receiving: its
    // prefetched deliveries are unacknowledged, which AMQP does not count, so publish more
    // than the prefetch and read what stays ready.
    let published = u64::from(prefetch) + 20;
    for i in 0..published {
        let payload = if i == published - 1 { "poison" } else { "ok" };
        let m = Message::new(payload).with_key(format!("k{}", i % 5));
        publisher.publish(&topic, m).await.unwrap();
    }
    let started = Instant::now();
    let before = loop {
        let lag = probe.lag().await.unwrap();
        if lag.total() >= 20 || started.elapsed() > Duration::from_secs(10) {
            break lag;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(before.system, "rabbitmq");
    assert!(
        (20..=published).contains(&before.total()),
        "ready messages beyond the prefetch: {before:?}"
    );
    assert_eq!(before.dead_letter_depth, Some(0));

    // With the management API the prefetched (unacknowledged) ones count too, once the
    // broker's statistics caught up (every 5 s by default).
    let management = waybill_rabbitmq::ManagementApi::beside(&support::rabbitmq::url()).unwrap();
    let counting = waybill_rabbitmq::RabbitSubscriber::connect(config.clone(), &topic, group)
        .await
        .unwrap()
        .count_unacknowledged(management);
    let full_probe = counting.lag_probe().expect("RabbitMQ reports lag");
    let started = Instant::now();
    let with_unacked = loop {
        let lag = full_probe.lag().await.unwrap();
        if lag.total() == published || started.elapsed() > Duration::from_secs(20) {
            break lag;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        with_unacked.total(),
        published,
        "ready plus the prefetched, unacknowledged ones: {with_unacked:?}"
    );
    drop(counting);

    let running = Processor::for_subscriber(&subscriber)
        .at_least_once_effects()
        .build()
        .unwrap()
        .start(
            subscriber,
            handler_fn(|m: IncomingMessage| async move {
                match m.message().payload().as_ref() {
                    b"poison" => Err(HandlerError::permanent("poison")),
                    _ => Ok(()),
                }
            }),
        );
    let after = lag_reaches(&running, 0, Duration::from_secs(30)).await;
    assert_eq!(after.total(), 0, "{after:?}");
    let started = Instant::now();
    let after = loop {
        let lag = running.lag().await.unwrap();
        if lag.dead_letter_depth == Some(1) || started.elapsed() > Duration::from_secs(10) {
            break lag;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        after.dead_letter_depth,
        Some(1),
        "the poison message waits there"
    );
    let depth = super::gauge(
        &series(),
        names::DEAD_LETTER_DEPTH,
        &[
            ("messaging.system", "rabbitmq"),
            ("messaging.consumer.group.name", group),
            ("messaging.destination.name", topic.as_str()),
        ],
    );
    assert_eq!(depth, Some(1.0));
    let (lines, sum) = lag_gauges("rabbitmq", group);
    assert!(
        lines >= 1 && sum.abs() < f64::EPSILON,
        "{lines} lines, {sum}"
    );
    running.shutdown().await.unwrap();
    publisher.close().await.unwrap();
    waybill_rabbitmq::delete_group_topology(&config, &topic, group, true)
        .await
        .unwrap();
}
