//! The order service: the seed scenario of waybill, end to end.
//!
//! Orders are placed and published with confirms; a publish whose confirm is lost is repeated
//! with the same message id, which creates broker duplicates. An idempotent consumer applies
//! every order exactly once and dead-letters malformed ones. The program prints a ledger that
//! must balance, and exits with 1 if it does not.
//!
//! The embedded default is waybill's in-memory broker with injected faults (lost confirms,
//! duplicate deliveries, acks lost after the work). `--broker rabbitmq` runs the same service
//! on a RabbitMQ server, repeating a share of publishes as a lost confirm would.
//!
//! `cargo run -p waybill-examples --bin order-service -- [--orders N] [--fault-percent P]
//!  [--broker memory|rabbitmq] [--rabbitmq-url URL]`

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use waybill_core::{BoxError, InMemoryIdempotencyStore, Ordering, Processor, RetryPolicy};
use waybill_examples::order_service::books::Books;
use waybill_examples::order_service::brokers::{DemoBroker, GROUP};
use waybill_examples::order_service::ledger::RunLedger;
use waybill_examples::order_service::orders::{is_malformed, order};

struct Options {
    orders: u64,
    fault_percent: u64,
    broker: String,
    rabbitmq_url: String,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        orders: 1_000,
        fault_percent: 5,
        broker: "memory".into(),
        rabbitmq_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name} needs a non-negative number"))
        };
        match arg.as_str() {
            "--orders" => o.orders = number("--orders", value("--orders")?)?,
            "--fault-percent" => {
                o.fault_percent = number("--fault-percent", value("--fault-percent")?)?.min(50)
            }
            "--broker" => o.broker = value("--broker")?,
            "--rabbitmq-url" => o.rabbitmq_url = value("--rabbitmq-url")?,
            "-h" | "--help" => {
                return Err("usage: order-service [--orders N] [--fault-percent P] \
                     [--broker memory|rabbitmq] [--rabbitmq-url URL]"
                    .into())
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(o)
}

async fn run(o: &Options) -> Result<RunLedger, BoxError> {
    let broker = match o.broker.as_str() {
        "memory" => DemoBroker::memory(o.fault_percent),
        "rabbitmq" => DemoBroker::rabbit(&o.rabbitmq_url)?,
        other => return Err(format!("unknown broker {other:?}: memory or rabbitmq").into()),
    };
    let books = Books::default();
    let running = Processor::builder(GROUP)
        .ordering(Ordering::PerKey)
        .retry(
            RetryPolicy::builder()
                .max_attempts(5)
                .min_delay(Duration::from_millis(5))
                .build()?,
        )
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()?
        .start(broker.subscriber().await?, books.handler());

    let publisher = broker.publisher().await?;
    let simulate_lost_confirm = |i: u64| {
        matches!(broker, DemoBroker::Rabbit { .. })
            && o.fault_percent > 0
            && i % (100 / o.fault_percent) == 0
    };
    let mut ledger = RunLedger {
        broker: broker.describe(o.fault_percent),
        placed: o.orders,
        ..RunLedger::default()
    };
    for i in 0..o.orders {
        ledger.malformed += u64::from(is_malformed(i));
        let mut message = order(i);
        if simulate_lost_confirm(i) {
            publisher.publish(broker.topic(), message.clone()).await?;
            ledger.republished += 1;
        }
        loop {
            match publisher.publish(broker.topic(), message).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() => {
                    ledger.republished += 1;
                    message = e.into_message();
                }
                Err(e) => return Err(e.into()),
            }
        }
        ledger.confirmed += 1;
    }

    for _ in 0..3_000 {
        let c = running.counters();
        if c.handled + c.dead_lettered >= ledger.placed && broker.pending() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let duplicates that are still in flight arrive before stopping.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ledger.consumer = running.shutdown().await?;
    publisher.close().await?;
    ledger.applied = books.orders();
    ledger.applied_twice = books.applied_twice();
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
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&options).await {
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
