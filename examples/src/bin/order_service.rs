//! The order service: the seed scenario of waybill, end to end, on the embedded default.
//!
//! Orders are placed and published with confirms; some confirms are lost on purpose (the
//! service retries them with the same message id, which creates broker duplicates), some
//! deliveries are duplicated and some acks lost (a consumer crash after its work). An
//! idempotent consumer applies every order exactly once and dead-letters malformed ones. The
//! program prints a ledger that must balance, and exits non-zero if it does not.
//!
//! Until the outbox and broker backends land, the broker is waybill's in-memory broker.
//!
//! `cargo run -p waybill-examples --bin order-service -- [--orders N] [--fault-percent P]`

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use waybill_core::{
    handler_fn, AckFault, DeliveryFault, HandlerError, InMemoryIdempotencyStore, IncomingMessage,
    MemoryBroker, Message, Ordering, Processor, PublishFault, Publisher, RetryPolicy,
};

struct Options {
    orders: u64,
    fault_percent: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        orders: 1_000,
        fault_percent: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{name} needs a non-negative number"))
        };
        match arg.as_str() {
            "--orders" => options.orders = value("--orders")?,
            "--fault-percent" => options.fault_percent = value("--fault-percent")?.min(50),
            "-h" | "--help" => {
                return Err("usage: order-service [--orders N] [--fault-percent P]".into())
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    Ok(options)
}

/// Every n-th call, deterministically: faults spread evenly without a random source.
fn every(percent: u64) -> impl Fn(u64) -> bool {
    move |i| percent > 0 && i % (100 / percent) == (100 / percent) / 2
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
    let broker = MemoryBroker::new();
    inject_faults(&broker, options.fault_percent);

    // The consumer: applies orders to the "billing" books exactly once.
    let books: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let handler = {
        let books = Arc::clone(&books);
        handler_fn(move |m: IncomingMessage| {
            let books = Arc::clone(&books);
            async move {
                let body = std::str::from_utf8(m.message().payload())
                    .map_err(|_| HandlerError::permanent("order is not UTF-8"))?;
                let amount: u64 = body
                    .strip_prefix("amount=")
                    .and_then(|a| a.parse().ok())
                    .ok_or_else(|| HandlerError::permanent(format!("malformed order {body:?}")))?;
                let order = m.message().key().unwrap_or_default().to_owned();
                *books.lock().unwrap().entry(order).or_default() += amount;
                Ok(())
            }
        })
    };
    let processor = Processor::builder("billing")
        .ordering(Ordering::PerKey)
        .retry(
            RetryPolicy::builder()
                .max_attempts(5)
                .min_delay(Duration::from_millis(5))
                .build()
                .expect("valid retry policy"),
        )
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()
        .expect("valid processor configuration");
    let subscriber = broker
        .subscriber("orders", "billing")
        .expect("valid topic and group");
    let running = processor.start(subscriber, handler);

    // The producer: places orders; a lost confirm is retried with the same message (same id).
    let publisher = broker.publisher();
    let (mut confirmed, mut publish_retries, mut malformed) = (0u64, 0u64, 0u64);
    for i in 0..options.orders {
        let body = if i % 97 == 13 {
            malformed += 1;
            "amount=lots".to_owned()
        } else {
            format!("amount={}", 10 + i % 90)
        };
        let mut message = Message::new(body).with_key(format!("order-{i}"));
        loop {
            match publisher.publish("orders", message).await {
                Ok(_) => {
                    confirmed += 1;
                    break;
                }
                Err(e) if e.is_retryable() => {
                    publish_retries += 1;
                    message = e.into_message();
                }
                Err(e) => {
                    eprintln!("order {i} refused: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }

    let settled = |c: waybill_core::CountersSnapshot| c.handled + c.dead_lettered;
    for _ in 0..1_000 {
        if settled(running.counters()) >= confirmed && broker.pending("orders", "billing") == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let totals = match running.shutdown().await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("consumer failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let applied = books.lock().unwrap().len() as u64;
    // Distinct ids: a lost ack after a dead letter makes the broker deliver it again, and the
    // second dead letter carries the same id.
    let dead_ids: std::collections::HashSet<_> = broker
        .messages("orders.dlq")
        .iter()
        .map(Message::id)
        .collect();
    let dead = dead_ids.len() as u64;

    println!(
        "order-service ledger (in-memory broker, {}% injected faults)",
        options.fault_percent
    );
    println!("  orders placed                {:>8}", options.orders);
    println!("  publishes confirmed          {confirmed:>8}");
    println!("  publish retries (same id)    {publish_retries:>8}");
    println!("  deliveries received          {:>8}", totals.received);
    println!("  orders applied (effects)     {applied:>8}");
    println!(
        "  duplicates skipped           {:>8}",
        totals.duplicates_skipped
    );
    println!("  dead-lettered (malformed)    {dead:>8}");
    println!("  acks lost, redelivered       {:>8}", totals.settle_errors);
    let balanced = applied + dead == options.orders
        && dead == malformed
        && totals.handled == applied
        && broker.pending("orders", "billing") == 0;
    if balanced {
        println!("  balance: applied + dead-lettered = placed, every order exactly once: OK");
        ExitCode::SUCCESS
    } else {
        println!("  balance: MISMATCH");
        ExitCode::FAILURE
    }
}

fn inject_faults(broker: &MemoryBroker, percent: u64) {
    let hit = Arc::new(every(percent));
    let publishes = AtomicU64::new(0);
    let publish_hit = Arc::clone(&hit);
    broker.faults().on_publish(move |ctx| {
        (ctx.topic == "orders" && publish_hit(publishes.fetch_add(1, Relaxed)))
            .then_some(PublishFault::Ambiguous { stored: true })
    });
    let deliveries = AtomicU64::new(0);
    let delivery_hit = Arc::clone(&hit);
    broker.faults().on_deliver(move |ctx| {
        (!ctx.redelivered && delivery_hit(deliveries.fetch_add(1, Relaxed)))
            .then_some(DeliveryFault::Duplicate)
    });
    let acks = AtomicU64::new(0);
    broker
        .faults()
        .on_ack(move |_| hit(acks.fetch_add(3, Relaxed)).then_some(AckFault::Lost));
}
