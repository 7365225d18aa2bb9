//! Recipe: a RabbitMQ consumer service an SRE can watch — Prometheus metrics, consumer lag,
//! liveness and readiness.
//!
//! It installs `metrics-exporter-prometheus` as the process's recorder (with buckets for the
//! duration histograms), runs a [`Processor`] on a RabbitMQ group whose lag it samples every
//! second, and serves on `--listen`:
//!
//! - `/metrics`: every waybill instrument (consumed, handler runs, retries, dead letters,
//!   in-flight, readiness, lag, dead-letter depth) in the Prometheus text format;
//! - `/livez`: 200 until the processor has stopped;
//! - `/readyz`: 200 while it is ready (receiving works), else 503 with the reason.
//!
//! A message whose payload is `poison` is refused as permanent (dead-lettered); the others
//! take `--handle-ms` each. It runs until SIGTERM or Ctrl-C. The Prometheus scrape test in
//! `cli/tests/prometheus_scrape.rs` runs it beside the relay sidecar (`waybill relay`).
//!
//! `cargo run -p waybill --features rabbitmq --example metered_consumer -- --topic orders
//! --group billing --listen 127.0.0.1:9465` (`--broker-url` for another server than the
//! local one).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use waybill::rabbitmq::{RabbitConfig, RabbitSubscriber};
use waybill::{
    handler_fn, HandlerError, InMemoryIdempotencyStore, IncomingMessage, Processor,
    RunningProcessor,
};

/// The command line: `--name value` pairs.
struct Args {
    broker_url: String,
    topic: String,
    group: String,
    listen: SocketAddr,
    handle: Duration,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = Self {
            broker_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            topic: String::new(),
            group: String::new(),
            listen: "127.0.0.1:9465".parse().expect("a socket address"),
            handle: Duration::ZERO,
        };
        let mut given = std::env::args().skip(1);
        while let Some(flag) = given.next() {
            let value = given.next().ok_or(format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--broker-url" => args.broker_url = value,
                "--topic" => args.topic = value,
                "--group" => args.group = value,
                "--listen" => args.listen = value.parse().map_err(|e| format!("--listen: {e}"))?,
                "--handle-ms" => {
                    let ms = value.parse().map_err(|e| format!("--handle-ms: {e}"))?;
                    args.handle = Duration::from_millis(ms);
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if args.topic.is_empty() || args.group.is_empty() {
            return Err("--topic and --group are required".into());
        }
        Ok(args)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse()?;
    // The recorder first: the processor registers its instruments with whatever is installed.
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration".into()),
            &[0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0],
        )?
        .install_recorder()?;
    waybill::telemetry::describe();

    let config = RabbitConfig::builder(args.broker_url.as_str())
        .prefetch(10)
        .build()?;
    let subscriber = RabbitSubscriber::connect(config, &args.topic, &args.group).await?;
    let handle = args.handle;
    let handler = handler_fn(move |m: IncomingMessage| async move {
        if m.message().payload().as_ref() == b"poison" {
            return Err(HandlerError::permanent("poison message"));
        }
        tokio::time::sleep(handle).await;
        Ok(())
    });
    let running = Arc::new(
        Processor::for_subscriber(&subscriber)
            .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
            .lag_interval(Duration::from_secs(1))
            .build()?
            .start(subscriber, handler),
    );

    let app = Router::new()
        .route("/metrics", get(render))
        .with_state(metrics)
        .merge(
            Router::new()
                .route("/livez", get(livez))
                .route("/readyz", get(readyz))
                .with_state(Arc::clone(&running)),
        );
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("serving /metrics, /livez and /readyz on {}", args.listen);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let counts = Arc::into_inner(running)
        .ok_or("the processor is still shared")?
        .shutdown()
        .await?;
    println!("stopped: {counts:?}");
    Ok(())
}

async fn render(State(metrics): State<PrometheusHandle>) -> impl axum::response::IntoResponse {
    metrics.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

async fn livez(State(running): State<Arc<RunningProcessor>>) -> (StatusCode, String) {
    let health = running.health();
    answer(health.is_live(), &health)
}

async fn readyz(State(running): State<Arc<RunningProcessor>>) -> (StatusCode, String) {
    let health = running.health();
    answer(health.is_ready(), &health)
}

/// 200 or 503, with the health as the body.
fn answer(ok: bool, health: &waybill::Health) -> (StatusCode, String) {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{health}\n"))
}
