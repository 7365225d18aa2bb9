//! The sidecar's HTTP endpoints, on axum: `/livez`, `/readyz` (and its alias `/healthz`) and
//! `/metrics`, the Prometheus text format of every instrument the relay, its publisher and
//! its backend record through the `metrics` facade (names in `waybill_core::telemetry`,
//! dots turned into underscores).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use waybill_outbox::Relay;

/// Bucket bounds (seconds) of the duration histograms: publish confirms, handler runs and
/// relay batches, from a millisecond to a minute.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for the process (before the relay registers its
/// instruments) and describes waybill's instruments.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("duration".to_owned()), &DURATION_BUCKETS)
        .map_err(|e| format!("metrics buckets: {e}"))?
        .install_recorder()
        .map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    waybill_core::telemetry::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(UPKEEP_EVERY).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

#[derive(Clone)]
struct Endpoints {
    relay: Arc<Relay>,
    metrics: PrometheusHandle,
}

/// Serves the endpoints until the process exits.
pub async fn serve(listener: TcpListener, relay: Arc<Relay>, metrics: PrometheusHandle) {
    let app = Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/healthz", get(readyz))
        .route("/metrics", get(render_metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "try /livez, /readyz or /metrics\n") })
        .with_state(Endpoints { relay, metrics });
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "the monitoring endpoints stopped");
    }
}

/// The process answers: it is live (it exits when the relay stops).
async fn livez() -> &'static str {
    "live\n"
}

/// 200 while the relay is ready (database and broker reachable, lease round current), else
/// 503; the body says the state, the reason and the shards held.
async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    let health = endpoints.relay.health().await;
    let shards = endpoints.relay.shards_owned().await;
    let status = if health.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{health}\nshards owned: {shards}\n")).into_response()
}

/// The recorder's text, with the backlog gauges read from the database just before.
async fn render_metrics(State(endpoints): State<Endpoints>) -> Response {
    if let Err(e) = endpoints.relay.backlog().await {
        tracing::debug!(error = %e, "backlog read for /metrics failed; gauges keep their last value");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        endpoints.metrics.render(),
    )
        .into_response()
}
