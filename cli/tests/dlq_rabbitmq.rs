//! `waybill dlq` on a real RabbitMQ: a consumer group dead-letters 120 messages over three
//! keys (a handler bug), the bug is fixed, and the operator replays them — once through a
//! `waybill dlq replay` killed with SIGKILL half way, then to the end. Every message is
//! applied exactly once (the inbox drops the copies the killed replay left behind), in its
//! key's order; a dead letter another tool put there (no record) is left, shown, and purged
//! only with `--all`; dry runs, unfiltered purges and filters matching nothing change nothing.

use std::collections::HashMap;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;
use waybill_core::redrive::DeadLetterFilter;
use waybill_core::{
    handler_fn, ErrorClass, Handler, HandlerError, InMemoryIdempotencyStore, IncomingMessage,
    Message, MessageId, Ordering, Processor, Publisher, RunningProcessor,
};
use waybill_rabbitmq::{
    delete_group_topology, RabbitConfig, RabbitDeadLetters, RabbitPublisher, RabbitSubscriber,
};

use super::dlq_replay_run::ReplayRun;
use super::WAYBILL;

const KEYS: usize = 3;
const PER_KEY: usize = 40;
pub(crate) const GROUP: &str = "billing";

pub(crate) fn amqp_url() -> String {
    std::env::var("WAYBILL_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub(crate) fn config() -> RabbitConfig {
    RabbitConfig::builder(amqp_url())
        .retry_tiers([Duration::from_millis(250)])
        .build()
        .expect("valid test config")
}

/// `waybill dlq ARGS --broker-url … --topic TOPIC --group billing`.
pub(crate) fn dlq(topic: &str, args: &[&str]) -> Command {
    let mut command = Command::new(WAYBILL);
    command.arg("dlq").args(args).args([
        "--broker-url",
        &amqp_url(),
        "--topic",
        topic,
        "--group",
        GROUP,
    ]);
    command
}

pub(crate) fn output(command: &mut Command) -> Output {
    command.output().expect("run waybill")
}

pub(crate) fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The dead letters `waybill dlq list --json` prints with `extra` flags.
pub(crate) fn listed(topic: &str, extra: &[&str]) -> Vec<Value> {
    let out = output(dlq(topic, &["list", "--json", "--limit", "1000"]).args(extra));
    assert!(out.status.success(), "{}", text(&out));
    match serde_json::from_slice(&out.stdout).expect("JSON") {
        Value::Array(rows) => rows,
        other => panic!("not an array: {other}"),
    }
}

/// Puts a message without any waybill header into the dead-letter queue, as another tool
/// would.
async fn put_foreign_dead_letter(queue: &str) {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"from another tool",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    connection.close(200, "done".into()).await.unwrap();
}

/// A per-key processor of the group on `topic`, over the shared `store`, running `handler`.
async fn start_group(
    topic: &str,
    store: &Arc<InMemoryIdempotencyStore>,
    handler: impl Handler,
) -> RunningProcessor {
    let subscriber = join_group(topic).await;
    Processor::builder(GROUP)
        .ordering(Ordering::PerKey)
        .idempotency(store.clone())
        .build()
        .unwrap()
        .start(subscriber, handler)
}

/// A subscriber of the group on `topic` (it declares the group's topology).
pub(crate) async fn join_group(topic: &str) -> RabbitSubscriber {
    RabbitSubscriber::connect(config(), topic, GROUP)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ unreachable at {} ({e}): scripts/brokers start rabbitmq",
                amqp_url()
            )
        })
}

/// Version 1 of the scenario's handler: a bug dead-letters every message.
pub(crate) fn broken_handler() -> impl Handler {
    handler_fn(|_m: IncomingMessage| async {
        Err(HandlerError::permanent("version 1 cannot read this order"))
    })
}

/// What the recording handler applied: key and `seq` of each message, in order.
pub(crate) type Applied = Arc<Mutex<Vec<(String, usize)>>>;

/// Version 2: applies every message, recording its key and `seq` header in the list returned.
pub(crate) fn recording_handler() -> (Applied, impl Handler) {
    let applied: Applied = Arc::default();
    let ledger = applied.clone();
    let handler = handler_fn(move |m: IncomingMessage| {
        let ledger = ledger.clone();
        async move {
            let key = m.message().key().unwrap_or_default().to_owned();
            let seq = m.message().headers().get("seq").unwrap().parse().unwrap();
            ledger.lock().unwrap().push((key, seq));
            Ok(())
        }
    });
    (applied, handler)
}

/// Publishes `per_key` messages on each of the keys `k0`… `k{keys-1}`, taking turns, each
/// with its number in the `seq` header.
pub(crate) async fn publish_keyed(
    publisher: &dyn Publisher,
    topic: &str,
    keys: usize,
    per_key: usize,
) {
    for seq in 0..per_key {
        for key in 0..keys {
            let message = Message::new(format!("{seq}"))
                .with_key(format!("k{key}"))
                .with_header("seq", seq.to_string());
            publisher.publish(topic, message).await.unwrap();
        }
    }
}

