//! A Kafka consumer process killed before it commits its offsets: its messages are delivered
//! again to the next consumer of the group, and the SQL inbox drops every one already applied.
//! Runs against the Kafka-protocol broker at WAYBILL_KAFKA_BROKERS (default 127.0.0.1:9092).

use std::process::Command;
use waybill_core::{Message, Publisher};
use waybill_kafka::{create_topic, KafkaConfig, KafkaPublisher};

const ORDERS: u64 = 300;

fn brokers() -> String {
    std::env::var("WAYBILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn consumer(topic: &str, database: &std::path::Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_billing-consumer"))
        .args(["--kafka-brokers", &brokers(), "--topic", topic, "--expect"])
        .arg(ORDERS.to_string())
        .arg("--database")
        .arg(database)
        .args(extra)
        .output()
        .expect("run billing-consumer")
}

fn figure(out: &str, name: &str) -> u64 {
    out.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {out:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_before_its_commit_is_redelivered_and_deduplicated() {
    let config = KafkaConfig::builder(brokers()).build().unwrap();
    let publisher = KafkaPublisher::connect(config.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
            "No Kafka-protocol broker at {} ({e}): start one with `scripts/brokers start kafka`",
            brokers()
        )
        });
    let topic = format!(
        "wb-crash-{}",
        &waybill_core::MessageId::new().to_string()[24..]
    );
    create_topic(&config, &topic, 4, 1).await.unwrap();
    let orders: Vec<Message> = (0..ORDERS)
        .map(|i| Message::new(format!("amount={}", 10 + i % 50)).with_key(format!("order-{i}")))
        .collect();
    for result in publisher.publish_batch(&topic, orders).await {
        result.expect("confirmed");
    }
    let database = std::env::temp_dir().join(format!("{topic}.db"));

    // First consumer: bills half, then dies before any offset commit (interval of 10 min).
    let crashed = consumer(
        &topic,
        &database,
        &["--crash-after", "150", "--commit-interval-ms", "600000"],
    );
    assert!(!crashed.status.success(), "the first consumer must crash");
    assert!(
        String::from_utf8_lossy(&crashed.stderr).contains("crashing after"),
        "{}",
        String::from_utf8_lossy(&crashed.stderr)
    );

    // Second consumer of the same group: everything comes again; the inbox drops the billed.
    let finished = consumer(&topic, &database, &[]);
    let out = String::from_utf8_lossy(&finished.stdout).into_owned();
    assert!(
        finished.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    println!("second consumer: {out}");
    assert_eq!(figure(&out, "billed"), ORDERS, "every order billed");
    assert_eq!(figure(&out, "applied_twice"), 0, "no order billed twice");
    assert!(
        figure(&out, "duplicates_skipped") >= 150,
        "the crashed consumer's uncommitted messages came again and were dropped: {out}"
    );
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", database.display()));
    }
}
