//! `waybill relay`: the outbox relay as a sidecar, with its monitoring endpoints.

use std::sync::Arc;

use waybill_outbox::Relay;

use crate::broker::publisher_for;
use crate::database::{open, Database};
use crate::exit::{Failure, Outcome};
use crate::monitoring;
use crate::settings::Settings;

/// Runs the relay until SIGTERM or SIGINT.
pub async fn run(s: Settings) -> Outcome {
    let database = open(&s.database_url).await?;
    relay(database, s).await
}

async fn relay(database: Database, s: Settings) -> Outcome {
    if s.migrate {
        database.migrate().await?;
        tracing::info!("migrations applied");
    }
    let broker_url = s.broker_url.ok_or_else(|| {
        Failure::Usage(
            "broker_url is required (--broker-url, --broker-url-file, WAYBILL_BROKER_URL, \
             WAYBILL_BROKER_URL_FILE or the file)"
                .into(),
        )
    })?;
    // Before the relay: it registers its instruments when it is made.
    let metrics = monitoring::install_recorder()?;
    let publisher = publisher_for(&broker_url).await?;
    let relay = Arc::new(match database {
        Database::Postgres(pool) => Relay::postgres(pool, Arc::clone(&publisher), s.relay),
        Database::Sqlite(pool) => Relay::sqlite(pool, Arc::clone(&publisher), s.relay),
        Database::Mysql(pool) => Relay::mysql(pool, Arc::clone(&publisher), s.relay),
    });
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
    tracing::info!(listen = %s.listen, "serving /livez, /readyz (/healthz) and /metrics");
    let server = tokio::spawn(monitoring::serve(listener, Arc::clone(&relay), metrics));
    let outcome = relay
        .run(shutdown_signal())
        .await
        .map_err(|e| e.to_string());
    server.abort();
    let closed = publisher.close().await.map_err(|e| e.to_string());
    tracing::info!(stats = ?relay.stats(), "relay stopped");
    Ok(outcome.and(closed)?)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutdown requested; finishing the batch in flight");
}