/// Checks that `applied` holds `0..per_key` once each, in order, for every key.
pub(crate) fn assert_each_key_applied_once_in_order(applied: &[(String, usize)], per_key: usize) {
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (key, seq) in applied {
        by_key.entry(key).or_default().push(*seq);
    }
    for (key, seqs) in &by_key {
        assert_eq!(
            seqs,
            &(0..per_key).collect::<Vec<_>>(),
            "key {key} applied once each, in order"
        );
    }
}

pub(crate) async fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_replayed_once_each_in_key_order_even_when_a_replay_is_killed() {
    let topic = format!(
        "wb-dlq-{}",
        &MessageId::new().to_string().replace('-', "")[20..]
    );
    let config = config();
    let store = Arc::new(InMemoryIdempotencyStore::default());

    // Version 1 of the handler has a bug: every message is dead-lettered.
    let broken = start_group(&topic, &store, broken_handler()).await;
    let publisher = RabbitPublisher::connect(config.clone()).await.unwrap();
    publish_keyed(&publisher, &topic, KEYS, PER_KEY).await;
    let total = (KEYS * PER_KEY) as u64;
    wait_until(
        "every message dead-lettered",
        Duration::from_secs(60),
        || broken.counters().dead_lettered == total,
    )
    .await;
    broken.shutdown().await.unwrap();
    let dead = RabbitDeadLetters::new(config.clone(), &topic, GROUP).unwrap();
    put_foreign_dead_letter(dead.queue()).await;

    // Listing removes nothing, and the library's filters select by class, id and limit.
    assert_eq!(listed(&topic, &[]).len(), KEYS * PER_KEY, "records only");
    let all = listed(&topic, &["--all"]);
    assert_eq!(all.len(), KEYS * PER_KEY + 1, "with the foreign one");
    assert!(
        all.iter().any(|row| row["error_class"] == "no record"),
        "the foreign dead letter is listed: {all:?}"
    );
    let first = &listed(&topic, &[])[0];
    assert_eq!(first["error_class"], "permanent", "{first}");
    assert_eq!(first["key"], "k0", "oldest first: {first}");
    let by_class = dead
        .list(&DeadLetterFilter {
            error_class: Some(ErrorClass::Transient),
            ..DeadLetterFilter::default()
        })
        .await
        .unwrap();
    assert!(by_class.is_empty(), "no transient dead letters");
    let limited = dead
        .list(&DeadLetterFilter {
            limit: Some(5),
            ..DeadLetterFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 5);
    assert_eq!(
        listed(&topic, &["--all"]).len(),
        KEYS * PER_KEY + 1,
        "reading with a limit gave everything back"
    );

    // What changes nothing: a dry run, an unfiltered purge, a filter matching nothing.
    let dry = output(&mut dlq(&topic, &["replay", "--dry-run"]));
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains(&format!("would replay {total} of {total}")),
        "{}",
        text(&dry)
    );
    let unfiltered = output(&mut dlq(&topic, &["purge"]));
    assert_eq!(unfiltered.status.code(), Some(2), "{}", text(&unfiltered));
    assert!(text(&unfiltered).contains("--all"), "{}", text(&unfiltered));
    let nothing = output(&mut dlq(&topic, &["replay", "--error-class", "panic"]));
    assert_eq!(nothing.status.code(), Some(3), "{}", text(&nothing));
    assert_eq!(listed(&topic, &["--all"]).len(), KEYS * PER_KEY + 1);
    let unknown = output(
        Command::new(WAYBILL)
            .args(["dlq", "list", "--broker-url", "nats://127.0.0.1:4222"])
            .args(["--topic", &topic, "--group", GROUP]),
    );
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));

    // Version 2 works: it records what it applied, in order per key.
    let (applied, recording) = recording_handler();
    let fixed = start_group(&topic, &store, recording).await;

    // A replay killed half way (40 messages a second, killed after about half a second),
    // then run again to the end; the foreign dead letter stays until it is purged with --all.
    let run = ReplayRun {
        dlq: &|args| dlq(&topic, args),
        listed: &|extra| listed(&topic, extra),
        rate: "40",
        kill_after: 19,
        applied_before: 0,
        keyed: KEYS * PER_KEY,
        per_key: PER_KEY,
        solo_key: None,
    };
    run.killed_then_finished(&applied, fixed).await;
    run.foreign_letter_purged_with_all("from another tool");

    publisher.close().await.unwrap();
    delete_group_topology(&config, &topic, GROUP, true)
        .await
        .unwrap();
}
