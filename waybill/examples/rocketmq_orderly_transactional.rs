//! Recipe: RocketMQ orderly messages per order id, sent as transactional messages.
//!
//! Each of 20 orders goes through `created → paid → shipped`. Every step is one RocketMQ
//! transactional send: the half message is stored, then the local PostgreSQL transaction
//! records the step with the message id, and only its commit makes the message visible. If
//! the process died in between, the broker would ask back and [`StepRecorded`] would answer
//! from the database. Messages are keyed by order id, so one order's steps go to one queue,
//! and the `PerKey` Processor handles them one at a time: the consumer checks that every order
//! saw its steps in order and exits non-zero if one did not.
//!
//! `cargo run -p waybill --features rocketmq,postgres --example rocketmq_orderly_transactional`
//! (`WAYBILL_RECIPE_DATABASE_URL` and `WAYBILL_ROCKETMQ_NAMESRV` for other servers).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use waybill::rocketmq::{
    RocketAdmin, RocketConfig, RocketSubscriber, RocketTransactionalProducer, TransactionCheck,
    TransactionState,
};
use waybill::{
    typed_handler, HandlerError, InMemoryIdempotencyStore, IncomingMessage, Message, MessageId,
    Processor,
};

const STEPS: [&str; 3] = ["created", "paid", "shipped"];
const ORDERS: u32 = 20;

#[derive(Serialize, Deserialize)]
struct OrderStep {
    order_id: u32,
    step: String,
}

/// The broker's check-back: the step committed when its row exists.
struct StepRecorded {
    db: sqlx::PgPool,
    table: String,
}

#[async_trait]
impl TransactionCheck for StepRecorded {
    async fn check(&self, message: &Message) -> TransactionState {
        let query = format!("SELECT count(*) FROM {} WHERE message_id = $1", self.table);
        match sqlx::query_scalar::<_, i64>(&query)
            .bind(message.id().as_uuid())
            .fetch_one(&self.db)
            .await
        {
            Ok(1) => TransactionState::Commit,
            Ok(_) => TransactionState::Rollback,
            Err(_) => TransactionState::Unknown, // the broker asks again later
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db_url = std::env::var("WAYBILL_RECIPE_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name_server =
        std::env::var("WAYBILL_ROCKETMQ_NAMESRV").unwrap_or_else(|_| "127.0.0.1:9876".into());
    let db = sqlx::PgPool::connect(&db_url).await?;
    let run = &MessageId::new().to_string()[24..];
    let (topic, table) = (format!("order-steps-{run}"), format!("order_steps_{run}"));
    sqlx::query(&format!(
        "CREATE TABLE {table} (message_id uuid PRIMARY KEY, order_id int, step text)"
    ))
    .execute(&db)
    .await?;
    let config = RocketConfig::builder(name_server.clone())
        .queues_per_topic(4)
        .build()?;
    let admin = RocketAdmin::connect(&config).await?;
    admin.create_topic(&topic).await?;
    admin.close().await;

    // The consumer first, so that it reads the topic from its start.
    let seen: Arc<Mutex<HashMap<u32, Vec<String>>>> = Arc::default();
    let record_step = {
        let seen = Arc::clone(&seen);
        typed_handler(move |step: OrderStep, _message: IncomingMessage| {
            let mut seen = seen.lock().expect("not poisoned");
            let steps = seen.entry(step.order_id).or_default();
            let result = if STEPS.get(steps.len()) == Some(&step.step.as_str()) {
                steps.push(step.step);
                Ok(())
            } else {
                Err(HandlerError::permanent(format!(
                    "order {} got {} after {steps:?}",
                    step.order_id, step.step
                )))
            };
            async move { result }
        })
    };
    let subscriber =
        RocketSubscriber::connect(config.clone(), &topic, &format!("fulfilment_{run}")).await?;
    let fulfilment = Processor::builder(format!("fulfilment_{run}"))
        .idempotency(Arc::new(InMemoryIdempotencyStore::default()))
        .build()?
        .start(subscriber, record_step);

    // The producer: each step is a half message, made visible by the local commit.
    let producer_config = RocketConfig::builder(name_server)
        .producer_group(format!("order_steps_{run}"))
        .build()?;
    let check = StepRecorded {
        db: db.clone(),
        table: table.clone(),
    };
    let producer = RocketTransactionalProducer::connect(producer_config, check).await?;
    for step in STEPS {
        for order_id in 0..ORDERS {
            let message = Message::json(&OrderStep {
                order_id,
                step: step.into(),
            })?
            .with_key(order_id.to_string());
            let id = message.id();
            let (db, table) = (db.clone(), table.clone());
            producer
                .send(&topic, message, move || async move {
                    let mut tx = db.begin().await?;
                    sqlx::query(&format!("INSERT INTO {table} VALUES ($1, $2, $3)"))
                        .bind(id.as_uuid())
                        .bind(order_id as i32)
                        .bind(step)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await
                })
                .await?;
        }
    }

    for _ in 0..600 {
        if fulfilment.counters().handled + fulfilment.counters().dead_lettered
            >= u64::from(ORDERS) * 3
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let totals = fulfilment.shutdown().await?;
    producer.close().await;
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&db)
        .await?;
    println!("fulfilment: {totals:?}");
    let complete = seen
        .lock()
        .expect("not poisoned")
        .values()
        .filter(|s| s.len() == STEPS.len())
        .count();
    if complete != ORDERS as usize || totals.dead_lettered != 0 {
        return Err(
            format!("{complete} of {ORDERS} orders saw created → paid → shipped in order").into(),
        );
    }
    println!("ok: {ORDERS} orders, each step committed with its row and handled in order");
    Ok(())
}
