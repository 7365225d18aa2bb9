//! The order service: the seed scenario of waybill, end to end.
//!
//! Each order is placed in one database transaction that writes the order row and its outbox row.
//! The relay publishes committed rows with confirms; it is crashed (aborted mid-batch) and
//! restarted every 250 orders, so confirmed rows are published again with the same id. An
//! idempotent consumer writes the billing row and its inbox marker in one transaction, and
//! dead-letters malformed orders. The program prints a ledger that must balance, and exits
//! with 1 if it does not.
//!
//! The embedded default is waybill's in-memory broker with injected faults (ambiguous
//! confirms, duplicate deliveries, acks lost after the work) and a SQLite file in the temp
//! directory: no server needed. `--broker rabbitmq` runs the same service on a RabbitMQ
//! server, `--broker kafka` on a Kafka cluster, `--broker rocketmq` on a RocketMQ cluster;
//! `--database mysql://…` keeps the service's data on a MySQL or MariaDB server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use waybill_core::{BoxError, Ordering, Processor, Publisher, RetryPolicy};
use waybill_examples::order_service::books::Books;
use waybill_examples::order_service::brokers::{DemoBroker, GROUP};
use waybill_examples::order_service::ledger::RunLedger;
use waybill_examples::order_service::orders::is_malformed;
use waybill_examples::order_service::service_db::ServiceDb;
use waybill_examples::order_service::shop::Shop;
use waybill_outbox::{Relay, RelayConfig, RelayStats};

/// Places orders through the transactional outbox and applies them exactly once.
#[derive(Parser)]
#[command(name = "order-service")]
struct Options {
    /// Orders to place.
    #[arg(long, default_value_t = 1_000)]
    orders: u64,
    /// Share of injected faults on the in-memory broker, in percent (0 to 50).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=50))]
    fault_percent: u64,
    /// memory, rabbitmq, kafka or rocketmq.
    #[arg(long, default_value = "memory")]
    broker: String,
    /// The RabbitMQ server for --broker rabbitmq.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    rabbitmq_url: String,
    /// The Kafka cluster for --broker kafka.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// The RocketMQ name servers for --broker rocketmq.
    #[arg(long, default_value = "127.0.0.1:9876")]
    rocketmq_namesrv: String,
    /// The service's database: a SQLite file, or `mysql://user[:password]@host:port` for a
    /// MySQL 8.0+ or MariaDB 10.6+ server, on which the run creates a database of its own and
    /// drops it afterwards [default: a new SQLite file in the temp directory, removed after].
    #[arg(long)]
    database: Option<String>,
}

const CRASH_EVERY: u64 = 250;

fn relay(db: &ServiceDb, publisher: &Arc<dyn Publisher>) -> Arc<Relay> {
    let config = RelayConfig::builder()
        .name("order-service-relay")
        .poll_interval(Duration::from_millis(20))
        .batch_size(100)
        .backoff(Duration::from_millis(5), Duration::from_millis(100))
        .build()
        .expect("valid relay settings");
    Arc::new(db.relay(Arc::clone(publisher), config))
}

fn add(sum: &mut RelayStats, s: RelayStats) {
    sum.published += s.published;
    sum.failed += s.failed;
    sum.dead += s.dead;
    sum.batches += s.batches;
}

async fn run(o: &Options, path: &std::path::Path) -> Result<RunLedger, BoxError> {
    let broker = match o.broker.as_str() {
        "memory" => DemoBroker::memory(o.fault_percent),
        "rabbitmq" => DemoBroker::rabbit(&o.rabbitmq_url)?,
        "kafka" => DemoBroker::kafka(&o.kafka_brokers).await?,
        "rocketmq" => DemoBroker::rocketmq(&o.rocketmq_namesrv).await?,
        other => {
            return Err(
                format!("unknown broker {other:?}: memory, rabbitmq, kafka or rocketmq").into(),
            )
        }
    };
    let db = match &o.database {
        Some(url) if url.starts_with("mysql://") => ServiceDb::mysql(url).await?,
        _ => ServiceDb::sqlite(path).await?,
    };
    let outcome = serve(o, &broker, &db, path).await;
    let closed = db.close().await;
    let ledger = outcome?;
    closed?;
    Ok(ledger)
}

/// Places the orders, relays and consumes them on `db`, and reads the ledger.
async fn serve(
    o: &Options,
    broker: &DemoBroker,
    db: &ServiceDb,
    path: &std::path::Path,
) -> Result<RunLedger, BoxError> {
    let shop = Shop::create(db.clone()).await?;
    // Markers older than their retention are deleted in the background while the service runs.
    let _inbox_purger = db.purge_every(Duration::from_secs(3600));
    let books = Books::create(db.clone()).await?;
    let running = Processor::builder(GROUP)
        .ordering(Ordering::PerKey)
        .retry(
            RetryPolicy::builder()
                .max_attempts(5)
                .min_delay(Duration::from_millis(5))
                .build()?,
        )
        .idempotency(db.idempotency())
        .build()?
        .start(broker.subscriber().await?, books.handler());

    let publisher = broker.publisher().await?;
    let mut ledger = RunLedger {
        setup: format!(
            "{}, {}",
            broker.describe(o.fault_percent),
            db.describe(path)
        ),
        ..RunLedger::default()
    };
    let mut current = relay(db, &publisher);
    let mut task = {
        let r = Arc::clone(&current);
        tokio::spawn(async move { r.run(std::future::pending()).await })
    };
    for i in 0..o.orders {
        ledger.malformed += u64::from(is_malformed(i));
        shop.place(broker.topic(), i).await?;
        ledger.enqueued += 1;
        if i % CRASH_EVERY == CRASH_EVERY - 1 {
            // Crash the relay wherever it is, and start it again.
            task.abort();
            let _ = task.await;
            ledger.relay_crashes += 1;
            add(&mut ledger.relay, current.stats());
            current = relay(db, &publisher);
            let r = Arc::clone(&current);
            task = tokio::spawn(async move { r.run(std::future::pending()).await });
        }
    }
    let inspector = db.inspector();
    for _ in 0..6_000 {
        let c = running.counters();
        let left = inspector.backlog().await?.pending;
        if left == 0 && c.handled + c.dead_lettered >= o.orders && broker.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let duplicates that are still in flight arrive before stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let _ = task.await;
    add(&mut ledger.relay, current.stats());
    ledger.consumer = running.shutdown().await?;
    publisher.close().await?;
    let backlog = inspector.backlog().await?;
    ledger.outbox_left = (backlog.pending + backlog.dead) as u64;
    ledger.last_publish_error = db.last_publish_error().await?;
    ledger.placed = shop.orders().await?;
    ledger.applied = books.orders().await?;
    ledger.applied_twice = books.applied_twice().await?;
    ledger.dead_lettered = broker.dead_letters_and_cleanup().await?;
    Ok(ledger)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .init();
    let options = Options::parse();
    let (path, temporary) = match &options.database {
        Some(url) if url.starts_with("mysql://") => (std::path::PathBuf::new(), false),
        Some(path) => (std::path::PathBuf::from(path), false),
        None => (
            std::env::temp_dir().join(format!("order-service-{}.db", std::process::id())),
            true,
        ),
    };
    let outcome = run(&options, &path).await;
    if temporary {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    match outcome {
        Ok(ledger) => {
            ledger.print();
            if ledger.balances() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("order-service failed: {e}");
            ExitCode::FAILURE
        }
    }
}
