//! Metrics through the `metrics` facade, read back from a recording recorder: the processor's
//! instruments on the in-memory broker (handled, retried, dead-lettered, duplicate, panics,
//! claims, in-flight back to 0), the relay's over SQLite, and publishes on real RabbitMQ.
//! Every label value is checked against the messages' ids and keys: none may appear.

mod support;

#[path = "telemetry/health.rs"]
mod health;
#[path = "telemetry/lag.rs"]
mod lag;
#[path = "telemetry/lag_rocketmq.rs"]
mod lag_rocketmq;
#[path = "telemetry/traces.rs"]
mod traces;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use waybill_core::telemetry::names;
use waybill_core::{
    handler_fn, HandlerError, InMemoryIdempotencyStore, IncomingMessage, MemoryBroker, Message,
    Processor, Publisher, RetryPolicy, RunningProcessor, Subscriber,
};

/// A recorder that keeps every value as the code left it. (metrics-util's debugging recorder
/// resets counters, gauges and histograms at each snapshot, so tests of one binary that
/// snapshot concurrently would reset each other's gauges.)
struct Recording(Registry<Key, AtomicStorage>);

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// The process's recorder, installed once for every test of this binary.
fn recording() -> &'static Registry<Key, AtomicStorage> {
    static RECORDING: OnceLock<&'static Recording> = OnceLock::new();
    let recording = RECORDING.get_or_init(|| {
        let recording: &'static Recording = Box::leak(Box::new(Recording(Registry::atomic())));
        metrics::set_global_recorder(recording)
            .expect("no other metrics recorder in this test binary");
        waybill_core::telemetry::describe();
        recording
    });
    &recording.0
}

/// An at-least-once processor over `subscriber` whose handler succeeds at once.
fn acking_processor<S: Subscriber + 'static>(subscriber: S) -> RunningProcessor {
    Processor::for_subscriber(&subscriber)
        .at_least_once_effects()
        .build()
        .unwrap()
        .start(
            subscriber,
            handler_fn(|_m: IncomingMessage| async { Ok(()) }),
        )
}

/// A recorded value.
#[derive(Clone, Debug)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

/// One recorded series: name, labels, value.
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: Value,
}

/// Everything recorded so far, as it stands now.
fn series() -> Vec<Series> {
    let registry = recording();
    let labels = |key: &Key| {
        key.labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect()
    };
    let series = |key: &Key, value| Series {
        name: key.name().to_owned(),
        labels: labels(key),
        value,
    };
    let mut all = Vec::new();
    for (key, c) in registry.get_counter_handles() {
        all.push(series(&key, Value::Counter(c.load(SeqCst))));
    }
    for (key, g) in registry.get_gauge_handles() {
        all.push(series(&key, Value::Gauge(f64::from_bits(g.load(SeqCst)))));
    }
    for (key, h) in registry.get_histogram_handles() {
        all.push(series(&key, Value::Histogram(h.data())));
    }
    all
}

/// The series named `name` whose labels include `with`.
fn matching<'a>(
    all: &'a [Series],
    name: &'a str,
    with: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Value> + 'a {
    all.iter()
        .filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| &s.value)
}

/// The sum of the counters `name` whose labels include `with`.
fn counter(all: &[Series], name: &str, with: &[(&str, &str)]) -> u64 {
    matching(all, name, with)
        .map(|value| match value {
            Value::Counter(n) => *n,
            other => panic!("{name} is not a counter: {other:?}"),
        })
        .sum()
}

fn gauge(all: &[Series], name: &str, with: &[(&str, &str)]) -> Option<f64> {
    matching(all, name, with).next().map(|value| match value {
        Value::Gauge(g) => *g,
        other => panic!("{name} is not a gauge: {other:?}"),
    })
}

