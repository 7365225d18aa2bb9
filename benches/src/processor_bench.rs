//! Processor throughput on the in-memory broker, against a raw receive-and-ack loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use waybill_core::{
    handler_fn, InMemoryIdempotencyStore, IncomingMessage, MemoryBroker, Message, Ordering,
    Processor, Publisher, Subscriber,
};

pub(crate) const KEYS: usize = 1_000;

/// Fills a fresh topic with `n` messages over `KEYS` keys.
pub(crate) async fn filled_broker(n: usize) -> MemoryBroker {
    let broker = MemoryBroker::new();
    broker.create_topic("bench").expect("valid topic");
    let publisher = broker.publisher();
    for i in 0..n {
        let m = Message::new(&b"payload-of-some-bytes"[..]).with_key(format!("k{}", i % KEYS));
        publisher
            .publish("bench", m)
            .await
            .expect("in-memory publish");
    }
    broker
}

async fn raw_loop(n: usize) -> Duration {
    let broker = filled_broker(n).await;
    let mut sub = broker.subscriber("bench", "raw").expect("subscriber");
    let started = Instant::now();
    for _ in 0..n {
        let d = sub.receive().await.expect("receive").expect("open");
        d.ack().await.expect("ack");
    }
    started.elapsed()
}

/// A hand-written consumer with the processor's concurrency: one loop receives, each delivery
/// gets a task that runs the (trivial) handler and acks, at most 64 at once.
async fn raw_concurrent_loop(n: usize) -> Duration {
    let broker = filled_broker(n).await;
    let mut sub = broker.subscriber("bench", "raw").expect("subscriber");
    let slots = Arc::new(tokio::sync::Semaphore::new(64));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let slot = Arc::clone(&slots).acquire_owned().await.expect("open");
        let d = sub.receive().await.expect("receive").expect("open");
        tasks.spawn(async move {
            let handled: Result<(), ()> = async { Ok(()) }.await;
            handled.expect("trivial handler");
            d.ack().await.expect("ack");
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    started.elapsed()
}

async fn processor_run(n: usize, ordering: Ordering, store: bool) -> Duration {
    let broker = filled_broker(n).await;
    let sub = broker.subscriber("bench", "proc").expect("subscriber");
    let mut builder = Processor::builder("proc")
        .ordering(ordering)
        .concurrency(64);
    if store {
        // Room for every message of the run, as a deployment sizes it above what arrives
        // within its redelivery horizon: the default's 100,000 would make most of a run's
        // completions evict an older entry (and warn that the store is too small), which
        // measures a misconfigured store, not the store.
        let retention = Duration::from_secs(24 * 3600);
        let store = InMemoryIdempotencyStore::new(retention, n.max(1));
        builder = builder.idempotency(Arc::new(store));
    } else {
        builder = builder.at_least_once_effects();
    }
    let handler = handler_fn(|_m: IncomingMessage| async { Ok(()) });
    let started = Instant::now();
    let running = builder.build().expect("valid config").start(sub, handler);
    while running.counters().handled < n as u64 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    let totals = running.shutdown().await.expect("clean shutdown");
    assert_eq!(totals.handled, n as u64, "every message handled once");
    elapsed
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Runs of each scenario; the median rate is printed (single runs of a few hundred
/// milliseconds vary by up to 2x on a shared machine).
const RUNS: usize = 5;

/// The median rate of [`RUNS`] runs of a scenario.
async fn median_rate(n: usize, ordering: Ordering, store: bool) -> f64 {
    let mut rates = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        rates.push(rate(n, processor_run(n, ordering, store).await));
    }
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

/// Runs every scenario and prints msgs/s and the ratio to the raw loop.
pub async fn run(n: usize) {
    if let Ok(only) = std::env::var("WAYBILL_BENCH_PROCESSOR_ONLY") {
        return run_one(&only, n).await;
    }
    println!(
        "processor throughput, in-memory broker, {n} messages, trivial handler, 64 slots \
         (median of {RUNS} runs)"
    );
    let raw = rate(n, raw_loop(n).await);
    println!(
        "{:<44} {:>12.0} msgs/s",
        "raw receive+ack loop, serial (baseline)", raw
    );
    let raw_64 = rate(n, raw_concurrent_loop(n).await);
    println!(
        "{:<44} {:>12.0} msgs/s  {:>5.2}x raw",
        "raw receive, handler+ack tasks, 64 at once",
        raw_64,
        raw_64 / raw
    );
    let scenarios = [
        ("processor Unordered", Ordering::Unordered, false),
        (
            "processor Unordered + idempotency store",
            Ordering::Unordered,
            true,
        ),
        ("processor PerKey (1000 keys)", Ordering::PerKey, false),
        (
            "processor PerKey (1000 keys) + idempotency",
            Ordering::PerKey,
            true,
        ),
    ];
    let mut off = 0.0;
    for (name, ordering, store) in scenarios {
        let r = median_rate(n, ordering, store).await;
        println!(
            "{name:<44} {r:>12.0} msgs/s  {:>5.2}x raw  {:>5.2}x raw 64",
            r / raw,
            r / raw_64
        );
        off = r;
    }
    // The last scenario again with a real recorder installed (the Prometheus exporter's, no
    // HTTP listener): every instrument of the processor and of the publishes now records.
    // Installed only now because a process's recorder cannot be removed.
    let recorder = install_metrics();
    let on = median_rate(n, Ordering::PerKey, true).await;
    let rendered = recorder.render();
    assert!(
        rendered.contains("messaging_client_consumed_messages"),
        "the recorder received the processor's metrics"
    );
    println!(
        "{:<44} {on:>12.0} msgs/s  {:>5.2}x raw  {:>5.2}x metrics off",
        "  ... with metrics recorded (Prometheus)",
        on / raw,
        on / off
    );
    // And with OpenTelemetry tracing on as well: the messages are published under tracing
    // (each `send` span a root, sampled as its trace id decides), so each carries its trace's
    // context; each handled message's `process` span continues it, through
    // tracing-opentelemetry and the SDK's batch processor, to an exporter that drops it.
    let sampling = install_tracing();
    for (ratio, label) in [
        (1.0, "  ... and OpenTelemetry traces, every one sampled"),
        (0.01, "  ... and OpenTelemetry traces, 1% sampled"),
    ] {
        sampling.set(ratio);
        let traced = median_rate(n, Ordering::PerKey, true).await;
        println!(
            "{label:<44} {traced:>12.0} msgs/s  {:>5.2}x raw  {:>5.2}x both off",
            traced / raw,
            traced / off
        );
    }
}

/// One run of one telemetry scenario of PerKey + store, in a process of its own, for
/// counting instructions (`valgrind --tool=callgrind`; the processor's share is the inclusive
/// count of `fetch_loop` and `KeyScheduler::dispatch`'s tasks): `off`, `metrics`,
/// `traced` (every trace sampled) or `traced-1pct`.
async fn run_one(scenario: &str, n: usize) {
    if scenario != "off" {
        install_metrics();
    }
    match scenario {
        "off" | "metrics" => {}
        "traced" => install_tracing().set(1.0),
        "traced-1pct" => install_tracing().set(0.01),
        other => panic!("unknown scenario {other:?}: off, metrics, traced or traced-1pct"),
    }
    let took = processor_run(n, Ordering::PerKey, true).await;
    println!("{scenario}: {:.0} msgs/s (one run)", rate(n, took));
}

/// The Prometheus exporter's recorder as the process's recorder (no HTTP listener), with
/// waybill's metrics described; its handle renders what was recorded.
fn install_metrics() -> metrics_exporter_prometheus::PrometheusHandle {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("install the Prometheus recorder");
    waybill_core::telemetry::describe();
    recorder
}

/// The share of new traces sampled (`ParentBased` on it: a span with a parent follows the
/// parent's decision), changeable between scenarios of one run: a process's tracing setup
/// is made once.
#[derive(Clone, Debug)]
struct RootRatio(Arc<std::sync::atomic::AtomicU64>);

impl RootRatio {
    fn set(&self, ratio: f64) {
        self.0
            .store(ratio.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }
}

impl opentelemetry_sdk::trace::ShouldSample for RootRatio {
    fn should_sample(
        &self,
        parent_context: Option<&opentelemetry::Context>,
        trace_id: opentelemetry::trace::TraceId,
        name: &str,
        span_kind: &opentelemetry::trace::SpanKind,
        attributes: &[opentelemetry::KeyValue],
        links: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        let ratio = f64::from_bits(self.0.load(std::sync::atomic::Ordering::Relaxed));
        opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(ratio).should_sample(
            parent_context,
            trace_id,
            name,
            span_kind,
            attributes,
            links,
        )
    }
}

/// An exporter that drops every span (the cost measured is waybill's and the SDK's, not a
/// collector's).
#[derive(Debug)]
struct Discard;

impl opentelemetry_sdk::trace::SpanExporter for Discard {
    async fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

/// A global tracing subscriber with the OpenTelemetry layer, and the W3C propagator; the
/// sampler is `ParentBased` over the returned ratio of new traces.
fn install_tracing() -> RootRatio {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::layer::SubscriberExt;
    let ratio = RootRatio(Arc::new(std::sync::atomic::AtomicU64::new(
        1.0f64.to_bits(),
    )));
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            ratio.clone(),
        )))
        .with_batch_exporter(Discard)
        .build();
    let tracer = provider.tracer("waybill-bench");
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry::global::set_tracer_provider(provider);
    // The layer as `tracing_opentelemetry::layer()` makes it, or, with
    // WAYBILL_BENCH_OTEL_LAYER=lean, without what a high-rate consumer can do without: busy
    // and idle times (two clock reads per poll), the code location and the thread of each span.
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    let layer = if std::env::var("WAYBILL_BENCH_OTEL_LAYER").is_ok_and(|v| v == "lean") {
        println!("  (OpenTelemetry layer without inactivity tracking, location and threads)");
        layer
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
    } else {
        layer
    };
    // At the INFO level, as services run: waybill's debug events (a duplicate skipped, an
    // unusable traceparent) are not turned into span events.
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    tracing::subscriber::set_global_default(subscriber).expect("no other tracing subscriber");
    ratio
}
