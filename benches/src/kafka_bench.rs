//! Kafka: waybill against raw rdkafka on the same broker, in one run.
//!
//! Publishing (`acks=all`, idempotent producer, 256-byte messages, keys over 100 values): raw
//! `FutureProducer` with every send handed over before awaiting the reports (pipelined), raw
//! send-and-wait per message (naive), waybill `publish_batch`, and waybill `publish` one at a
//! time. Consuming: a raw `StreamConsumer` storing each offset against the waybill Processor
//! (offset tracking, PerKey). The outbox relay from PostgreSQL to Kafka against publishing the
//! same rows directly.
//!
//! The bench leaves its topics behind: deleting topics on tansu 0.6 disturbs the metadata that
//! live clients see (see the Kafka backend's notes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::ClientConfig;
use waybill_core::{handler_fn, IncomingMessage, Message, Ordering, Processor, Publisher};
use waybill_kafka::{create_topic, KafkaConfig, KafkaPublisher, KafkaSubscriber};

const GROUP: &str = "bench";

fn payload() -> Vec<u8> {
    vec![b'x'; 256]
}

fn config(brokers: &str) -> KafkaConfig {
    KafkaConfig::builder(brokers)
        .session_timeout(Duration::from_secs(6))
        .build()
        .expect("valid settings")
}

async fn fresh_topic(config: &KafkaConfig, name: &str) -> String {
    let topic = format!(
        "wb-bench-{name}-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    );
    create_topic(config, &topic, 4, 1)
        .await
        .expect("Kafka reachable (scripts/brokers start kafka)");
    topic
}

fn raw_producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "2")
        .create()
        .expect("producer")
}

async fn raw_publish(brokers: &str, topic: &str, n: usize, pipelined: bool) -> Duration {
    let producer = raw_producer(brokers);
    // Connect and learn the topic's partitions before the clock starts, as waybill's connect does.
    let warm = producer.clone();
    let warm_topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        warm.client()
            .fetch_metadata(Some(&warm_topic), Duration::from_secs(10))
            .expect("metadata")
    })
    .await
    .expect("metadata task");
    let body = payload();
    let keys: Vec<String> = (0..n).map(|i| format!("k{}", i % 100)).collect();
    // The same two identity headers every waybill record carries, so that both sides write
    // the same records (tansu stores each header as a row of its own).
    let headers = || {
        OwnedHeaders::new()
            .insert(Header {
                key: "waybill-id",
                value: Some(waybill_core::MessageId::new().to_string().as_bytes()),
            })
            .insert(Header {
                key: "waybill-created-at",
                value: Some("1795289985000".as_bytes()),
            })
    };
    let started = Instant::now();
    if pipelined {
        let futures: Vec<_> = keys
            .iter()
            .map(|k| {
                producer
                    .send_result(
                        FutureRecord::to(topic)
                            .key(k)
                            .payload(&body)
                            .headers(headers()),
                    )
                    .map_err(|(e, _)| e)
                    .expect("queued")
            })
            .collect();
        for f in join_all(futures).await {
            f.expect("report").expect("confirmed");
        }
    } else {
        for k in &keys {
            producer
                .send(
                    FutureRecord::to(topic)
                        .key(k)
                        .payload(&body)
                        .headers(headers()),
                    Duration::from_secs(30),
                )
                .await
                .expect("confirmed");
        }
    }
    started.elapsed()
}

fn messages(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message::new(payload()).with_key(format!("k{}", i % 100)))
        .collect()
}

async fn waybill_publish(config: &KafkaConfig, topic: &str, n: usize, batch: bool) -> Duration {
    let publisher = KafkaPublisher::connect(config.clone())
        .await
        .expect("connect");
    let messages = messages(n);
    let started = Instant::now();
    if batch {
        for r in publisher.publish_batch(topic, messages).await {
            r.expect("confirmed");
        }
    } else {
        for m in messages {
            publisher.publish(topic, m).await.expect("confirmed");
        }
    }
    started.elapsed()
}

