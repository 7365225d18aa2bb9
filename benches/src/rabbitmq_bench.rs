//! RabbitMQ: waybill against raw lapin on the same server, in one run.
//!
//! Publishing (persistent messages to a quorum queue, publisher confirms, `mandatory`):
//! raw lapin pipelined (windows of 1,000 confirms), raw lapin awaiting each confirm, waybill
//! `publish_batch`, and waybill `publish` one at a time. Consuming: raw lapin consume + ack
//! after a trivial handler (prefetch 200; serially, and on a task per delivery — the like of
//! the processor's slots — against which the ratios are taken) against the waybill Processor
//! (200 slots):
//! `Unordered` without a store, and the default `PerKey` (1,000 keys) with the in-memory
//! idempotency store and with the PostgreSQL inbox. Each consume clock stops once every
//! message is acknowledged (raw: the last ack sent; waybill: `shutdown` returned, which waits
//! for in-flight settlements).

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

/// Raw lapin: each delivery "handled" (trivially) and acked, one after another, or each on a
/// task of its own (`concurrent`; at most 200 unacked, by the prefetch), as the processor's
/// slots do.
async fn raw_consume(url: &str, topic: &str, n: usize, concurrent: bool) -> Duration {
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
    let mut acks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let delivery = consumer.next().await.expect("open").expect("delivery");
        let handle_and_ack = async move {
            let handled: Result<(), ()> = async { Ok(()) }.await;
            handled.expect("trivial handler");
            delivery.ack(BasicAckOptions::default()).await.expect("ack");
        };
        if concurrent {
            acks.spawn(handle_and_ack);
        } else {
            handle_and_ack.await;
        }
    }
    while acks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let _ = conn.close(200, "OK".into()).await;
    elapsed
}

/// What a consume scenario's processor remembers handled messages in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Inbox {
    /// None: at-least-once effects.
    Without,
    /// The in-memory idempotency store, sized to the run.
    Memory,
    /// The PostgreSQL inbox (a fresh database).
    Postgres,
}

async fn waybill_consume(
    config: &RabbitConfig,
    topic: &str,
    n: usize,
    ordering: Ordering,
    inbox: Inbox,
) -> Duration {
    let subscriber = RabbitSubscriber::connect(config.clone(), topic, GROUP)
        .await
        .expect("subscribe");
    let mut builder = Processor::builder(GROUP)
        .ordering(ordering)
        .concurrency(200);
    let mut db = None;
    builder = match inbox {
        Inbox::Without => builder.at_least_once_effects(),
        Inbox::Memory => builder.idempotency(Arc::new(InMemoryIdempotencyStore::new(
            Duration::from_secs(24 * 3600),
            n.max(1),
        ))),
        Inbox::Postgres => {
            let created = crate::outbox_bench::BenchDb::create().await;
            let store = waybill_outbox::PgIdempotencyStore::new(
                created.pool.clone(),
                Duration::from_secs(24 * 3600),
            );
            db = Some(created);
            builder.idempotency(Arc::new(store))
        }
    };
    let started = Instant::now();
    let running = builder.build().expect("config").start(
        subscriber,
        handler_fn(|_m: IncomingMessage| async { Ok(()) }),
    );
    while running.counters().handled < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let totals = running.shutdown().await.expect("shutdown");
    let elapsed = started.elapsed();
    assert_eq!(totals.handled, n as u64, "every message handled once");
    if let Some(db) = db {
        db.drop_db().await;
    }
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

    let serial_topic = fresh_topic(&config, "sub").await;
    waybill_publish(&config, &serial_topic, n, true).await;
    let serial = rate(n, raw_consume(url, &serial_topic, n, false).await);
    let _ = delete_group_topology(&config, &serial_topic, GROUP, true).await;
    println!(
        "{:<52} {serial:>10.0} msgs/s",
        "raw lapin consume, handler + ack one after another"
    );
    let scenarios: [(&str, Option<(Ordering, Inbox)>); 4] = [
        (
            "raw lapin consume, handler + ack tasks (prefetch 200)",
            None,
        ),
        (
            "waybill Processor Unordered, no store",
            Some((Ordering::Unordered, Inbox::Without)),
        ),
        (
            "waybill Processor PerKey + in-memory store",
            Some((Ordering::PerKey, Inbox::Memory)),
        ),
        (
            "waybill Processor PerKey + PostgreSQL inbox",
            Some((Ordering::PerKey, Inbox::Postgres)),
        ),
    ];
    let mut raw = 0.0;
    for (label, scenario) in scenarios {
        let topic = fresh_topic(&config, "sub").await;
        waybill_publish(&config, &topic, n, true).await;
        let took = match scenario {
            None => raw_consume(url, &topic, n, true).await,
            Some((ordering, inbox)) => waybill_consume(&config, &topic, n, ordering, inbox).await,
        };
        let _ = delete_group_topology(&config, &topic, GROUP, true).await;
        let r = rate(n, took);
        if scenario.is_none() {
            raw = r;
            println!("{label:<52} {r:>10.0} msgs/s");
        } else {
            println!("{label:<52} {r:>10.0} msgs/s  {:.2}x raw tasks", r / raw);
        }
    }
}
