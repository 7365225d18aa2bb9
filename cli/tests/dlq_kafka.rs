//! `waybill dlq` on the Kafka-protocol test broker: a consumer group dead-letters 60 messages
//! over three keys (a handler bug) and one more of a fourth key, the bug is fixed, and the
//! operator replays the one alone (behind dead letters that stay: it is hidden by a marker),
//! then the rest — once through a `waybill dlq replay` killed with SIGKILL half way, then to
//! the end. Every message is applied exactly once, in its key's order; a dead letter another
//! client put there (no record) is left and purged only with `--all`; afterwards the group's
//! committed offsets have passed every dead letter.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use waybill_core::{
    Handler, InMemoryIdempotencyStore, Message, MessageId, Ordering, Processor, Publisher,
    RunningProcessor,
};
use waybill_kafka::{
    create_topic, java_partition, KafkaConfig, KafkaDeadLetters, KafkaPublisher, KafkaSubscriber,
};

use super::dlq_rabbitmq::{
    broken_handler, output, publish_keyed, recording_handler, text, wait_until,
};
use super::dlq_replay_run::ReplayRun;
use super::WAYBILL;

const KEYS: usize = 3;
const PER_KEY: usize = 20;
const PARTITIONS: i32 = 3;
/// The consumer group of `topic`'s run: one per run, because other suites use `billing` too
/// (one kills its consumer on purpose), and tansu's group coordinator has been seen to leave a
/// group waiting for a member that died, until another member joined.
fn group(topic: &str) -> String {
    format!("{topic}-billing")
}

fn brokers() -> String {
    std::env::var("WAYBILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn config() -> KafkaConfig {
    KafkaConfig::builder(brokers())
        .build()
        .expect("valid test config")
}

/// `waybill dlq ARGS --broker-url kafka://… --topic TOPIC --group billing`.
fn dlq(topic: &str, args: &[&str]) -> Command {
    let mut command = Command::new(WAYBILL);
    command.arg("dlq").args(args).args([
        "--broker-url",
        &format!("kafka://{}", brokers()),
        "--topic",
        topic,
        "--group",
        &group(topic),
    ]);
    command
}

/// The dead letters `waybill dlq list --json` prints with `extra` flags.
fn listed(topic: &str, extra: &[&str]) -> Vec<Value> {
    let out = output(dlq(topic, &["list", "--json", "--limit", "1000"]).args(extra));
    assert!(out.status.success(), "{}", text(&out));
    match serde_json::from_slice(&out.stdout).expect("JSON") {
        Value::Array(rows) => rows,
        other => panic!("not an array: {other}"),
    }
}

/// A per-key processor of the group on `topic`, over the shared `store`, running `handler`.
async fn start_group(
    topic: &str,
    store: &Arc<InMemoryIdempotencyStore>,
    handler: impl Handler,
) -> RunningProcessor {
    let subscriber = KafkaSubscriber::connect(config(), topic, &group(topic))
        .await
        .unwrap();
    Processor::builder(group(topic))
        .ordering(Ordering::PerKey)
        .idempotency(store.clone())
        .build()
        .unwrap()
        .start(subscriber, handler)
}

/// A key that lands on the same partition as `other`.
fn key_beside(other: &str) -> String {
    let partition = |key: &str| java_partition(key.as_bytes(), PARTITIONS as u32);
    (0..)
        .map(|i| format!("solo-{i}"))
        .find(|key| partition(key) == partition(other))
        .expect("some key shares the partition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_dead_letters_are_replayed_once_each_in_key_order_even_when_a_replay_is_killed() {
    let topic = format!(
        "wb-dlq-{}",
        &MessageId::new().to_string().replace('-', "")[20..]
    );
    let config = config();
    create_topic(&config, &topic, PARTITIONS, 1)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the Kafka-protocol broker at {} refused ({e}): scripts/brokers start kafka",
                brokers()
            )
        });
    let store = Arc::new(InMemoryIdempotencyStore::default());

    // Version 1 of the handler has a bug: every message is dead-lettered.
    let broken = start_group(&topic, &store, broken_handler()).await;
    let publisher = KafkaPublisher::connect(config.clone()).await.unwrap();
    publish_keyed(&publisher, &topic, KEYS, PER_KEY).await;
    let solo_key = key_beside("k0");
    let solo = Message::new("solo")
        .with_key(solo_key.clone())
        .with_header("seq", "0");
    let solo_id = solo.id().to_string();
    publisher.publish(&topic, solo).await.unwrap();
    let total = (KEYS * PER_KEY + 1) as u64;
    wait_until(
        "every message dead-lettered",
        Duration::from_secs(60),
        || broken.counters().dead_lettered == total,
    )
    .await;
    broken.shutdown().await.unwrap();
    let dead = KafkaDeadLetters::new(config.clone(), &topic, &group(&topic)).unwrap();
    publisher
        .publish(
            dead.dead_letter_topic(),
            Message::new("from another client"),
        )
        .await
        .unwrap();

    // Listing removes nothing; a dry run and a filter matching nothing change nothing.
    assert_eq!(listed(&topic, &[]).len(), total as usize, "records only");
    assert_eq!(listed(&topic, &["--all"]).len(), total as usize + 1);
    let dry = output(&mut dlq(&topic, &["replay", "--dry-run"]));
    assert!(
        text(&dry).contains(&format!("would replay {total} of {total}")),
        "{}",
        text(&dry)
    );
    let nothing = output(&mut dlq(&topic, &["replay", "--error-class", "panic"]));
    assert_eq!(nothing.status.code(), Some(3), "{}", text(&nothing));
    let unfiltered = output(&mut dlq(&topic, &["purge"]));
    assert_eq!(unfiltered.status.code(), Some(2), "{}", text(&unfiltered));
    assert_eq!(listed(&topic, &["--all"]).len(), total as usize + 1);

    // Version 2 works: it records what it applied, in order per key.
    let (applied, recording) = recording_handler();
    let fixed = start_group(&topic, &store, recording).await;

    // The solo letter alone: it sits behind k0's letters in its partition, which stay, so
    // a marker hides it from then on.
    let one = output(&mut dlq(&topic, &["replay", "--id", &solo_id]));
    assert!(one.status.success(), "{}", text(&one));
    assert!(text(&one).contains("replayed 1 of 1"), "{}", text(&one));
    wait_until("the solo letter applied", Duration::from_secs(30), || {
        applied.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(applied.lock().unwrap()[0].0, solo_key);
    let left = listed(&topic, &[]);
    assert_eq!(left.len(), KEYS * PER_KEY, "the solo letter is gone");
    assert!(left.iter().all(|row| row["message_id"] != solo_id.as_str()));

    // A replay killed half way (10 messages a second, killed once two waves arrived), then
    // run again to the end; the foreign dead letter stays until it is purged with --all.
    let run = ReplayRun {
        dlq: &|args| dlq(&topic, args),
        listed: &|extra| listed(&topic, extra),
        rate: "10",
        kill_after: 20,
        applied_before: 1,
        keyed: KEYS * PER_KEY,
        per_key: PER_KEY,
        solo_key: Some(&solo_key),
    };
    run.killed_then_finished(&applied, fixed).await;
    run.foreign_letter_purged_with_all("from another client");
    // The floor has passed everything: a scan reads nothing.
    let after = output(&mut dlq(
        &topic,
        &["replay", "--all", "--dry-run", "--json"],
    ));
    let report: Value = serde_json::from_slice(&after.stdout).expect("JSON");
    assert_eq!(
        report["scanned"], 0,
        "the floor passed every dead letter: {report}"
    );
    publisher.close().await.unwrap();
}
