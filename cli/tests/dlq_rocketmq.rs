//! `waybill dlq` on the RocketMQ test servers: a consumer group dead-letters 45 messages over
//! three keys (a handler bug) and one more of a fourth key, the bug is fixed, and the operator
//! replays the one alone (behind dead letters that stay in its queue: a marker hides it), then
//! the rest — once through a `waybill dlq replay` killed with SIGKILL half way, then to the
//! end. Every message is applied exactly once, in its key's order; a dead letter another
//! client put there (no record) is left, shown, and purged only with `--all`; afterwards the
//! floor (the committed offsets of `<group>_dlq_reader`) has passed every dead letter. A
//! missing dead-letter topic, an unreachable name server and a refused replay fail with
//! exit 1.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use waybill_core::{
    Handler, InMemoryIdempotencyStore, LagProbe as _, Message, MessageId, Ordering, Processor,
    Publisher, RunningProcessor, Subscriber as _,
};
use waybill_rocketmq::{
    queue_for_key, RocketAdmin, RocketConfig, RocketDeadLetters, RocketPublisher, RocketSubscriber,
};

use super::dlq_rabbitmq::{
    broken_handler, output, publish_keyed, recording_handler, text, wait_until,
};
use super::dlq_replay_run::ReplayRun;
use super::WAYBILL;

const KEYS: usize = 3;
const PER_KEY: usize = 15;
const QUEUES: u32 = 4;

fn name_server() -> String {
    std::env::var("WAYBILL_ROCKETMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".to_owned())
}

/// The same settings as the other RocketMQ tests of this binary: the client pools one
/// instance per process and refuses a second configuration under the same client id.
fn config() -> RocketConfig {
    RocketConfig::builder(name_server())
        .queues_per_topic(QUEUES)
        .build()
        .expect("valid test config")
}

/// The consumer group of `topic`'s run (one per run: groups outlive topics on the broker).
fn group(topic: &str) -> String {
    format!("{topic}_billing")
}