async fn raw_consume(brokers: &str, topic: &str, n: usize, group: &str) -> (usize, Duration) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "2000")
        .create()
        .expect("consumer");
    let started = Instant::now();
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut received = 0;
    // Bounded: a rebalance on the broker can stall a consumer for long.
    while received < n {
        let Ok(m) = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await else {
            eprintln!("raw consumer stalled after {received} of {n} records");
            break;
        };
        let m = m.expect("record");
        consumer.store_offset_from_message(&m).expect("store");
        received += 1;
    }
    (received, started.elapsed())
}

/// The records the processor handled (fewer than `n` after a stall) and the time it took.
async fn waybill_consume(config: &KafkaConfig, topic: &str, n: usize) -> (usize, Duration) {
    let started = Instant::now();
    let subscriber = KafkaSubscriber::connect(config.clone(), topic, GROUP)
        .await
        .expect("subscribe");
    let running = Processor::builder(GROUP)
        .at_least_once_effects()
        .ordering(Ordering::PerKey)
        .concurrency(64)
        .build()
        .expect("config")
        .start(
            subscriber,
            handler_fn(|_m: IncomingMessage| async { Ok(()) }),
        );
    let deadline = Instant::now() + Duration::from_secs(120);
    while running.counters().handled < n as u64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let handled = running.counters().handled;
    if handled < n as u64 {
        eprintln!("waybill consumer stalled after {handled} of {n} records");
    }
    let elapsed = started.elapsed();
    running.shutdown().await.expect("shutdown");
    (handled as usize, elapsed)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs every scenario against the cluster at `brokers` and prints rates and ratios.
pub async fn run(brokers: &str, n: usize) {
    let config = config(brokers);
    let naive_n = (n / 10).max(50);
    println!("Kafka protocol at {brokers}, acks=all, idempotent producer, 256-byte messages");

    let topic = fresh_topic(&config, "pub").await;
    let raw_pipelined = rate(n, raw_publish(brokers, &topic, n, true).await);
    let raw_naive = rate(naive_n, raw_publish(brokers, &topic, naive_n, false).await);
    let wb_batch = rate(n, waybill_publish(&config, &topic, n, true).await);
    let wb_single = rate(
        naive_n,
        waybill_publish(&config, &topic, naive_n, false).await,
    );
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw rdkafka FutureProducer, pipelined (same headers)", raw_pipelined
    );
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw rdkafka, await each delivery (same headers)", raw_naive
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw pipelined, {:.1}x naive",
        "waybill publish_batch",
        wb_batch,
        wb_batch / raw_pipelined,
        wb_batch / raw_naive
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x naive",
        "waybill publish, one at a time",
        wb_single,
        wb_single / raw_naive
    );

    // On the local tansu 0.6, new consumer groups stalled (the Python client too, with its
    // group coordinator not answering heartbeats) once the publish scenarios had written tens
    // of thousands of records, so the consumer scenarios read at most 2,000. Raw runs before
    // and after waybill, so that neither profits from a warmer broker.
    let consume_n = n.min(2_000);
    let topic = fresh_topic(&config, "sub").await;
    waybill_publish(&config, &topic, consume_n, true).await;
    let (got, took) = raw_consume(brokers, &topic, consume_n, "raw-bench-1").await;
    let raw_first = rate(got, took);
    // Each side's rate is what it received over its own time (a stall shows as a low rate,
    // on either side alike).
    let (handled, took) = waybill_consume(&config, &topic, consume_n).await;
    let processor = rate(handled, took);
    let (got, took) = raw_consume(brokers, &topic, consume_n, "raw-bench-2").await;
    let raw = raw_first.max(rate(got, took));
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw StreamConsumer + store_offset (join included)", raw
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw",
        "waybill Processor, offset tracking (join included)",
        processor,
        processor / raw
    );

    let topic = fresh_topic(&config, "relay").await;
    let publisher = KafkaPublisher::connect(config.clone())
        .await
        .expect("connect");
    crate::outbox_bench::relay_against_direct("Kafka", &topic, n, Arc::new(publisher)).await;
}
