//! RocketMQ: waybill's confirmed publish against the raw client's synchronous send on the same
//! servers, and the outbox relay from PostgreSQL to RocketMQ against direct publishing.
//!
//! Both sides send 256-byte keyed messages with the same properties (waybill's identity and
//! key properties) and the same key-hash queue choice: one at a time, waiting for each answer
//! (raw `send_with_selector`), and in batches of 500 (raw: the batch's messages grouped by
//! queue, one `send_batch_to_queue` per queue, the queues at once — what waybill's
//! `publish_batch` does). Raw runs before and after waybill, and the better raw figure
//! counts, so that neither side profits from a warmer broker.

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

/// The raw message waybill writes for message `i`: body, key, and the properties waybill adds
/// (its id, creation time and key).
fn raw_message(topic: &str, i: usize, body: &[u8]) -> RawMessage {
    RawMessage::builder()
        .topic(topic)
        .key(key(i))
        .body(body.to_vec())
        .raw_property("waybill-id", waybill_core::MessageId::new().to_string())
        .and_then(|b| b.raw_property("waybill-created-at", "1795289985000"))
        .and_then(|b| b.raw_property("waybill-key", key(i)))
        .expect("properties")
        .build()
        .expect("message")
}

async fn raw_send(producer: &DefaultMQProducer, topic: &str, n: usize) -> Duration {
    let body = payload();
    let started = Instant::now();
    for i in 0..n {
        let message = raw_message(topic, i, &body);
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

/// Batches of 500 as waybill's `publish_batch` sends them: grouped by the key's queue, one
/// batch request per queue, the queues' requests at once.
async fn raw_batches(producer: &mut DefaultMQProducer, topic: &str, n: usize) -> Duration {
    let queues = producer
        .fetch_publish_message_queues(topic)
        .await
        .expect("the topic's queues");
    let body = payload();
    let started = Instant::now();
    for first in (0..n).step_by(500) {
        let mut per_queue: std::collections::BTreeMap<usize, Vec<RawMessage>> =
            std::collections::BTreeMap::new();
        for i in first..(first + 500).min(n) {
            per_queue
                .entry(queue_for_key(&key(i), queues.len()))
                .or_default()
                .push(raw_message(topic, i, &body));
        }
        let sends = per_queue
            .into_iter()
            .map(|(q, batch)| producer.send_batch_to_queue(batch, queues[q].clone()));
        for result in futures_util::future::join_all(sends).await {
            let result = result.expect("raw batch send");
            assert_eq!(result.send_status.to_string(), "SEND_OK");
        }
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
    let mut raw = raw_producer(name_server).await;
    let publisher = RocketPublisher::connect(config.clone())
        .await
        .expect("connect");
    // Warm both paths (routes, connections).
    raw_send(&raw, &topic, 100).await;
    waybill_send(&publisher, &topic, 100).await;

    let raw_first = rate(n, raw_send(&raw, &topic, n).await);
    let single = rate(n, waybill_send(&publisher, &topic, n).await);
    let raw_second = rate(n, raw_send(&raw, &topic, n).await);
    let raw_best = raw_first.max(raw_second);
    let raw_batch_first = rate(n, raw_batches(&mut raw, &topic, n).await);
    let batches = rate(n, waybill_batches(&publisher, &topic, n).await);
    let raw_batch_second = rate(n, raw_batches(&mut raw, &topic, n).await);
    let raw_batch_best = raw_batch_first.max(raw_batch_second);
    println!(
        "{:<52} {:>10.0} msgs/s  (runs: {raw_first:.0}, {raw_second:.0})",
        "raw send_with_selector, one at a time", raw_best
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw one at a time",
        "waybill publish, one at a time",
        single,
        single / raw_best
    );
    println!(
        "{:<52} {:>10.0} msgs/s  (runs: {raw_batch_first:.0}, {raw_batch_second:.0})",
        "raw send_batch_to_queue per queue, 500 per round", raw_batch_best
    );
    println!(
        "{:<52} {:>10.0} msgs/s  {:.2}x raw batches",
        "waybill publish_batch (500 per call)",
        batches,
        batches / raw_batch_best
    );

    let topic = fresh_topic(&config, "relay").await;
    crate::outbox_bench::relay_against_direct("RocketMQ", &topic, n, Arc::new(publisher)).await;
}
