//! RabbitMQ: waybill against raw lapin on the same server, in one run.
//!
//! Publishing (persistent messages to a quorum queue, publisher confirms, `mandatory`):
//! raw lapin pipelined (windows of 1,000 confirms), raw lapin awaiting each confirm, waybill
//! `publish_batch`, and waybill `publish` one at a time. Consuming: raw lapin consume + ack
//! (prefetch 200) against the waybill Processor with and without the idempotency store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use futures_util::future::join_all;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use waybill_core::{
    handler_fn, InMemoryIdempotencyStore, IncomingMessage, Message, Ordering, Processor, Publisher,
    Subscriber,
};
use waybill_rabbitmq::{delete_group_topology, RabbitConfig, RabbitPublisher, RabbitSubscriber};

const WINDOW: usize = 1_000;
const GROUP: &str = "bench";

fn payload() -> Vec<u8> {
    vec![b'x'; 256]
}

/// A fresh topic whose group queue exists (so publishes are routable).
async fn fresh_topic(config: &RabbitConfig, name: &str) -> String {
    let topic = format!(
        "wb-bench-{name}-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    );
    let mut sub = RabbitSubscriber::connect(config.clone(), &topic, GROUP)
        .await
        .expect("RabbitMQ reachable (scripts/brokers start rabbitmq)");
    sub.close().await.expect("close");
    topic
}

async fn raw_publish(url: &str, topic: &str, n: usize, pipelined: bool) -> Duration {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let body = payload();
    let props = BasicProperties::default().with_delivery_mode(2);
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    let started = Instant::now();
    let window = if pipelined { WINDOW } else { 1 };
    let mut sent = 0;
    while sent < n {
        let mut confirms = Vec::with_capacity(window);
        for _ in 0..window.min(n - sent) {
            let confirm = channel
                .basic_publish(topic.into(), "".into(), options, &body, props.clone())
                .await
                .expect("publish");
            confirms.push(confirm);
        }
        sent += confirms.len();
        for confirmation in join_all(confirms).await {
            assert!(confirmation.expect("confirm").is_ack());
        }
    }
    let elapsed = started.elapsed();
    let _ = conn.close(200, "OK".into()).await;
    elapsed
}

async fn waybill_publish(config: &RabbitConfig, topic: &str, n: usize, batch: bool) -> Duration {
    let publisher = RabbitPublisher::connect(config.clone())
        .await
        .expect("connect");
    let messages: Vec<Message> = (0..n)
        .map(|i| Message::new(payload()).with_key(format!("k{}", i % 1000)))
        .collect();
    let started = Instant::now();
    if batch {
        for result in publisher.publish_batch(topic, messages).await {
            result.expect("confirmed");
        }
    } else {
        for m in messages {
            publisher.publish(topic, m).await.expect("confirmed");
        }
    }
    let elapsed = started.elapsed();
    publisher.close().await.expect("close");
    elapsed
}

async fn raw_consume(url: &str, topic: &str, n: usize) -> Duration {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    channel
        .basic_qos(200, BasicQosOptions::default())
        .await
        .expect("qos");
    let queue = format!("{topic}.{GROUP}");
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let started = Instant::now();
    for _ in 0..n {
        let delivery = consumer.next().await.expect("open").expect("delivery");
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let elapsed = started.elapsed();
    let _ = conn.close(200, "OK".into()).await;
    elapsed
}

async fn waybill_consume(config: &RabbitConfig, topic: &str, n: usize, store: bool) -> Duration {
    let subscriber = RabbitSubscriber::connect(config.clone(), topic, GROUP)
        .await
        .expect("subscribe");
    let mut builder = Processor::builder(GROUP)
        .ordering(Ordering::Unordered)
        .concurrency(200);
    if store {
        builder = builder.idempotency(Arc::new(InMemoryIdempotencyStore::default()));
    } else {
        builder = builder.at_least_once_effects();
    }
    let started = Instant::now();
    let running = builder.build().expect("config").start(
        subscriber,
        handler_fn(|_m: IncomingMessage| async { Ok(()) }),
    );
    while running.counters().handled < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    running.shutdown().await.expect("shutdown");
    elapsed
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs every scenario against the broker at `url` and prints rates and ratios.
pub async fn run(url: &str, n: usize) {
    let config = RabbitConfig::builder(url).build().expect("valid URL");
    let naive_n = (n / 10).max(100);
    println!(
        "RabbitMQ at {}, quorum queue, persistent 256-byte messages, confirms",
        config.display_url()
    );

    let topic = fresh_topic(&config, "pub").await;
    let raw_pipelined = rate(n, raw_publish(url, &topic, n, true).await);
    let raw_naive = rate(naive_n, raw_publish(url, &topic, naive_n, false).await);
    let wb_batch = rate(n, waybill_publish(&config, &topic, n, true).await);
    let wb_single = rate(
        naive_n,
        waybill_publish(&config, &topic, naive_n, false).await,
    );
    let _ = delete_group_topology(&config, &topic, GROUP, true).await;
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw lapin, pipelined confirms (window 1000)", raw_pipelined
    );
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw lapin, await each confirm (naive)", raw_naive
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

    // The outbox relay from PostgreSQL to RabbitMQ against publishing the same rows directly.
    let topic = fresh_topic(&config, "relay").await;
    let publisher = RabbitPublisher::connect(config.clone())
        .await
        .expect("connect");
    crate::outbox_bench::relay_against_direct("RabbitMQ", &topic, n, Arc::new(publisher)).await;
    let _ = delete_group_topology(&config, &topic, GROUP, true).await;

    let mut consume = Vec::new();
    for scenario in ["raw", "processor", "processor+store"] {
        let topic = fresh_topic(&config, "sub").await;
        waybill_publish(&config, &topic, n, true).await;
        let took = match scenario {
            "raw" => raw_consume(url, &topic, n).await,
            "processor" => waybill_consume(&config, &topic, n, false).await,
            _ => waybill_consume(&config, &topic, n, true).await,
        };
        consume.push(rate(n, took));
        let _ = delete_group_topology(&config, &topic, GROUP, true).await;
    }
    println!(
        "{:<52} {:>10.0} msgs/s",
        "raw lapin consume + ack (prefetch 200)", consume[0]
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw",
        "waybill Processor, manual ack",
        consume[1],
        consume[1] / consume[0]
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw",
        "waybill Processor + idempotency store",
        consume[2],
        consume[2] / consume[0]
    );
}
