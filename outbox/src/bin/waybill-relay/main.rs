//! `waybill-relay`: the outbox relay as a sidecar process. See `--help`.

mod monitoring;
mod settings;

use std::process::ExitCode;
use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use waybill_core::Publisher;
use waybill_outbox::{PgOutbox, PgRelay, RelayConfig};

use settings::{Command, Settings};

async fn publisher_for(url: &str) -> Result<Arc<dyn Publisher>, String> {
    let scheme = url.split("://").next().unwrap_or_default();
    match scheme {
        "amqp" | "amqps" => {
            let config = waybill_rabbitmq::RabbitConfig::builder(url)
                .build()
                .map_err(|e| e.to_string())?;
            let publisher = waybill_rabbitmq::RabbitPublisher::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(publisher))
        }
        other => Err(format!(
            "unsupported broker URL scheme {other:?}: this build publishes to amqp:// and amqps://"
        )),
    }
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

async fn run(command: Command, s: Settings) -> Result<(), String> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(&s.database_url)
        .await
        .map_err(|e| format!("cannot connect to the database: {e}"))?;
    if matches!(command, Command::Migrate) || s.migrate {
        PgOutbox::migrate(&pool).await.map_err(|e| e.to_string())?;
        tracing::info!("migrations applied");
        if matches!(command, Command::Migrate) {
            return Ok(());
        }
    }
    let publisher = publisher_for(&s.broker_url).await?;
    let config = RelayConfig::builder()
        .batch_size(s.batch_size)
        .poll_interval(s.poll_interval)
        .max_attempts(s.max_attempts)
        .build()
        .map_err(|e| e.to_string())?;
    let relay = Arc::new(PgRelay::new(pool, Arc::clone(&publisher), config));
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", s.listen))?;
    tracing::info!(listen = %s.listen, "serving /metrics and /healthz");
    let server = tokio::spawn(monitoring::serve(listener, Arc::clone(&relay)));
    let outcome = relay
        .run(shutdown_signal())
        .await
        .map_err(|e| e.to_string());
    server.abort();
    let closed = publisher.close().await.map_err(|e| e.to_string());
    tracing::info!(stats = ?relay.stats(), "relay stopped");
    outcome.and(closed)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let (command, settings) = match settings::parse(std::env::args().skip(1).collect()) {
        Ok((Command::Help, _)) => {
            println!("{}", settings::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(parsed) => parsed,
        Err(e) if std::env::args().any(|a| a == "--help" || a == "-h") => {
            let _ = e;
            println!("{}", settings::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("waybill-relay: {e}");
            return ExitCode::from(2);
        }
    };
    match run(command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("waybill-relay: {e}");
            ExitCode::FAILURE
        }
    }
}