/// `waybill dlq ARGS --broker-url rocketmq://… --topic TOPIC --group GROUP`.
fn dlq(topic: &str, args: &[&str]) -> Command {
    let mut command = Command::new(WAYBILL);
    command.arg("dlq").args(args).args([
        "--broker-url",
        &format!("rocketmq://{}", name_server()),
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
    let subscriber = RocketSubscriber::connect(config(), topic, &group(topic))
        .await
        .unwrap();
    Processor::builder(group(topic))
        .ordering(Ordering::PerKey)
        .idempotency(store.clone())
        .build()
        .unwrap()
        .start(subscriber, handler)
}

/// A key that lands on the same queue as `other`.
fn key_beside(other: &str) -> String {
    let queue = |key: &str| queue_for_key(key, QUEUES as usize);
    (0..)
        .map(|i| format!("solo-{i}"))
        .find(|key| queue(key) == queue(other))
        .expect("some key shares the queue")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_dead_letters_are_replayed_once_each_in_key_order_even_when_a_replay_is_killed() {
    let topic = format!(
        "wb_dlq_{}",
        &MessageId::new().to_string().replace('-', "")[20..]
    );
    let config = config();
    let unreachable = |e: waybill_core::BrokerError| -> ! {
        panic!(
            "no RocketMQ servers at {} ({e}): scripts/brokers start rocketmq",
            name_server()
        )
    };
    let admin = RocketAdmin::connect(&config)
        .await
        .unwrap_or_else(|e| unreachable(e));
    if let Err(e) = admin.create_topic(&topic).await {
        unreachable(e);
    }
    admin.close().await;

    // A name server nobody answers on fails the command at once (exit 1), naming it.
    let started = std::time::Instant::now();
    let down = output(
        Command::new(WAYBILL)
            .args(["dlq", "list", "--broker-url", "rocketmq://127.0.0.1:1"])
            .args(["--topic", &topic, "--group", &group(&topic)]),
    );
    assert_eq!(down.status.code(), Some(1), "{}", text(&down));
    assert!(text(&down).contains("127.0.0.1:1"), "{}", text(&down));
    assert!(started.elapsed() < Duration::from_secs(15), "no hang");

    // Before any subscriber of the group ran, its dead-letter topic does not exist.
    let missing = output(&mut dlq(&topic, &["list"]));
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(
        text(&missing).contains("does not exist") && text(&missing).contains(&group(&topic)),
        "{}",
        text(&missing)
    );

    let store = Arc::new(InMemoryIdempotencyStore::default());
    // Version 1 of the handler has a bug: every message is dead-lettered.
    let broken = start_group(&topic, &store, broken_handler()).await;
    let publisher = RocketPublisher::connect(config.clone()).await.unwrap();
    publish_keyed(&publisher, &topic, KEYS, PER_KEY).await;
    let solo_key = key_beside("k0");
    let solo = Message::new("solo")
        .with_key(solo_key.clone())
        .with_header("seq", "0");
    let solo_id = solo.id().to_string();
    let total = (KEYS * PER_KEY + 1) as u64;
    wait_until(
        "the keyed messages dead-lettered",
        Duration::from_secs(60),
        || broken.counters().dead_lettered == total - 1,
    )
    .await;
    // The solo letter goes behind k0's letters in their queue.
    publisher.publish(&topic, solo).await.unwrap();
    wait_until(
        "every message dead-lettered",
        Duration::from_secs(30),
        || broken.counters().dead_lettered == total,
    )
    .await;
    broken.shutdown().await.unwrap();
    let dead = RocketDeadLetters::new(config.clone(), &topic, &group(&topic)).unwrap();
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
    let refused = output(&mut dlq(&topic, &["replay", "--to", "orders.v2"]));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("0 dead letters were replayed"),
        "{}",
        text(&refused)
    );
    assert_eq!(listed(&topic, &["--all"]).len(), total as usize + 1);

    // Version 2 works: it records what it applied, in order per key.
    let (applied, recording) = recording_handler();
    let fixed = start_group(&topic, &store, recording).await;

    // The solo letter alone: it sits behind k0's letters in its queue, which stay, so a
    // marker hides it from then on.
    let one = output(&mut dlq(&topic, &["replay", "--id", &solo_id]));
    assert!(one.status.success(), "{}", text(&one));
    assert!(text(&one).contains("replayed 1 of 1"), "{}", text(&one));
    wait_until("the solo letter applied", Duration::from_secs(60), || {
        applied.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(applied.lock().unwrap()[0].0, solo_key);
    let left = listed(&topic, &[]);
    assert_eq!(left.len(), KEYS * PER_KEY, "the solo letter is gone");
    assert!(left.iter().all(|row| row["message_id"] != solo_id.as_str()));
    let admin = RocketAdmin::connect(&config).await.unwrap();
    let marker_topic = format!("{}_REDRIVEN", dead.dead_letter_topic());
    assert!(
        admin.topic_queues(&marker_topic).await.unwrap().is_some(),
        "the floor could not pass the solo letter: a marker hides it"
    );
    admin.close().await;

    // A replay killed half way (10 messages a second, killed once a dozen arrived), then
    // run again to the end; the foreign dead letter stays until it is purged with --all.
    let run = ReplayRun {
        dlq: &|args| dlq(&topic, args),
        listed: &|extra| listed(&topic, extra),
        rate: "10",
        kill_after: 12,
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
    assert_eq!(report["scanned"], 0, "nothing left to read: {report}");
    // The floor itself (not only markers) is at the end of every queue: the reader group's
    // committed offsets leave no backlog.
    let mut reader = RocketSubscriber::dead_letters(config.clone(), &topic, &group(&topic))
        .await
        .unwrap();
    let lag = reader.lag_probe().unwrap().lag().await.unwrap();
    reader.close().await.unwrap();
    assert_eq!(lag.partitions.len(), QUEUES as usize, "{lag:?}");
    assert!(
        lag.partitions.iter().all(|queue| queue.lag == 0),
        "the floor passed every dead letter: {lag:?}"
    );
    publisher.close().await.unwrap();
}