fn histogram_count(all: &[Series], name: &str, with: &[(&str, &str)]) -> usize {
    matching(all, name, with)
        .map(|value| match value {
            Value::Histogram(h) => h.len(),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

fn assert_no_label_from(all: &[Series], forbidden: &[String]) {
    for s in all {
        for (k, v) in &s.labels {
            assert!(
                !forbidden.contains(v),
                "{} has label {k}={v}, taken from a message",
                s.name
            );
        }
    }
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not done within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_processor_counts_what_happened_to_each_message() {
    recording();
    let broker = MemoryBroker::new();
    let (topic, group) = ("wb-metrics-orders", "wb-metrics-billing");
    let subscriber = broker.subscriber(topic, group).unwrap();
    let publisher = broker.publisher();
    // ok-1 and ok-2 succeed; flaky fails once then succeeds; poison fails for good; boom panics
    // until dead-lettered.
    let messages = [
        Message::new("ok").with_key("key-ok-1"),
        Message::new("ok").with_key("key-ok-2"),
        Message::new("flaky").with_key("key-flaky"),
        Message::new("poison").with_key("key-poison"),
        Message::new("boom").with_key("key-boom"),
    ];
    let mut forbidden: Vec<String> = messages.iter().map(|m| m.id().to_string()).collect();
    forbidden.extend(messages.iter().filter_map(|m| m.key().map(str::to_owned)));
    for m in &messages {
        publisher.publish(topic, m.clone()).await.unwrap();
    }
    // A duplicate of the first message.
    publisher.publish(topic, messages[0].clone()).await.unwrap();
    let flaky_failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handler = handler_fn(move |m: IncomingMessage| {
        let flaky_failed = Arc::clone(&flaky_failed);
        async move {
            match m.message().payload().as_ref() {
                b"flaky" if !flaky_failed.swap(true, std::sync::atomic::Ordering::SeqCst) => {
                    Err(HandlerError::transient("not yet"))
                }
                b"poison" => Err(HandlerError::permanent("cannot be handled")),
                b"boom" => panic!("handler bug"),
                _ => Ok(()),
            }
        }
    });
    let retry = RetryPolicy::builder()
        .max_attempts(2)
        .min_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
        .build()
        .unwrap();
    let store = Arc::new(InMemoryIdempotencyStore::new(Duration::from_secs(60), 1000));
    let running = Processor::for_subscriber(&subscriber)
        .idempotency(store)
        .retry(retry)
        .build()
        .unwrap()
        .start(subscriber, handler);
    wait_until(|| running.counters().settled() == 6).await;
    let counts = running.shutdown().await.unwrap();
    let all = series();
    let labels = [
        ("messaging.destination.name", topic),
        ("messaging.consumer.group.name", group),
    ];
    assert_eq!(
        counter(&all, names::CONSUMED_MESSAGES, &labels),
        counts.received
    );
    assert_eq!(counter(&all, names::RETRIES, &labels), counts.retried);
    assert!(counts.retried >= 2, "{counts:?}");
    assert_eq!(counter(&all, names::DEAD_LETTERED, &labels), 2);
    assert_eq!(counter(&all, names::DUPLICATES_SKIPPED, &labels), 1);
    assert_eq!(counter(&all, names::HANDLER_PANICS, &labels), counts.panics);
    assert!(counts.panics >= 1);
    let claims = |result| {
        counter(
            &all,
            names::INBOX_CLAIMS,
            &[labels[0], labels[1], ("waybill.claim.result", result)],
        )
    };
    assert_eq!(claims("duplicate"), 1);
    assert_eq!(claims("acquired"), counts.handled + counts.failed_attempts);
    let runs = |outcome| {
        histogram_count(
            &all,
            names::PROCESS_DURATION,
            &[labels[0], labels[1], ("waybill.outcome", outcome)],
        )
    };
    assert_eq!(runs("ok") as u64, counts.handled);
    assert_eq!(runs("panic") as u64, counts.panics);
    assert_eq!(
        (runs("error") + runs("panic")) as u64,
        counts.failed_attempts
    );
    assert_eq!(gauge(&all, names::IN_FLIGHT, &labels), Some(0.0));
    let sent = counter(
        &all,
        names::SENT_MESSAGES,
        &[
            ("messaging.system", "memory"),
            ("messaging.destination.name", topic),
            ("waybill.outcome", "sent"),
        ],
    );
    assert_eq!(sent, 6, "the test's own publishes");
    assert_no_label_from(&all, &forbidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_reports_its_backlog_and_what_it_published() {
    recording();
    let db = support::outbox_db::Db::sqlite().await;
    let support::outbox_db::Db::Sqlite { pool, .. } = &db else {
        unreachable!("a SQLite database")
    };
    let waybill_outbox_pool = pool.clone();
    let topic = "wb-metrics-relay";
    let outbox = waybill_outbox::Outbox::new();
    let mut forbidden = Vec::new();
    let mut tx = waybill_outbox_pool.begin().await.unwrap();
    for i in 0..5 {
        let message = Message::new(format!("row {i}")).with_key(format!("relay-key-{i}"));
        forbidden.push(message.id().to_string());
        forbidden.push(format!("relay-key-{i}"));
        outbox.enqueue(&mut tx, topic, &message).await.unwrap();
    }
    tx.commit().await.unwrap();
    let broker = MemoryBroker::new();
    let mut subscriber = broker.subscriber(topic, "g").unwrap();
    let config = waybill_outbox::RelayConfig::builder()
        .name("wb-metrics-relay-1")
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let relay = waybill_outbox::Relay::sqlite(
        waybill_outbox_pool.clone(),
        Arc::new(broker.publisher()),
        config,
    );
    let before = relay.backlog().await.unwrap();
    assert_eq!(before.pending, 5);
    let pending_before = gauge(
        &series(),
        names::RELAY_PENDING,
        &[("waybill.relay.name", "wb-metrics-relay-1")],
    );
    assert_eq!(pending_before, Some(5.0));
    let running = relay.spawn();
    for _ in 0..5 {
        let delivery = tokio::time::timeout(
            Duration::from_secs(10),
            waybill_core::Subscriber::receive(&mut subscriber),
        )
        .await
        .expect("relayed within 10 s")
        .unwrap()
        .unwrap();
        delivery.ack().await.unwrap();
    }
    wait_until(|| running.stats().published == 5).await;
    let after = running.backlog().await.unwrap();
    assert_eq!(after.pending, 0);
    running.shutdown().await.unwrap();
    let all = series();
    let relay_label = [("waybill.relay.name", "wb-metrics-relay-1")];
    assert_eq!(counter(&all, names::RELAY_PUBLISHED, &relay_label), 5);
    assert_eq!(gauge(&all, names::RELAY_PENDING, &relay_label), Some(0.0));
    assert_eq!(gauge(&all, names::RELAY_DEAD_ROWS, &relay_label), Some(0.0));
    assert!(histogram_count(&all, names::RELAY_BATCH_DURATION, &relay_label) >= 1);
    assert_eq!(
        counter(
            &all,
            names::SENT_MESSAGES,
            &[
                ("messaging.system", "memory"),
                ("messaging.destination.name", topic)
            ]
        ),
        5
    );
    assert_no_label_from(&all, &forbidden);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_publishes_are_counted_by_outcome() {
    recording();
    let config = support::rabbitmq::config();
    let publisher = waybill_rabbitmq::RabbitPublisher::connect(config.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ at {}: {e}. Start it with `scripts/brokers start rabbitmq`.",
                support::rabbitmq::url()
            )
        });
    let topic = support::unique_topic("wb-metrics-rmq");
    let mut subscriber = waybill_rabbitmq::RabbitSubscriber::connect(config.clone(), &topic, "g")
        .await
        .unwrap();
    let results = publisher
        .publish_batch(
            &topic,
            (0..3).map(|i| Message::new(format!("m{i}"))).collect(),
        )
        .await;
    assert!(results.iter().all(Result::is_ok));
    publisher
        .publish(&topic, Message::new("one more"))
        .await
        .unwrap();
    for _ in 0..4 {
        let d = waybill_core::Subscriber::receive(&mut subscriber)
            .await
            .unwrap()
            .unwrap();
        d.ack().await.unwrap();
    }
    waybill_core::Subscriber::close(&mut subscriber)
        .await
        .unwrap();
    let all = series();
    let with = [
        ("messaging.system", "rabbitmq"),
        ("messaging.destination.name", topic.as_str()),
    ];
    assert_eq!(
        counter(
            &all,
            names::SENT_MESSAGES,
            &[with[0], with[1], ("waybill.outcome", "sent")]
        ),
        4
    );
    assert_eq!(
        histogram_count(
            &all,
            names::OPERATION_DURATION,
            &[with[0], with[1], ("messaging.operation.name", "send")]
        ),
        4
    );
    waybill_rabbitmq::delete_group_topology(&config, &topic, "g", true)
        .await
        .unwrap();
}
