//! Kafka: waybill against raw rdkafka on the same broker, in one run.
//!
//! Publishing (`acks=all`, idempotent producer, 256-byte messages, keys over 100 values): raw
//! `FutureProducer` with every send handed over before awaiting the reports (pipelined), raw
//! send-and-wait per message (naive), waybill `publish_batch`, and waybill `publish` one at a
//! time. Consuming: a raw `StreamConsumer` storing each offset against the waybill Processor
//! (offset tracking, PerKey). The outbox relay from PostgreSQL to Kafka against publishing the
//! same rows directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use waybill_core::{handler_fn, IncomingMessage, Message, Ordering, Processor, Publisher};
use waybill_kafka::{
    create_topic, delete_topics, GroupTopics, KafkaConfig, KafkaPublisher, KafkaSubscriber,
};

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
    let body = payload();
    let keys: Vec<String> = (0..n).map(|i| format!("k{}", i % 100)).collect();
    let started = Instant::now();
    if pipelined {
        let futures: Vec<_> = keys
            .iter()
            .map(|k| {
                producer
                    .send_result(FutureRecord::to(topic).key(k).payload(&body))
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
                    FutureRecord::to(topic).key(k).payload(&body),
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

async fn raw_consume(brokers: &str, topic: &str, n: usize) -> Duration {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "raw-bench")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut started = None;
    for _ in 0..n {
        let m = consumer.recv().await.expect("record");
        started.get_or_insert_with(Instant::now);
        consumer.store_offset_from_message(&m).expect("store");
    }
    started.map_or(Duration::ZERO, |s| s.elapsed())
}

async fn waybill_consume(config: &KafkaConfig, topic: &str, n: usize) -> Duration {
    let subscriber = KafkaSubscriber::connect(config.clone(), topic, GROUP)
        .await
        .expect("subscribe");
    let first = Arc::new(std::sync::OnceLock::new());
    let seen = Arc::clone(&first);
    let running = Processor::builder(GROUP)
        .ordering(Ordering::PerKey)
        .concurrency(64)
        .build()
        .expect("config")
        .start(
            subscriber,
            handler_fn(move |_m: IncomingMessage| {
                seen.get_or_init(Instant::now);
                async { Ok(()) }
            }),
        );
    while running.counters().handled < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = first.get().map_or(Duration::ZERO, |s| s.elapsed());
    running.shutdown().await.expect("shutdown");
    elapsed
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn drop_topic(config: &KafkaConfig, topic: &str) {
    let names = GroupTopics::new(topic, GROUP).expect("names");
    let _ = delete_topics(config, &[topic, &names.retry, &names.dead_letter]).await;
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
    drop_topic(&config, &topic).await;
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw rdkafka FutureProducer, pipelined", raw_pipelined
    );
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw rdkafka, await each delivery (naive)", raw_naive
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

    let topic = fresh_topic(&config, "sub").await;
    waybill_publish(&config, &topic, n, true).await;
    let raw = rate(n, raw_consume(brokers, &topic, n).await);
    let processor = rate(n, waybill_consume(&config, &topic, n).await);
    drop_topic(&config, &topic).await;
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw StreamConsumer + store_offset", raw
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw",
        "waybill Processor (offset tracking, PerKey)",
        processor,
        processor / raw
    );

    let db = crate::outbox_bench::BenchDb::create().await;
    let topic = fresh_topic(&config, "relay").await;
    crate::outbox_bench::fill(&db, &topic, n).await;
    let publisher = KafkaPublisher::connect(config.clone())
        .await
        .expect("connect");
    let relayed = rate(
        n,
        crate::outbox_bench::relay(&db, Arc::new(publisher), n).await,
    );
    let direct = rate(n, waybill_publish(&config, &topic, n, true).await);
    db.drop_db().await;
    drop_topic(&config, &topic).await;
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x direct publish_batch ({direct:.0} msgs/s)",
        "outbox relay PostgreSQL -> Kafka (per-key order)",
        relayed,
        relayed / direct
    );
}
