//! Idempotency stores side by side: claim + complete of new messages, and claims of duplicates
//! (already done), with 16 concurrent claimers, on the in-memory store, PostgreSQL, Redis, and
//! Redis layered over PostgreSQL, in one run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use waybill_core::{Claim, Completion, IdempotencyStore, InMemoryIdempotencyStore, MessageId};
use waybill_outbox::PgIdempotencyStore;
use waybill_redis::{LayeredIdempotencyStore, RedisIdempotencyStore, RedisStoreConfig};

use crate::outbox_bench::BenchDb;

const CLAIMERS: usize = 16;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Runs the store comparison with `messages` messages per store.
pub async fn run(messages: usize) {
    let redis_url =
        std::env::var("WAYBILL_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let redis = || async {
        let config = RedisStoreConfig::builder(redis_url.clone())
            .key_prefix(format!("wb-bench-{}", MessageId::new()))
            .retention(Duration::from_secs(600))
            .build()
            .expect("valid Redis settings");
        RedisIdempotencyStore::connect(config)
            .await
            .expect("Redis reachable (scripts/brokers start redis)")
    };
    let db = BenchDb::create().await;
    let postgres = Arc::new(PgIdempotencyStore::new(db.pool.clone(), DAY));
    let stores: Vec<(&str, Arc<dyn IdempotencyStore>)> = vec![
        (
            "in-memory",
            Arc::new(InMemoryIdempotencyStore::new(DAY, messages.max(1))),
        ),
        ("PostgreSQL inbox", postgres.clone()),
        ("Redis", Arc::new(redis().await)),
        (
            "Redis layered over PostgreSQL",
            Arc::new(LayeredIdempotencyStore::new(redis().await, postgres)),
        ),
    ];
    println!(
        "idempotency stores, {messages} messages, {CLAIMERS} concurrent claimers \
         (claim + complete of new messages; claim of duplicates)"
    );
    let mut results = Vec::new();
    for (name, store) in stores {
        let ids: Arc<Vec<MessageId>> = Arc::new((0..messages).map(|_| MessageId::new()).collect());
        let new = rate(messages, || first_copies(store.clone(), ids.clone())).await;
        let duplicates = rate(messages, || duplicate_copies(store.clone(), ids.clone())).await;
        results.push((name, new, duplicates));
    }
    let (_, pg_new, pg_duplicates) = results[1];
    for (name, new, duplicates) in results {
        println!(
            "  {name:<30} new {new:>9.0}/s ({:>6.2}x PostgreSQL)   duplicates {duplicates:>9.0}/s \
             ({:>6.2}x PostgreSQL)",
            new / pg_new,
            duplicates / pg_duplicates
        );
    }
    db.drop_db().await;
}

async fn rate<F, Fut>(messages: usize, run: F) -> f64
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    run().await;
    messages as f64 / started.elapsed().as_secs_f64()
}

/// Each claimer takes its share of the ids: claim, then complete.
async fn first_copies(store: Arc<dyn IdempotencyStore>, ids: Arc<Vec<MessageId>>) {
    split(ids, move |id| {
        let store = store.clone();
        async move {
            match store.claim("bench", id, Duration::from_secs(30)).await {
                Ok(Claim::Acquired(token)) => store
                    .complete("bench", id, token, Completion::Handled)
                    .await
                    .expect("complete"),
                other => panic!("a new message must be acquired: {other:?}"),
            }
        }
    })
    .await;
}

/// Each claimer claims its share again: every answer must be `AlreadyDone`.
async fn duplicate_copies(store: Arc<dyn IdempotencyStore>, ids: Arc<Vec<MessageId>>) {
    split(ids, move |id| {
        let store = store.clone();
        async move {
            let claim = store.claim("bench", id, Duration::from_secs(30)).await;
            assert!(matches!(claim, Ok(Claim::AlreadyDone)), "{claim:?}");
        }
    })
    .await;
}

async fn split<F, Fut>(ids: Arc<Vec<MessageId>>, each: F)
where
    F: Fn(MessageId) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    join_all((0..CLAIMERS).map(|claimer| {
        let (ids, each) = (ids.clone(), each.clone());
        tokio::spawn(async move {
            for id in ids.iter().skip(claimer).step_by(CLAIMERS) {
                each(*id).await;
            }
        })
    }))
    .await
    .into_iter()
    .for_each(|r| r.expect("claimer"));
}
