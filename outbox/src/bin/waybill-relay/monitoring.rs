//! `/metrics` (Prometheus text format) and `/healthz` over a minimal HTTP/1.1 responder.

use std::fmt::Write as _;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use waybill_outbox::Relay;

/// Serves the two endpoints until the process exits.
pub async fn serve(listener: TcpListener, relay: Arc<Relay>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            let Some(request) = read_head(&mut socket).await else {
                return;
            };
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => match metrics(&relay).await {
                    Ok(text) => ("200 OK", text),
                    Err(e) => ("503 Service Unavailable", format!("database error: {e}\n")),
                },
                "/healthz" if relay.ping().await => ("200 OK", "ok\n".to_owned()),
                "/healthz" => (
                    "503 Service Unavailable",
                    "database unreachable\n".to_owned(),
                ),
                _ => ("404 Not Found", "try /metrics or /healthz\n".to_owned()),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Reads the request head (up to the blank line, at most 8 KiB, within 5 s).
async fn read_head(socket: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let read = tokio::time::timeout_at(deadline, socket.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn metrics(relay: &Relay) -> Result<String, waybill_outbox::OutboxError> {
    let backlog = relay.backlog().await?;
    let stats = relay.stats();
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "waybill_outbox_pending_rows",
        "gauge",
        "Outbox rows waiting to be relayed.",
        backlog.pending as f64,
    );
    metric(
        "waybill_outbox_oldest_pending_age_seconds",
        "gauge",
        "Age of the oldest waiting row.",
        backlog.oldest_age_seconds,
    );
    metric(
        "waybill_outbox_dead_rows",
        "gauge",
        "Rows marked dead after the attempt cap.",
        backlog.dead as f64,
    );
    metric(
        "waybill_relay_published_total",
        "counter",
        "Rows published with a confirm and deleted.",
        stats.published as f64,
    );
    metric(
        "waybill_relay_failures_total",
        "counter",
        "Publish attempts that failed.",
        stats.failed as f64,
    );
    metric(
        "waybill_relay_destination_missing_total",
        "counter",
        "Publish attempts that found no destination (topic or queue not created yet); the rows wait for it up to the destination wait. Alert when it grows.",
        stats.destination_missing as f64,
    );
    metric(
        "waybill_relay_dead_total",
        "counter",
        "Rows this relay marked dead.",
        stats.dead as f64,
    );
    metric(
        "waybill_relay_shards_owned",
        "gauge",
        "Shards this relay holds a lease on.",
        relay.shards_owned().await as f64,
    );
    metric(
        "waybill_relay_batches_total",
        "counter",
        "Batches claimed.",
        stats.batches as f64,
    );
    Ok(out)
}
