//! A partitioned RabbitMQ group: three members against one, on the same topology and server,
//! in one run.
//!
//! The group has 6 partitions. A backlog of messages over 1,000 keys is published first; then
//! the members join (their Processors started right after each joins) and the clock runs
//! until every message is handled and acknowledged (`shutdown` returned). Each Processor runs
//! `PerKey` with 4 handler slots and no idempotency store, and its handler takes 1 ms (a
//! timer): a member's throughput is bounded by its handler, as a real consumer's is by its
//! database or downstream service, so adding members is what should raise it. The figure
//! includes the time members take to agree on their shares (a rebalance every 200 ms).

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waybill_core::{
    handler_fn, IncomingMessage, Message, Ordering, Processor, Publisher, Subscriber,
};
use waybill_rabbitmq::{
    delete_partitioned_group_topology, RabbitConfig, RabbitPartitionedSubscriber, RabbitPublisher,
};

const GROUP: &str = "bench-partitioned";
const PARTITIONS: u16 = 6;
const KEYS: usize = 1_000;
const SLOTS: usize = 4;
const HANDLER_TIME: Duration = Duration::from_millis(1);

fn config(url: &str) -> RabbitConfig {
    RabbitConfig::builder(url)
        .rebalance_interval(Duration::from_millis(200))
        .build()
        .expect("valid config")
}

/// A fresh topic with the partitioned group declared, holding `n` messages.
async fn filled_topic(url: &str, n: usize) -> String {
    let topic = format!(
        "wb-bench-partitioned-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    );
    let mut declaring =
        RabbitPartitionedSubscriber::connect(config(url), &topic, GROUP, PARTITIONS)
            .await
            .expect("RabbitMQ reachable (scripts/brokers start rabbitmq)");
    declaring.close().await.expect("close");
    let publisher = RabbitPublisher::connect(config(url))
        .await
        .expect("connect");
    let body = vec![b'x'; 256];
    let messages: Vec<Message> = (0..n)
        .map(|i| Message::new(body.clone()).with_key(format!("key-{}", i % KEYS)))
        .collect();
    for chunk in messages.chunks(1_000) {
        for receipt in publisher.publish_batch(&topic, chunk.to_vec()).await {
            receipt.expect("backlog published");
        }
    }
    publisher.close().await.expect("close");
    topic
}

/// Time for `members` members to handle the backlog of `n` messages.
async fn drain(url: &str, members: usize, n: usize) -> Duration {
    let topic = filled_topic(url, n).await;
    let handled = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..members {
        let member = RabbitPartitionedSubscriber::connect(config(url), &topic, GROUP, PARTITIONS)
            .await
            .expect("join");
        let count = Arc::clone(&handled);
        running.push(
            Processor::builder(GROUP)
                .ordering(Ordering::PerKey)
                .concurrency(SLOTS)
                .at_least_once_effects()
                .build()
                .expect("config")
                .start(
                    member,
                    handler_fn(move |_m: IncomingMessage| {
                        let count = Arc::clone(&count);
                        async move {
                            tokio::time::sleep(HANDLER_TIME).await;
                            count.fetch_add(1, SeqCst);
                            Ok(())
                        }
                    }),
                ),
        );
    }
    while handled.load(SeqCst) < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut total = 0;
    for processor in running {
        total += processor.shutdown().await.expect("shutdown").handled;
    }
    let elapsed = started.elapsed();
    assert!(total >= n as u64, "every message handled ({total} of {n})");
    delete_partitioned_group_topology(&config(url), &topic, GROUP, PARTITIONS, true)
        .await
        .expect("cleanup");
    elapsed
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs both scenarios against the broker at `url` and prints rates and the ratio.
pub async fn run(url: &str, n: usize) {
    println!(
        "RabbitMQ partitioned group ({PARTITIONS} partitions, {KEYS} keys, {n} messages; each \
         member: Processor PerKey, {SLOTS} slots, handler {HANDLER_TIME:?})"
    );
    let one = rate(n, drain(url, 1, n).await);
    println!("  1 member : {one:>9.0} msgs/s");
    let three = rate(n, drain(url, 3, n).await);
    println!("  3 members: {three:>9.0} msgs/s");
    println!("  3 members / 1 member: {:.2}x (goal >= 2x)", three / one);
}
