//! RocketMQ: waybill's confirmed publish against the raw client's synchronous send on the same
//! servers, and the outbox relay from PostgreSQL to RocketMQ against direct publishing.
//!
//! Both sides send 256-byte keyed messages one at a time and wait for each answer (a
//! synchronous send); raw uses `send_with_selector` with the same key-hash queue choice.
//! Raw runs before and after waybill, and the better raw figure counts, so that neither side
//! profits from a warmer broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rocketmq_client_rust::{
    ClientRuntime, ClientRuntimeConfig, DefaultMQProducer, TelemetryHandle,
};
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message as RawMessage;
use rocketmq_runtime::RuntimeOwner;
use waybill_core::{Message, Publisher};
use waybill_rocketmq::{queue_for_key, RocketAdmin, RocketConfig, RocketPublisher};

fn payload() -> Vec<u8> {
    vec![b'x'; 256]
}

fn key(i: usize) -> String {
    format!("key-{}", i % 1_000)
}

async fn fresh_topic(config: &RocketConfig, name: &str) -> String {
    let topic = format!(
        "wb-bench-{name}-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    );
    let admin = RocketAdmin::connect(config).await.expect("admin");
    admin.create_topic(&topic).await.expect("create topic");
    admin.close().await;
    topic
}

/// The raw client's producer, on a client runtime of its own (kept for the process's life).
async fn raw_producer(name_server: &str) -> DefaultMQProducer {
    let owner = RuntimeOwner::new().expect("runtime owner");
    let runtime = ClientRuntime::try_new(
        owner.root_context().component("raw-bench"),
        ClientRuntimeConfig::default(),
        TelemetryHandle::noop(),
    )
    .expect("client runtime");
    std::mem::forget(owner);
    let mut producer = DefaultMQProducer::builder(runtime)
        .producer_group("raw_bench_producer")
        .name_server_addr(name_server)
        .build();
    producer.start().await.expect("start raw producer");
    producer
}

async fn raw_send(producer: &DefaultMQProducer, topic: &str, n: usize) -> Duration {
    let body = payload();
    let started = Instant::now();
    for i in 0..n {
        let message = RawMessage::builder()
            .topic(topic)
            .key(key(i))
            .body(body.clone())
            .build()
            .expect("message");
        let k = key(i);
        let result = producer
            .send_with_selector(
                message,
                |queues: &[MessageQueue], _: &RawMessage, k: &String| {
                    queues.get(queue_for_key(k, queues.len())).cloned()
                },
                k,
            )
            .await
            .expect("raw send")
            .expect("a send result");
        assert_eq!(result.send_status.to_string(), "SEND_OK");
    }
    started.elapsed()
}

async fn waybill_send(publisher: &RocketPublisher, topic: &str, n: usize) -> Duration {
    let started = Instant::now();
    for i in 0..n {
        publisher
            .publish(topic, Message::new(payload()).with_key(key(i)))
            .await
            .expect("confirmed");
    }
    started.elapsed()
}

async fn waybill_batches(publisher: &RocketPublisher, topic: &str, n: usize) -> Duration {
    let started = Instant::now();
    let all: Vec<Message> = (0..n)
        .map(|i| Message::new(payload()).with_key(key(i)))
        .collect();
    for chunk in all.chunks(500) {
        for r in publisher.publish_batch(topic, chunk.to_vec()).await {
            r.expect("confirmed");
        }
    }
    started.elapsed()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs every scenario against the name servers at `name_server` and prints rates and ratios.
pub async fn run(name_server: &str, n: usize) {
    let config = RocketConfig::builder(name_server).build().expect("config");
    println!("RocketMQ at {name_server}, synchronous sends, 256-byte messages over 1,000 keys");
    let topic = fresh_topic(&config, "pub").await;
    let raw = raw_producer(name_server).await;
    let publisher = RocketPublisher::connect(config.clone())
        .await
        .expect("connect");
    // Warm both paths (routes, connections).
    raw_send(&raw, &topic, 100).await;
    waybill_send(&publisher, &topic, 100).await;

    let raw_first = rate(n, raw_send(&raw, &topic, n).await);
    let single = rate(n, waybill_send(&publisher, &topic, n).await);
    let raw_second = rate(n, raw_send(&raw, &topic, n).await);
    let batches = rate(n, waybill_batches(&publisher, &topic, n).await);
    let raw_best = raw_first.max(raw_second);
    println!(
        "{:<52} {:>10.0} msgs/s  (runs: {raw_first:.0}, {raw_second:.0})",
        "raw DefaultMQProducer::send_with_selector, one at a time", raw_best
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw",
        "waybill publish, one at a time",
        single,
        single / raw_best
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw",
        "waybill publish_batch (500 per call)",
        batches,
        batches / raw_best
    );

    let topic = fresh_topic(&config, "relay").await;
    crate::outbox_bench::relay_against_direct("RocketMQ", &topic, n, Arc::new(publisher)).await;
}
