//! Batch handlers over the PostgreSQL inbox in transactional mode: each batch writes its
//! effects and their inbox markers in one transaction (`mark_all_done_in`), and the Processor
//! claims and completes the batch's messages in shared statements (`claim_many`,
//! `complete_many`). The broker is the in-memory one: what is under test is the database, with
//! the `effects` table of the consumer-fault tests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use waybill_core::{
    batch_handler_fn, BatchFailures, BatchHandler, Claim, ClaimToken, Completion, HandlerError,
    IdempotencyStore, IncomingMessage, MemoryBroker, Message, MessageId, Origin, Processor,
    Publisher, RetryPolicy, RunningProcessor,
};
use waybill_outbox::{OutboxError, PgIdempotencyStore};

use super::effects::EffectsDb;

const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Header naming how the handler treats a message: `fail` (named as failed, permanently) or
/// `poison` (the whole batch fails while it is in it; alone, it fails permanently).
const HOW: &str = "batch-test";

/// The batch handler under test: one transaction per batch with every effect and the batch's
/// markers; it records the size of each batch it commits.
fn effects_handler(
    pool: PgPool,
    store: PgIdempotencyStore,
    sizes: Arc<Mutex<Vec<usize>>>,
) -> impl BatchHandler {
    batch_handler_fn(move |batch: Vec<IncomingMessage>| {
        let (pool, store, sizes) = (pool.clone(), store.clone(), Arc::clone(&sizes));
        async move {
            let how = |m: &IncomingMessage| m.message().headers().get(HOW).map(str::to_owned);
            if batch.len() > 1 && batch.iter().any(|m| how(m).as_deref() == Some("poison")) {
                return Err(HandlerError::transient("a poisoned batch rolls back"));
            }
            let mut failures = BatchFailures::none();
            let mut done = Vec::with_capacity(batch.len());
            for (i, m) in batch.iter().enumerate() {
                match how(m).as_deref() {
                    Some("fail" | "poison") => failures.fail(i, HandlerError::permanent("refused")),
                    _ => done.push(m.clone()),
                }
            }
            let mut tx = pool.begin().await?;
            for m in &done {
                let seq: i64 = std::str::from_utf8(m.message().payload())?.parse()?;
                sqlx::query(
                    "INSERT INTO effects (message_id, key, seq, consumer) \
                     VALUES ($1, $2, $3, 'batch')",
                )
                .bind(m.message().id().as_uuid())
                .bind(m.message().key().unwrap_or_default())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
            store.mark_all_done_in(&mut tx, &done).await?;
            tx.commit().await?;
            sizes.lock().unwrap().push(done.len());
            Ok(failures)
        }
    })
}

/// `n` messages over `keys` keys, payload = their sequence number within the run.
fn keyed(n: usize, keys: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message::new(i.to_string()).with_key(format!("k{}", i % keys)))
        .collect()
}

async fn publish_all(broker: &MemoryBroker, messages: Vec<Message>) {
    let publisher = broker.publisher();
    for m in messages {
        publisher
            .publish("orders", m)
            .await
            .expect("in-memory publish");
    }
}

fn start(
    broker: &MemoryBroker,
    db: &EffectsDb,
    store: &PgIdempotencyStore,
    sizes: &Arc<Mutex<Vec<usize>>>,
) -> RunningProcessor {
    let subscriber = broker.subscriber("orders", "billing").expect("subscriber");
    Processor::builder("billing")
        .idempotency(Arc::new(store.clone()))
        .concurrency(128)
        .max_batch(32)
        .retry(
            RetryPolicy::builder()
                .max_attempts(2)
                .min_delay(Duration::from_millis(10))
                .build()
                .expect("valid policy"),
        )
        .build()
        .expect("valid config")
        .start_batch(
            subscriber,
            effects_handler(db.pool().clone(), store.clone(), Arc::clone(sizes)),
        )
}

