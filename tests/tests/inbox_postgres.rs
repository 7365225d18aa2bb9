//! The SQL idempotency store on a real PostgreSQL, and the outbox relay killed between confirm
//! and delete: duplicates reach the broker, the inbox drops them.

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use support::postgres::TestDb;
use waybill_core::{
    handler_fn, BrokerError, Claim, HandlerError, IdempotencyStore, IncomingMessage, MemoryBroker,
    Message, MessageId, Ordering, Processor, PublishError, Publisher, Receipt,
};
use waybill_outbox::{PgIdempotencyStore, PgOutbox, PgRelay, RelayConfig};

const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn claim_complete_release_and_lease_takeover() {
    let db = TestDb::migrated().await;
    let store = PgIdempotencyStore::new(db.pool.clone(), DAY);
    let id = MessageId::new();
    let lease = Duration::from_millis(500);
    assert_eq!(store.claim("g", id, lease).await.unwrap(), Claim::Acquired);
    assert!(matches!(
        store.claim("g", id, lease).await.unwrap(),
        Claim::InFlight { .. }
    ));
    assert_eq!(
        store.claim("other", id, lease).await.unwrap(),
        Claim::Acquired,
        "groups are independent"
    );
    store.release("g", id).await.unwrap();
    assert_eq!(store.claim("g", id, lease).await.unwrap(), Claim::Acquired);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        store.claim("g", id, lease).await.unwrap(),
        Claim::Acquired,
        "a crashed holder's lease lapses"
    );
    store.complete("g", id).await.unwrap();
    assert_eq!(
        store.claim("g", id, lease).await.unwrap(),
        Claim::AlreadyDone
    );
    store.release("g", id).await.unwrap();
    assert_eq!(
        store.claim("g", id, lease).await.unwrap(),
        Claim::AlreadyDone,
        "release keeps completions"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn the_marker_commits_and_rolls_back_with_the_business_change() {
    let db = TestDb::migrated().await;
    sqlx::query("CREATE TABLE applied (message_id uuid PRIMARY KEY)")
        .execute(&db.pool)
        .await
        .unwrap();
    let store = PgIdempotencyStore::new(db.pool.clone(), DAY);
    let id = MessageId::new();

    assert_eq!(store.claim("g", id, DAY).await.unwrap(), Claim::Acquired);
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO applied VALUES ($1)")
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap();
    store.mark_done_in(&mut tx, "g", id).await.unwrap();
    tx.rollback().await.unwrap();
    store.release("g", id).await.unwrap();
    assert_eq!(
        store.claim("g", id, DAY).await.unwrap(),
        Claim::Acquired,
        "rolled back: not done"
    );

    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO applied VALUES ($1)")
        .bind(id.as_uuid())
        .execute(&mut *tx)
        .await
        .unwrap();
    store.mark_done_in(&mut tx, "g", id).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.claim("g", id, DAY).await.unwrap(), Claim::AlreadyDone);
    db.drop_db().await;
}

/// Confirms, then lingers before returning: a relay aborted now has published but not deleted.
struct SlowConfirm(Arc<dyn Publisher>);

#[async_trait]
impl Publisher for SlowConfirm {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        self.0.publish(topic, message).await
    }
    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        let results = self.0.publish_batch(topic, messages).await;
        tokio::time::sleep(Duration::from_millis(15)).await;
        results
    }
    async fn close(&self) -> Result<(), BrokerError> {
        self.0.close().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_aborted_between_confirm_and_delete_loses_nothing_and_duplicates_no_effect() {
    const MESSAGES: usize = 5_000;
    let db = TestDb::migrated().await;
    sqlx::query(
        "CREATE TABLE applied (n bigserial, message_id uuid PRIMARY KEY, key text, seq bigint)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let outbox = PgOutbox::new();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Message> = chunk
            .iter()
            .map(|i| {
                Message::new(i.to_string())
                    .with_key(format!("k{}", i % 50))
                    .with_header("seq", i.to_string())
            })
            .collect();
        let mut tx = db.pool.begin().await.unwrap();
        outbox
            .enqueue_batch(&mut tx, "orders", &batch)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    let broker = MemoryBroker::new();
    let subscriber = broker.subscriber("orders", "billing").unwrap();
    let publisher: Arc<dyn Publisher> = Arc::new(SlowConfirm(Arc::new(broker.publisher())));
    let config = RelayConfig::builder().batch_size(200).build().unwrap();
    let mut kills = 0;
    while kills < 10 {
        let relay = PgRelay::new(db.pool.clone(), Arc::clone(&publisher), config.clone());
        let task = tokio::spawn(async move { relay.run(std::future::pending()).await });
        tokio::time::sleep(Duration::from_millis(25 + 7 * kills)).await;
        task.abort();
        let _ = task.await;
        kills += 1;
    }
    let relay = PgRelay::new(db.pool.clone(), Arc::clone(&publisher), config);
    // Rows wait for every older transaction on the server (tests run in parallel): retry.
    let mut left: i64 = -1;
    for _ in 0..400 {
        while relay.relay_once().await.unwrap() > 0 {}
        left = sqlx::query_scalar("SELECT count(*) FROM waybill_outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(left, 0, "everything relayed");
    let published = broker.messages("orders").len();
    assert!(published >= MESSAGES);

    let store = Arc::new(PgIdempotencyStore::new(db.pool.clone(), DAY));
    let handler = {
        let (pool, store) = (db.pool.clone(), Arc::clone(&store));
        handler_fn(move |m: IncomingMessage| {
            let (pool, store) = (pool.clone(), Arc::clone(&store));
            async move {
                let seq: i64 = m.message().headers().get("seq").unwrap().parse().unwrap();
                let mut tx = pool.begin().await.map_err(HandlerError::transient)?;
                sqlx::query("INSERT INTO applied (message_id, key, seq) VALUES ($1, $2, $3)")
                    .bind(m.message().id().as_uuid())
                    .bind(m.message().key())
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        HandlerError::permanent(format!("second effect attempted: {e}"))
                    })?;
                store
                    .mark_done_in(&mut tx, "billing", m.message().id())
                    .await
                    .map_err(HandlerError::transient)?;
                tx.commit().await.map_err(HandlerError::transient)?;
                Ok(())
            }
        })
    };
    let running = Processor::builder("billing")
        .ordering(Ordering::PerKey)
        .concurrency(16)
        .idempotency(store)
        .build()
        .unwrap()
        .start(subscriber, handler);
    for _ in 0..600 {
        let c = running.counters();
        if c.handled + c.duplicates_skipped >= published as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let totals = running.shutdown().await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM applied")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    println!(
        "{MESSAGES} enqueued, {kills} relay aborts, {published} published ({} duplicates), {totals:?}",
        published - MESSAGES
    );
    assert_eq!(
        applied as usize, MESSAGES,
        "every message applied exactly once"
    );
    assert_eq!(
        totals.failed_attempts, 0,
        "no second effect was ever attempted"
    );
    assert_eq!(totals.duplicates_skipped as usize, published - MESSAGES);
    let out_of_order: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT seq < lag(seq) OVER (PARTITION BY key ORDER BY n) AS back FROM applied) t WHERE back",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(out_of_order, 0, "per-key order at the consumer");
    db.drop_db().await;
}
