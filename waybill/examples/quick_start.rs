//! Quick start: an order and its `OrderPlaced` event commit in one PostgreSQL transaction, a
//! relay publishes the event to Kafka with confirms, and billing applies it exactly once.
//! Run against local servers: `cargo run -p waybill --features kafka,postgres --example quick_start`.
// README quick start begins
use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use waybill::kafka::{create_topic, KafkaConfig, KafkaPublisher, KafkaSubscriber};
use waybill::outbox::{postgres, Outbox, PgIdempotencyStore, Relay, RelayConfig};
use waybill::{typed_handler, IncomingMessage, Message, Processor};

#[derive(Serialize, Deserialize)]
struct OrderPlaced {
    order_id: i64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = sqlx::PgPool::connect("postgres://postgres@127.0.0.1/test").await?;
    postgres::migrate(&db).await?; // the outbox and inbox tables
    let charges = "CREATE TABLE IF NOT EXISTS charges (order_id bigint PRIMARY KEY)";
    sqlx::query(charges).execute(&db).await?;
    let kafka = KafkaConfig::builder("127.0.0.1:9092").build()?;
    create_topic(&kafka, "orders", 3, 1).await?;

    // Producer: the business write and the event commit together, or not at all.
    let mut tx = db.begin().await?;
    let event = Message::json(&OrderPlaced { order_id: 42 })?.with_key("42");
    Outbox::new().enqueue(&mut tx, "orders", &event).await?;
    tx.commit().await?;

    // Relay: publishes committed rows with confirms, in per-key order (or run it as a sidecar).
    let publisher = Arc::new(KafkaPublisher::connect(kafka.clone()).await?);
    let relay = Relay::postgres(db.clone(), publisher, RelayConfig::builder().build()?).spawn();

    // Consumer: the effect and the inbox marker commit together; duplicates are skipped.
    let retention = Duration::from_secs(86_400); // how long markers are kept
    let inbox = Arc::new(PgIdempotencyStore::new(db.clone(), retention));
    let marker = Arc::clone(&inbox);
    let handler = typed_handler(move |order: OrderPlaced, message: IncomingMessage| {
        let (db, marker) = (db.clone(), Arc::clone(&marker));
        async move {
            let mut tx = db.begin().await?;
            let charge = sqlx::query("INSERT INTO charges VALUES ($1) ON CONFLICT DO NOTHING");
            charge.bind(order.order_id).execute(&mut *tx).await?;
            marker.mark_done_in(&mut tx, &message).await?; // refused if another consumer took over
            tx.commit().await?;
            Ok(())
        }
    });
    let subscriber = KafkaSubscriber::connect(kafka, "orders", "billing").await?;
    let billing = Processor::for_subscriber(&subscriber) // named after its group, "billing"
        .idempotency(inbox)
        .build()?
        .start(subscriber, handler);

    while billing.counters().handled + billing.counters().duplicates_skipped == 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("billing: {:?}", billing.shutdown().await?);
    println!("relay: {:?}", relay.shutdown().await?);
    Ok(())
}
// README quick start ends
