//! OpenTelemetry traces (feature `otel`), exported to an in-memory exporter: one trace per
//! order from the enqueueing transaction through the relay to the handler, over real
//! RabbitMQ and Kafka — `create` a child of the caller's span, `send` of `create` (though the
//! relay runs elsewhere, later), `process` of `send` — with the messaging attributes; and a
//! malformed or oversized `traceparent` starts a new trace without failing the delivery. A
//! RocketMQ transactional send is a `send` span of the caller's trace too.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::instrument::WithSubscriber;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use waybill_core::{
    handler_fn, IncomingMessage, MemoryBroker, Message, Processor, Publisher, RunningProcessor,
    Subscriber,
};

use crate::support;

/// The process's tracing setup, made once: an OpenTelemetry layer exporting every ended span
/// to memory, and the W3C trace-context propagator.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("waybill-tests");
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(provider);
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::set_global_default(subscriber).expect("one tracing subscriber");
        exporter
    })
}

/// The ended spans of `trace`.
fn spans_of(trace: TraceId) -> Vec<SpanData> {
    exporter()
        .get_finished_spans()
        .expect("exported spans")
        .into_iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .collect()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        panic!("no span {name:?} in the trace: {names:?}")
    })
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Waits until `running` handled `n` messages; fails after `limit` with its counters.
async fn handled(running: &RunningProcessor, n: u64, limit: Duration) {
    let started = Instant::now();
    while running.counters().handled < n {
        assert!(
            started.elapsed() < limit,
            "not {n} handled within {limit:?}: {:?}",
            running.counters()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Enqueues one order inside the caller's span, relays it through `publisher`, handles it
/// from `subscriber`, and checks the trace the spans form.
async fn one_trace_per_order<S: Subscriber + 'static>(
    system: &str,
    topic: &str,
    publisher: Arc<dyn Publisher>,
    subscriber: S,
) {
    exporter();
    let db = support::outbox_db::Db::sqlite().await;
    let support::outbox_db::Db::Sqlite { pool, .. } = &db else {
        unreachable!("a SQLite database")
    };
    let root = tracing::info_span!("place order");
    let root_context = root.context().span().span_context().clone();
    assert!(
        root_context.is_valid(),
        "the OpenTelemetry layer records spans"
    );
    let order = Message::new("order 1").with_key("order-1");
    async {
        let mut tx = pool.begin().await.unwrap();
        waybill_outbox::Outbox::new()
            .enqueue(&mut tx, topic, &order)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    .instrument(root.clone())
    .await;
    drop(root);

    let seen: Arc<Mutex<Vec<TraceId>>> = Arc::default();
    let handler = {
        let seen = Arc::clone(&seen);
        handler_fn(move |_m: IncomingMessage| {
            let seen = Arc::clone(&seen);
            async move {
                let current = tracing::Span::current().context();
                seen.lock()
                    .unwrap()
                    .push(current.span().span_context().trace_id());
                Ok(())
            }
        })
    };
    let group = subscriber.group().expect("a group").to_owned();
    let running = Processor::for_subscriber(&subscriber)
        .at_least_once_effects()
        .build()
        .unwrap()
        .start(subscriber, handler);
    let config = waybill_outbox::RelayConfig::builder()
        .name(format!("traces-{system}"))
        .poll_interval(Duration::from_millis(20))
        .build()
        .unwrap();
    let relay = waybill_outbox::Relay::sqlite(pool.clone(), publisher, config).spawn();
    handled(&running, 1, Duration::from_secs(30)).await;
    running.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();

    let trace = root_context.trace_id();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![trace],
        "the handler ran in the caller's trace"
    );
    let spans = spans_of(trace);
    let create = named(&spans, &format!("create {topic}"));
    let send = named(&spans, &format!("send {topic}"));
    let process = named(&spans, &format!("process {topic}"));
    assert_eq!(
        create.parent_span_id,
        root_context.span_id(),
        "create: child of the caller"
    );
    assert_eq!(
        send.parent_span_id,
        create.span_context.span_id(),
        "send: child of create"
    );
    assert!(
        send.parent_span_is_remote,
        "send continues the context stored with the row"
    );
    assert_eq!(
        process.parent_span_id,
        send.span_context.span_id(),
        "process: child of send"
    );
    assert_eq!(
        (
            create.span_kind.clone(),
            send.span_kind.clone(),
            process.span_kind.clone()
        ),
        (SpanKind::Producer, SpanKind::Producer, SpanKind::Consumer)
    );
    let id = order.id().to_string();
    assert_eq!(attribute(send, "messaging.system").as_deref(), Some(system));
    assert_eq!(attribute(send, "messaging.message.id"), Some(id.clone()));
    assert_eq!(attribute(process, "messaging.message.id"), Some(id));
    assert_eq!(
        attribute(process, "messaging.consumer.group.name"),
        Some(group)
    );
    assert_eq!(
        attribute(process, "messaging.destination.name").as_deref(),
        Some(topic)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_outbox_to_the_handler_on_rabbitmq() {
    support::rabbitmq::require_broker().await;
    let topic = support::unique_topic("wb-trace");
    let config = support::rabbitmq::config();
    let subscriber =
        waybill_rabbitmq::RabbitSubscriber::connect(config.clone(), &topic, "wb-trace-g")
            .await
            .unwrap();
    let publisher = Arc::new(
        waybill_rabbitmq::RabbitPublisher::connect(config.clone())
            .await
            .unwrap(),
    );
    one_trace_per_order("rabbitmq", &topic, publisher.clone(), subscriber).await;
    publisher.close().await.unwrap();
    waybill_rabbitmq::delete_group_topology(&config, &topic, "wb-trace-g", true)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_outbox_to_the_handler_on_kafka() {
    let _alone = support::fault::exclusive().await; // not while a test restarts the broker
    let topic = support::kafka::create_topic_for_test("wb-trace").await;
    let subscriber =
        waybill_kafka::KafkaSubscriber::connect(support::kafka::config(), &topic, "wb-trace-g")
            .await
            .unwrap();
    let publisher = Arc::new(
        waybill_kafka::KafkaPublisher::connect(support::kafka::config())
            .await
            .unwrap(),
    );
    one_trace_per_order("kafka", &topic, publisher.clone(), subscriber).await;
    publisher.close().await.unwrap();
}

/// The check-back of the transactional trace test (its sends are decided by their local
/// transaction, so it is not asked).
struct CommitAll;

#[async_trait::async_trait]
impl waybill_rocketmq::TransactionCheck for CommitAll {
    async fn check(&self, _message: &Message) -> waybill_rocketmq::TransactionState {
        waybill_rocketmq::TransactionState::Commit
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rocketmq_transactional_send_carries_the_callers_trace_to_the_handler() {
    exporter();
    let topic = support::rocketmq::create_topic_for_test("wb-trace-tx").await;
    let producer_config = waybill_rocketmq::RocketConfig::builder(support::rocketmq::name_server())
        .producer_group("wb_trace_tx_producer")
        .build()
        .unwrap();
    let producer =
        waybill_rocketmq::RocketTransactionalProducer::connect(producer_config, CommitAll)
            .await
            .unwrap();
    let subscriber = waybill_rocketmq::RocketSubscriber::connect(
        support::rocketmq::config(),
        &topic,
        "wb-trace-tx-g",
    )
    .await
    .unwrap();
    let running = super::acking_processor(subscriber);

    let root = tracing::info_span!("place order");
    let root_context = root.context().span().span_context().clone();
    let order = Message::new("order 1").with_key("order-1");
    let id = order.id().to_string();
    producer
        .send(&topic, order, || async { Ok::<(), ()>(()) })
        .instrument(root.clone())
        .await
        .unwrap();
    drop(root);
    handled(&running, 1, Duration::from_secs(30)).await;
    running.shutdown().await.unwrap();
    producer.close().await;

    let spans = spans_of(root_context.trace_id());
    let send = named(&spans, &format!("send {topic}"));
    let process = named(&spans, &format!("process {topic}"));
    assert_eq!(
        send.parent_span_id,
        root_context.span_id(),
        "send: child of the caller"
    );
    assert_eq!(send.span_kind, SpanKind::Producer);
    assert_eq!(
        attribute(send, "messaging.system").as_deref(),
        Some("rocketmq")
    );
    assert_eq!(attribute(send, "messaging.message.id"), Some(id));
    assert_eq!(
        process.parent_span_id,
        send.span_context.span_id(),
        "process: child of the transactional send"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_traceparent_starts_a_new_trace_and_fails_nothing() {
    exporter();
    let broker = MemoryBroker::new();
    let topic = "wb-trace-bad-input";
    let subscriber = broker.subscriber(topic, "g").unwrap();
    let publisher = broker.publisher();
    let malformed = Message::new("a").with_header("traceparent", "00-not-a-trace-at-all");
    let oversized = Message::new("b").with_header(
        "traceparent",
        format!(
            "00-{}-{}-01{}",
            "1".repeat(32),
            "2".repeat(16),
            " ".repeat(600)
        ),
    );
    // Published where no OpenTelemetry layer records spans, as another producer's messages
    // arrive: the headers stay as they are.
    for m in [&malformed, &oversized] {
        publisher
            .publish(topic, m.clone())
            .with_subscriber(tracing::subscriber::NoSubscriber::default())
            .await
            .unwrap();
    }
    let running = super::acking_processor(subscriber);
    handled(&running, 2, Duration::from_secs(5)).await;
    let counts = running.shutdown().await.unwrap();
    assert_eq!(counts.dead_lettered, 0);
    let all = exporter().get_finished_spans().unwrap();
    for m in [&malformed, &oversized] {
        let id = m.id().to_string();
        let process = all
            .iter()
            .find(|s| {
                s.name == format!("process {topic}")
                    && attribute(s, "messaging.message.id") == Some(id.clone())
            })
            .expect("a process span");
        assert_eq!(
            process.parent_span_id,
            SpanId::INVALID,
            "a new trace: {process:?}"
        );
    }
}

/// Counts the processor's `waybill.handle` spans that a subscriber is asked to build.
#[derive(Clone, Default)]
struct HandleSpans(Arc<std::sync::atomic::AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for HandleSpans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "waybill.handle" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A message whose upstream trace was not sampled (W3C flags `00`) is handled without a
/// `process` span — at the `INFO` level services run, without any span built — and what its
/// handler publishes stays in that trace, unsampled; a sampled one of the same run gets its
/// span. On one thread, under a subscriber of its own at `INFO` (the process's global one
/// records every level).
#[tokio::test(flavor = "current_thread")]
async fn an_unsampled_trace_is_handled_without_a_span_and_travels_on_unsampled() {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter().clone())
        .build();
    let built = HandleSpans::default();
    let _at_info = tracing::subscriber::set_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("waybill-tests")))
            .with(built.clone())
            .with(tracing_subscriber::filter::LevelFilter::INFO),
    );
    let broker = MemoryBroker::new();
    let (topic, onward) = ("wb-trace-unsampled", "wb-trace-unsampled-onward");
    let subscriber = broker.subscriber(topic, "g").unwrap();
    let mut onward_subscriber = broker.subscriber(onward, "g").unwrap();
    let publisher = broker.publisher();
    let unsampled_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sampled_trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let unsampled = Message::new("a").with_header(
        "traceparent",
        format!("00-{unsampled_trace}-00f067aa0ba902b7-00"),
    );
    let sampled = Message::new("b").with_header(
        "traceparent",
        format!("00-{sampled_trace}-00f067aa0ba902b7-01"),
    );
    // With a tracestate, the context is read through the propagator, and the state travels.
    let stated_trace = "6bf92f3577b34da6a3ce929d0e0e4738";
    let stated = Message::new("c")
        .with_header(
            "traceparent",
            format!("00-{stated_trace}-00f067aa0ba902b7-00"),
        )
        .with_header("tracestate", "vendor=abc");
    for m in [&unsampled, &sampled, &stated] {
        publisher
            .publish(topic, m.clone())
            .with_subscriber(tracing::subscriber::NoSubscriber::default())
            .await
            .unwrap();
    }
    let forwarding = broker.publisher();
    let running = Processor::for_subscriber(&subscriber)
        .at_least_once_effects()
        .build()
        .unwrap()
        .start(
            subscriber,
            handler_fn(move |m: IncomingMessage| {
                let forwarding = forwarding.clone();
                async move {
                    let next =
                        Message::new("onward").with_header("from", m.message().id().to_string());
                    forwarding
                        .publish(onward, next)
                        .await
                        .map_err(waybill_core::HandlerError::transient)?;
                    Ok(())
                }
            }),
        );
    handled(&running, 3, Duration::from_secs(5)).await;
    running.shutdown().await.unwrap();

    let all = exporter().get_finished_spans().unwrap();
    let process_of = |m: &Message| {
        let id = m.id().to_string();
        all.iter()
            .find(|s| {
                s.name == format!("process {topic}")
                    && attribute(s, "messaging.message.id") == Some(id.clone())
            })
            .cloned()
    };
    assert!(
        process_of(&unsampled).is_none(),
        "no process span for an unsampled trace"
    );
    assert_eq!(
        built.0.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one handle span built, for the sampled message only"
    );
    let recorded = process_of(&sampled).expect("a process span for the sampled trace");
    assert_eq!(
        recorded.span_context.trace_id(),
        TraceId::from_hex(sampled_trace).unwrap()
    );

    let mut onward_trace = std::collections::HashMap::new();
    let mut onward_state = std::collections::HashMap::new();
    for _ in 0..3 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), onward_subscriber.receive())
            .await
            .expect("the handler published onward")
            .unwrap()
            .unwrap();
        let message = delivery.message().message();
        let from = message.headers().get("from").unwrap().to_owned();
        let traceparent = message
            .headers()
            .get("traceparent")
            .expect("the onward message carries its trace")
            .to_owned();
        if let Some(state) = message.headers().get("tracestate") {
            onward_state.insert(from.clone(), state.to_owned());
        }
        onward_trace.insert(from, traceparent);
        delivery.ack().await.unwrap();
    }
    let carried = &onward_trace[&unsampled.id().to_string()];
    assert!(
        carried.starts_with(&format!("00-{unsampled_trace}-")) && carried.ends_with("-00"),
        "the unsampled trace travels on, unsampled: {carried}"
    );
    let carried = &onward_trace[&stated.id().to_string()];
    assert!(
        carried.starts_with(&format!("00-{stated_trace}-")) && carried.ends_with("-00"),
        "the unsampled trace with a tracestate travels on, unsampled: {carried}"
    );
    assert_eq!(
        onward_state
            .get(&stated.id().to_string())
            .map(String::as_str),
        Some("vendor=abc"),
        "its tracestate travels with it"
    );
    let carried = &onward_trace[&sampled.id().to_string()];
    assert!(
        carried.starts_with(&format!("00-{sampled_trace}-")) && carried.ends_with("-01"),
        "the sampled trace travels on, sampled: {carried}"
    );
}
