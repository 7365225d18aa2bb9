//! The Processor with real effects on PostgreSQL: a batch handler in transactional mode
//! against the single-message handler in transactional mode, and that against the Processor
//! without an inbox. The broker is the in-memory one, so the figures are the database's.
//!
//! Every scenario writes one `effects` row per message (fresh database each), 1,000 keys,
//! `PerKey`, 128 slots:
//! - *no inbox*: `at_least_once_effects`, the handler inserts its row (one statement, one
//!   commit);
//! - *single-message, transactional*: claim in the inbox, then the row and the inbox marker
//!   in one transaction (`mark_done_in`), then the completion;
//! - *batch, transactional*: the same per message, with batches of up to 64: the claims of a
//!   batch in one statement, the batch's rows and markers in one transaction
//!   (`mark_all_done_in`), the completions in one statement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;
use waybill_core::{
    batch_handler_fn, handler_fn, BatchFailures, IncomingMessage, Processor, ProcessorBuilder,
    RunningProcessor,
};
use waybill_outbox::PgIdempotencyStore;

use crate::outbox_bench::BenchDb;
use crate::processor_bench::{filled_broker, KEYS};

const SLOTS: usize = 128;
const MAX_BATCH: usize = 64;
const RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Copy)]
enum Scenario {
    NoInbox,
    Single,
    Batch,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Self::NoInbox => "Processor, no inbox, effect row per message",
            Self::Single => "single-message handler, transactional inbox",
            Self::Batch => "batch handler (<=64), transactional inbox",
        }
    }
}

/// The effect of one message, as a row.
fn effect_of(m: &IncomingMessage) -> (Uuid, String) {
    (
        *m.message().id().as_uuid(),
        m.message().key().unwrap_or_default().to_owned(),
    )
}

async fn run_once(n: usize, scenario: Scenario) -> Duration {
    let db = BenchDb::create().await;
    sqlx::query(
        "CREATE TABLE effects (n bigserial PRIMARY KEY, message_id uuid NOT NULL, key text NOT NULL)",
    )
    .execute(&db.pool)
    .await
    .expect("create effects");
    let broker = filled_broker(n).await;
    let subscriber = broker.subscriber("bench", "bench").expect("subscriber");
    let store = PgIdempotencyStore::new(db.pool.clone(), RETENTION);
    let builder = Processor::builder("bench").concurrency(SLOTS);
    let started = Instant::now();
    let running = start(scenario, builder, subscriber, db.pool.clone(), store);
    while running.counters().handled < n as u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let totals = running.shutdown().await.expect("clean shutdown");
    assert_eq!(totals.handled, n as u64, "every message handled once");
    let effects: i64 = sqlx::query_scalar("SELECT count(*) FROM effects")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(effects, n as i64, "one effect per message");
    db.drop_db().await;
    elapsed
}

fn start(
    scenario: Scenario,
    builder: ProcessorBuilder,
    subscriber: waybill_core::MemorySubscriber,
    pool: PgPool,
    store: PgIdempotencyStore,
) -> RunningProcessor {
    match scenario {
        Scenario::NoInbox => builder
            .at_least_once_effects()
            .build()
            .expect("valid config")
            .start(
                subscriber,
                handler_fn(move |m: IncomingMessage| {
                    let pool = pool.clone();
                    async move {
                        let (id, key) = effect_of(&m);
                        sqlx::query("INSERT INTO effects (message_id, key) VALUES ($1, $2)")
                            .bind(id)
                            .bind(key)
                            .execute(&pool)
                            .await?;
                        Ok(())
                    }
                }),
            ),
        Scenario::Single => builder
            .idempotency(Arc::new(store.clone()))
            .build()
            .expect("valid config")
            .start(
                subscriber,
                handler_fn(move |m: IncomingMessage| {
                    let (pool, store) = (pool.clone(), store.clone());
                    async move {
                        let (id, key) = effect_of(&m);
                        let mut tx = pool.begin().await?;
                        sqlx::query("INSERT INTO effects (message_id, key) VALUES ($1, $2)")
                            .bind(id)
                            .bind(key)
                            .execute(&mut *tx)
                            .await?;
                        store.mark_done_in(&mut tx, &m).await?;
                        tx.commit().await?;
                        Ok(())
                    }
                }),
            ),
        Scenario::Batch => builder
            .idempotency(Arc::new(store.clone()))
            .max_batch(MAX_BATCH)
            .build()
            .expect("valid config")
            .start_batch(
                subscriber,
                batch_handler_fn(move |batch: Vec<IncomingMessage>| {
                    let (pool, store) = (pool.clone(), store.clone());
                    async move {
                        let (ids, keys): (Vec<Uuid>, Vec<String>) =
                            batch.iter().map(effect_of).unzip();
                        let mut tx = pool.begin().await?;
                        sqlx::query(
                            "INSERT INTO effects (message_id, key) \
                             SELECT * FROM UNNEST($1::uuid[], $2::text[])",
                        )
                        .bind(&ids)
                        .bind(&keys)
                        .execute(&mut *tx)
                        .await?;
                        store.mark_all_done_in(&mut tx, &batch).await?;
                        tx.commit().await?;
                        Ok(BatchFailures::none())
                    }
                }),
            ),
    }
}

/// Runs each scenario and prints msgs/s with the two ratios the batch handler is judged by.
pub async fn run(n: usize) {
    println!(
        "Processor with effects on PostgreSQL, in-memory broker, {n} messages, {KEYS} keys, \
         PerKey, {SLOTS} slots, pool of 8 connections (one run each, fresh database)"
    );
    let mut rates = Vec::new();
    for scenario in [Scenario::NoInbox, Scenario::Single, Scenario::Batch] {
        let rate = n as f64 / run_once(n, scenario).await.as_secs_f64();
        println!("{:<48} {:>10.0} msgs/s", scenario.label(), rate);
        rates.push(rate);
    }
    println!(
        "{:<48} {:>10.2}x",
        "single-message transactional / no inbox",
        rates[1] / rates[0]
    );
    println!(
        "{:<48} {:>10.2}x",
        "batch / single-message (both transactional)",
        rates[2] / rates[1]
    );
}
