//! Recipe: a consume-transform-produce pipeline with an exactly-once effect.
//!
//! `orders` → invoicing → `invoices` → mailer. Invoicing reads each order, and in **one**
//! PostgreSQL transaction writes its inbox marker and enqueues the `InvoiceIssued` event in the
//! outbox; a relay publishes the outbox. So a redelivered order issues no second invoice (the
//! marker is already there), and an issued invoice is never lost (it committed with the
//! marker). Kafka transactions are not needed for this, and would not be enough on their own:
//! the database write is what must happen once. The mailer checks every order got exactly one
//! invoice; the program exits non-zero otherwise.
//!
//! `cargo run -p waybill --features kafka,postgres --example consume_transform_produce`
//! (`WAYBILL_RECIPE_DATABASE_URL` and `WAYBILL_KAFKA_BROKERS` for other servers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waybill::kafka::{create_topic, KafkaConfig, KafkaPublisher, KafkaSubscriber};
use waybill::outbox::{postgres, Outbox, PgIdempotencyStore, Relay, RelayConfig};
use waybill::{
    typed_handler, InMemoryIdempotencyStore, IncomingMessage, Message, MessageId, Processor,
    Publisher,
};

#[derive(Serialize, Deserialize)]
struct OrderPlaced {
    order_id: u64,
    cents: u64,
}

#[derive(Serialize, Deserialize)]
struct InvoiceIssued {
    order_id: u64,
    cents_with_tax: u64,
}

const ORDERS: u64 = 100;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db_url = std::env::var("WAYBILL_RECIPE_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let brokers =
        std::env::var("WAYBILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let db = sqlx::PgPool::connect(&db_url).await?;
    postgres::migrate(&db).await?;
    let kafka = KafkaConfig::builder(brokers).build()?;
    let run = &MessageId::new().to_string()[24..];
    let (orders, invoices) = (format!("orders-{run}"), format!("invoices-{run}"));
    create_topic(&kafka, &orders, 4, 1).await?;
    create_topic(&kafka, &invoices, 4, 1).await?;

    // Upstream: orders published straight to Kafka with confirms.
    let publisher = Arc::new(KafkaPublisher::connect(kafka.clone()).await?);
    for order_id in 0..ORDERS {
        let order = Message::json(&OrderPlaced {
            order_id,
            cents: 1_000 + order_id,
        })?;
        publisher
            .publish(&orders, order.with_key(order_id.to_string()))
            .await?;
    }

    // Invoicing: consume, transform, and produce through the outbox, in one transaction.
    let relay = Relay::postgres(db.clone(), publisher, RelayConfig::builder().build()?).spawn();
    let inbox = Arc::new(PgIdempotencyStore::new(
        db.clone(),
        Duration::from_secs(86_400),
    ));
    let issue_invoice = {
        let (db, inbox, invoices) = (db.clone(), Arc::clone(&inbox), invoices.clone());
        typed_handler(move |order: OrderPlaced, message: IncomingMessage| {
            let (db, inbox, invoices) = (db.clone(), Arc::clone(&inbox), invoices.clone());
            async move {
                let invoice = InvoiceIssued {
                    order_id: order.order_id,
                    cents_with_tax: order.cents * 119 / 100,
                };
                let event = Message::json(&invoice)?.with_key(order.order_id.to_string());
                let mut tx = db.begin().await?;
                inbox.mark_done_in(&mut tx, &message).await?;
                Outbox::new().enqueue(&mut tx, &invoices, &event).await?;
                tx.commit().await?;
                Ok(())
            }
        })
    };
    let invoicing = Processor::builder("invoicing")
        .idempotency(inbox)
        .build()?
        .start(
            KafkaSubscriber::connect(kafka.clone(), &orders, "invoicing").await?,
            issue_invoice,
        );

    // Downstream: the mailer counts the invoices it receives per order.
    let mailed: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let mail = {
        let mailed = Arc::clone(&mailed);
        typed_handler(move |invoice: InvoiceIssued, _message: IncomingMessage| {
            *mailed
                .lock()
                .expect("not poisoned")
                .entry(invoice.order_id)
                .or_insert(0) += 1;
            async { Ok(()) }
        })
    };
    let mailer = Processor::builder("mailer")
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()?
        .start(
            KafkaSubscriber::connect(kafka, &invoices, "mailer").await?,
            mail,
        );

    for _ in 0..900 {
        if mailed.lock().expect("not poisoned").len() as u64 == ORDERS {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let invoiced = invoicing.shutdown().await?;
    let mails = mailer.shutdown().await?;
    relay.shutdown().await?;
    println!("invoicing: {invoiced:?}");
    println!("mailer: {mails:?}");
    let mailed = mailed.lock().expect("not poisoned");
    let twice = mailed.values().filter(|n| **n > 1).count();
    if mailed.len() as u64 != ORDERS || twice > 0 {
        return Err(format!(
            "{} of {ORDERS} orders invoiced, {twice} twice",
            mailed.len()
        )
        .into());
    }
    println!("ok: {ORDERS} orders → {ORDERS} invoices, none twice");
    Ok(())
}
