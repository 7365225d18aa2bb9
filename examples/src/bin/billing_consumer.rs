//! A billing consumer as its own process: reads orders from a Kafka topic and applies each
//! exactly once to the billing table of a SQLite file (effect and inbox marker in one
//! transaction). Used to show what a crash before the offset commit does.
//!
//! `billing-consumer --topic T --database FILE --expect N [--kafka-brokers B]
//!  [--crash-after K] [--commit-interval-ms MS]`
//!
//! With `--crash-after K` the process aborts (no destructors, no offset commit, like SIGKILL)
//! once K orders are billed. Otherwise it stops cleanly once N orders are billed and prints
//! its counters as `key=value` pairs.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use waybill_core::{BoxError, Ordering, Processor};
use waybill_examples::order_service::books::Books;
use waybill_examples::order_service::brokers::GROUP;
use waybill_examples::order_service::service_db::ServiceDb;
use waybill_kafka::{KafkaConfig, KafkaSubscriber};

/// Applies orders from Kafka exactly once.
#[derive(Parser)]
#[command(name = "billing-consumer")]
struct Options {
    /// Bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka_brokers: String,
    /// Topic with the orders.
    #[arg(long)]
    topic: String,
    /// SQLite file with the billing table and the inbox.
    #[arg(long)]
    database: std::path::PathBuf,
    /// Stop once this many orders are billed.
    #[arg(long)]
    expect: u64,
    /// Abort the process once this many orders are billed.
    #[arg(long)]
    crash_after: Option<u64>,
    /// How often offsets are committed.
    #[arg(long, default_value_t = 1_000)]
    commit_interval_ms: u64,
}

async fn run(o: Options) -> Result<(), BoxError> {
    let db = ServiceDb::sqlite(&o.database).await?;
    db.migrate().await?;
    let books = Books::create(db.clone()).await?;
    let config = KafkaConfig::builder(&o.kafka_brokers)
        .session_timeout(Duration::from_secs(6))
        .commit_interval(Duration::from_millis(o.commit_interval_ms))
        .build()?;
    let subscriber = KafkaSubscriber::connect(config, &o.topic, GROUP).await?;
    let running = Processor::builder(GROUP)
        .ordering(Ordering::PerKey)
        .idempotency(db.idempotency())
        .build()?
        .start(subscriber, books.handler());
    loop {
        let billed = books.orders().await?;
        if o.crash_after.is_some_and(|k| billed >= k) {
            eprintln!("billing-consumer: crashing after {billed} orders");
            std::process::abort();
        }
        if billed >= o.expect {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let totals = running.shutdown().await?;
    println!(
        "received={} handled={} duplicates_skipped={} billed={} applied_twice={}",
        totals.received,
        totals.handled,
        totals.duplicates_skipped,
        books.orders().await?,
        books.applied_twice().await?
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Options::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("billing-consumer: {e}");
            ExitCode::FAILURE
        }
    }
}