async fn until_settled(running: &RunningProcessor, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let c = running.counters();
        if c.handled + c.dead_lettered + c.duplicates_skipped >= n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every message settled within 60 s: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn a_batch_handler_commits_each_effect_once_with_its_marker_in_key_order() {
    let db = EffectsDb::create().await;
    let store = PgIdempotencyStore::new(db.pool().clone(), RETENTION);
    let broker = MemoryBroker::new();
    let n = 3_000;
    publish_all(&broker, keyed(n, 200)).await;
    // The same message (same id) three times: the copies are claimed in one round, or later.
    let twice = Message::new("100000").with_key("dup");
    for _ in 0..3 {
        broker
            .publisher()
            .publish("orders", twice.clone())
            .await
            .expect("publish");
    }
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let running = start(&broker, &db, &store, &sizes);
    until_settled(&running, n as u64 + 3).await;
    let totals = running.shutdown().await.expect("clean shutdown");
    assert_eq!(totals.handled, n as u64 + 1, "{totals:?}");
    assert_eq!(
        totals.duplicates_skipped, 2,
        "the two copies skipped: {totals:?}"
    );
    let effects = db.count().await;
    let distinct = db
        .scalar("SELECT count(DISTINCT message_id) FROM effects")
        .await;
    assert_eq!(
        (effects, distinct),
        (n as i64 + 1, n as i64 + 1),
        "each effect once"
    );
    let markers = db
        .scalar("SELECT count(*) FROM waybill_inbox WHERE done AND NOT dead")
        .await;
    assert_eq!(markers, n as i64 + 1, "a marker per effect");
    assert_eq!(db.keys_out_of_order_from(0).await, Vec::<String>::new());
    let sizes = sizes.lock().unwrap().clone();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    assert!(
        largest > 1 && sizes.len() < n / 2,
        "messages were handled in batches: {} batches for {} messages, largest {largest}",
        sizes.len(),
        n + 1
    );
    db.drop_db().await;
}

pub async fn a_failed_message_fails_alone_and_a_failed_batch_is_retried_one_by_one() {
    let db = EffectsDb::create().await;
    let store = PgIdempotencyStore::new(db.pool().clone(), RETENTION);
    let broker = MemoryBroker::new();
    let n = 600;
    let mut messages = keyed(n, 100);
    for i in [5, 250] {
        messages[i] = messages[i].clone().with_header(HOW, "fail");
    }
    for i in [100, 400] {
        messages[i] = messages[i].clone().with_header(HOW, "poison");
    }
    publish_all(&broker, messages).await;
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let running = start(&broker, &db, &store, &sizes);
    until_settled(&running, n as u64).await;
    let totals = running.shutdown().await.expect("clean shutdown");
    assert_eq!(totals.dead_lettered, 4, "the four bad messages: {totals:?}");
    assert_eq!(totals.handled, n as u64 - 4, "{totals:?}");
    let effects = db.count().await;
    let distinct = db
        .scalar("SELECT count(DISTINCT message_id) FROM effects")
        .await;
    assert_eq!(
        (effects, distinct),
        (n as i64 - 4, n as i64 - 4),
        "each good effect once"
    );
    let bad = db
        .scalar("SELECT count(*) FROM effects WHERE seq IN (5, 250, 100, 400)")
        .await;
    assert_eq!(bad, 0, "no effect of a failed message");
    let dead = broker.messages(&MemoryBroker::dead_letter_topic("orders"));
    assert_eq!(dead.len(), 4, "four dead letters");
    let dead_marks = db.dead_lettered_marks().await;
    assert_eq!(dead_marks, 4, "their copies are skipped later");
    assert_eq!(db.keys_out_of_order_from(0).await, Vec::<String>::new());
    db.drop_db().await;
}

pub async fn a_lapsed_claim_rolls_back_the_whole_batch_and_claims_are_answered_per_id() {
    let db = EffectsDb::create().await;
    let store = PgIdempotencyStore::new(db.pool().clone(), RETENTION);
    let ids: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
    // A repeated id: the second copy waits for the first.
    let asked = [ids.clone(), vec![ids[0]]].concat();
    let claims = store
        .claim_many("billing", &asked, Duration::from_millis(300))
        .await;
    let tokens: Vec<ClaimToken> = claims[..5]
        .iter()
        .map(|c| match c {
            Ok(Claim::Acquired(token)) => *token,
            other => panic!("a new id is acquired: {other:?}"),
        })
        .collect();
    assert!(
        matches!(claims[5], Ok(Claim::InFlight { .. })),
        "the repeat waits: {:?}",
        claims[5]
    );
    // The first two are finished, one of them dead-lettered; a third is claimed again by
    // another consumer once the lease lapsed.
    let finished = store
        .complete_many(
            "billing",
            &[
                (ids[0], tokens[0], Completion::Handled),
                (ids[1], tokens[1], Completion::DeadLettered),
            ],
        )
        .await;
    assert!(finished.iter().all(Result::is_ok), "{finished:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken_over = store
        .claim("billing", ids[2], Duration::from_secs(60))
        .await;
    assert!(
        matches!(taken_over, Ok(Claim::Acquired(_))),
        "{taken_over:?}"
    );
    let again = store
        .claim_many("billing", &ids[..3], Duration::from_secs(60))
        .await;
    assert!(matches!(again[0], Ok(Claim::AlreadyDone)), "{:?}", again[0]);
    assert!(
        matches!(again[1], Ok(Claim::DeadLettered)),
        "{:?}",
        again[1]
    );
    assert!(
        matches!(again[2], Ok(Claim::InFlight { .. })),
        "{:?}",
        again[2]
    );
    // The old holder's batch (ids 2..5) with one lapsed claim: nothing of it commits.
    let origin = Origin {
        topic: Arc::from("orders"),
        group: Arc::from("billing"),
        partition: None,
        offset: None,
    };
    let batch: Vec<IncomingMessage> = (2..5)
        .map(|i| {
            let message = Message::from_parts(
                ids[i],
                None,
                i.to_string().into(),
                Default::default(),
                std::time::SystemTime::now(),
            );
            let claim = waybill_core::HeldClaim::new(Arc::from("billing"), ids[i], tokens[i]);
            IncomingMessage::new(message, origin.clone(), false).with_claim(claim)
        })
        .collect();
    let mut tx = db.pool().begin().await.expect("begin");
    sqlx::query("INSERT INTO effects (message_id, key, seq, consumer) VALUES ($1, 'k', 1, 'old')")
        .bind(ids[3].as_uuid())
        .execute(&mut *tx)
        .await
        .expect("effect");
    let refused = store.mark_all_done_in(&mut tx, &batch).await;
    assert!(
        matches!(refused, Err(OutboxError::ClaimLost(id)) if id == ids[2]),
        "{refused:?}"
    );
    let _ = tx.commit().await;
    assert_eq!(db.count().await, 0, "rolled back");
    let lapsed = db
        .scalar("SELECT count(*) FROM waybill_inbox WHERE done")
        .await;
    assert_eq!(lapsed, 2, "only the two completed before are done");
    db.drop_db().await;
}
