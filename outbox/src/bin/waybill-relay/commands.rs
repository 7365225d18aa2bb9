//! What each subcommand does.

use std::sync::Arc;

use waybill_core::Publisher;
use waybill_outbox::{OutboxInspector, Relay};

use crate::monitoring;
use crate::settings::{Command, DatabaseKind, DeadCommand, Settings};
use waybill_core::secret::mask_url_password as masked_url;

/// The database behind a URL.
enum Database {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
    Mysql(sqlx::MySqlPool),
}

async fn open(url: &str) -> Result<Database, String> {
    match DatabaseKind::of(url)? {
        DatabaseKind::Sqlite => waybill_outbox::sqlite::connect(url, 4)
            .await
            .map(Database::Sqlite)
            .map_err(|e| format!("cannot open the database: {e}")),
        DatabaseKind::Postgres => waybill_outbox::postgres::connect(url, 4)
            .await
            .map(Database::Postgres)
            .map_err(|e| format!("cannot connect to the database {}: {e}", masked_url(url))),
        DatabaseKind::Mysql => waybill_outbox::mysql::connect(url, 4)
            .await
            .map(Database::Mysql)
            .map_err(|e| format!("cannot connect to the database {}: {e}", masked_url(url))),
    }
}

impl Database {
    async fn migrate(&self) -> Result<(), String> {
        match self {
            Self::Postgres(pool) => waybill_outbox::postgres::migrate(pool).await,
            Self::Sqlite(pool) => waybill_outbox::sqlite::migrate(pool).await,
            Self::Mysql(pool) => waybill_outbox::mysql::migrate(pool).await,
        }
        .map_err(|e| e.to_string())
    }

    fn inspector(&self) -> OutboxInspector {
        match self {
            Self::Postgres(pool) => OutboxInspector::postgres(pool.clone()),
            Self::Sqlite(pool) => OutboxInspector::sqlite(pool.clone()),
            Self::Mysql(pool) => OutboxInspector::mysql(pool.clone()),
        }
    }
}

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
        "kafka" | "kafkas" => {
            let config = waybill_kafka::KafkaConfig::from_url(url)
                .and_then(|builder| builder.build())
                .map_err(|e| e.to_string())?;
            let publisher = waybill_kafka::KafkaPublisher::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(publisher))
        }
        "rocketmq" | "rocketmqs" => {
            let config = waybill_rocketmq::RocketConfig::from_url(url)
                .and_then(|builder| builder.build())
                .map_err(|e| e.to_string())?;
            let publisher = waybill_rocketmq::RocketPublisher::connect(config)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(publisher))
        }
        other => Err(format!(
            "unsupported broker URL scheme {other:?}: this build publishes to amqp://, amqps://, \
             kafka://, kafkas://, rocketmq:// and rocketmqs://"
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

/// Runs `command`.
pub async fn execute(command: Command, s: Settings) -> Result<(), String> {
    let database = open(&s.database_url).await?;
    match command {
        Command::Migrate => {
            database.migrate().await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Run => relay(database, s).await,
        Command::Pending => pending(&database.inspector()).await,
        Command::Dead(dead) => dead_rows(&database.inspector(), dead).await,
    }
}

async fn relay(database: Database, s: Settings) -> Result<(), String> {
    if s.migrate {
        database.migrate().await?;
        tracing::info!("migrations applied");
    }
    let broker_url = s.broker_url.ok_or(
        "broker_url is required (--broker-url, --broker-url-file, WAYBILL_BROKER_URL, \
             WAYBILL_BROKER_URL_FILE or the file)",
    )?;
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
    outcome.and(closed)
}

async fn pending(inspector: &OutboxInspector) -> Result<(), String> {
    let topics = inspector.topics().await.map_err(|e| e.to_string())?;
    println!(
        "{:<40} {:>10} {:>16} {:>8}",
        "TOPIC", "PENDING", "OLDEST_AGE_S", "DEAD"
    );
    for t in &topics {
        println!(
            "{:<40} {:>10} {:>16.1} {:>8}",
            t.topic, t.pending, t.oldest_age_seconds, t.dead
        );
    }
    Ok(())
}

async fn dead_rows(inspector: &OutboxInspector, command: DeadCommand) -> Result<(), String> {
    match command {
        DeadCommand::List { filter, limit } => {
            let rows = inspector
                .dead(&filter.to_filter(false)?, limit)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "{:>10} {:<36} {:<24} {:<16} {:>8} {:>10}  LAST_ERROR",
                "SEQ", "MESSAGE_ID", "TOPIC", "KEY", "ATTEMPTS", "DEAD_FOR_S"
            );
            for r in rows {
                println!(
                    "{:>10} {:<36} {:<24} {:<16} {:>8} {:>10.0}  {}",
                    r.seq,
                    r.message_id,
                    r.topic,
                    r.key.unwrap_or_default(),
                    r.attempts,
                    r.dead_for_seconds,
                    r.last_error.unwrap_or_default()
                );
            }
            Ok(())
        }
        DeadCommand::Replay { filter } => {
            let n = inspector
                .replay(&filter.to_filter(true)?)
                .await
                .map_err(|e| e.to_string())?;
            println!("{n} dead rows made pending again");
            Ok(())
        }
        DeadCommand::Purge { filter } => {
            let n = inspector
                .purge(&filter.to_filter(true)?)
                .await
                .map_err(|e| e.to_string())?;
            println!("{n} dead rows deleted");
            Ok(())
        }
    }
}
