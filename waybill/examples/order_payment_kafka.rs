//! Recipe: order → payment over Kafka, with the transactional outbox and the inbox.
//!
//! The order service places 200 orders for 10 customers; each order row and its
//! `OrderPlaced` event commit in one PostgreSQL transaction. A relay publishes the events to
//! Kafka with confirms, keyed by customer. The payment service charges each order in one
//! transaction with its inbox marker, so a redelivered event charges nothing twice, and checks
//! that each customer's orders arrive in the order they were placed. The program exits non-zero
//! if an order was charged twice, not at all, or out of order.
//!
//! `cargo run -p waybill --features kafka,postgres --example order_payment_kafka`
//! (`WAYBILL_RECIPE_DATABASE_URL` and `WAYBILL_KAFKA_BROKERS` for other servers).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use waybill::kafka::{create_topic, KafkaConfig, KafkaPublisher, KafkaSubscriber};
use waybill::outbox::{postgres, Outbox, PgIdempotencyStore, Relay, RelayConfig};
use waybill::{typed_handler, HandlerError, IncomingMessage, Message, MessageId, Processor};

#[derive(Serialize, Deserialize)]
struct OrderPlaced {
    customer: String,
    order_no: i64,
    cents: i64,
}

const ORDERS: i64 = 200;
const CUSTOMERS: i64 = 10;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db_url = std::env::var("WAYBILL_RECIPE_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let brokers =
        std::env::var("WAYBILL_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let db = sqlx::PgPool::connect(&db_url).await?;
    postgres::migrate(&db).await?;
    let run = &MessageId::new().to_string()[24..]; // fresh topic and tables per run
    let (topic, orders, payments) = (
        format!("orders-{run}"),
        format!("orders_{run}"),
        format!("payments_{run}"),
    );
    sqlx::query(&format!(
        "CREATE TABLE {orders} (customer text, order_no bigint, cents bigint)"
    ))
    .execute(&db)
    .await?;
    sqlx::query(&format!(
        "CREATE TABLE {payments} (customer text, order_no bigint, cents bigint, PRIMARY KEY (customer, order_no))"
    ))
    .execute(&db)
    .await?;
    let kafka = KafkaConfig::builder(brokers).build()?;
    create_topic(&kafka, &topic, 4, 1).await?;

    // Order service: the order row and its event commit together.
    let outbox = Outbox::new();
    for n in 0..ORDERS {
        let placed = OrderPlaced {
            customer: format!("customer-{}", n % CUSTOMERS),
            order_no: n,
            cents: 100 + n,
        };
        let mut tx = db.begin().await?;
        sqlx::query(&format!("INSERT INTO {orders} VALUES ($1, $2, $3)"))
            .bind(&placed.customer)
            .bind(placed.order_no)
            .bind(placed.cents)
            .execute(&mut *tx)
            .await?;
        let event = Message::json(&placed)?.with_key(placed.customer.clone());
        outbox.enqueue(&mut tx, &topic, &event).await?;
        tx.commit().await?;
    }
    let publisher = Arc::new(KafkaPublisher::connect(kafka.clone()).await?);
    let relay = Relay::postgres(db.clone(), publisher, RelayConfig::builder().build()?).spawn();

    // Payment service: the charge and the inbox marker commit together.
    let inbox = Arc::new(PgIdempotencyStore::new(
        db.clone(),
        Duration::from_secs(86_400),
    ));
    let charge = {
        let (db, inbox, payments) = (db.clone(), Arc::clone(&inbox), payments.clone());
        typed_handler(move |order: OrderPlaced, message: IncomingMessage| {
            let (db, inbox, payments) = (db.clone(), Arc::clone(&inbox), payments.clone());
            async move {
                let mut tx = db.begin().await?;
                let last: Option<i64> = sqlx::query_scalar(&format!(
                    "SELECT max(order_no) FROM {payments} WHERE customer = $1"
                ))
                .bind(&order.customer)
                .fetch_one(&mut *tx)
                .await?;
                if last.is_some_and(|last| last >= order.order_no) {
                    return Err(HandlerError::permanent(format!(
                        "{} overtaken",
                        order.order_no
                    )));
                }
                sqlx::query(&format!("INSERT INTO {payments} VALUES ($1, $2, $3)"))
                    .bind(&order.customer)
                    .bind(order.order_no)
                    .bind(order.cents)
                    .execute(&mut *tx)
                    .await?;
                inbox.mark_done_in(&mut tx, &message).await?;
                tx.commit().await?;
                Ok(())
            }
        })
    };
    let subscriber = KafkaSubscriber::connect(kafka, &topic, "payments").await?;
    let payment_service = Processor::builder("payments")
        .idempotency(inbox)
        .build()?
        .start(subscriber, charge);

    for _ in 0..600 {
        if payment_service.counters().handled >= ORDERS as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let totals = payment_service.shutdown().await?;
    let relayed = relay.shutdown().await?;
    let (paid, charged): (i64, i64) = sqlx::query_as(&format!(
        "SELECT count(*), coalesce(sum(cents), 0)::bigint FROM {payments}"
    ))
    .fetch_one(&db)
    .await?;
    let placed: i64 = sqlx::query_scalar(&format!(
        "SELECT coalesce(sum(cents), 0)::bigint FROM {orders}"
    ))
    .fetch_one(&db)
    .await?;
    for table in [&orders, &payments] {
        sqlx::query(&format!("DROP TABLE {table}"))
            .execute(&db)
            .await?;
    }
    println!("relay: {relayed:?}");
    println!("payments: {totals:?}");
    if paid != ORDERS || charged != placed || totals.dead_lettered != 0 {
        return Err(
            format!("{paid} of {ORDERS} orders paid, {charged} of {placed} cents charged").into(),
        );
    }
    println!("ok: {ORDERS} orders paid once each, in order per customer");
    Ok(())
}
