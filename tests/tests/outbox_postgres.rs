//! The PostgreSQL outbox and relay against a real server: transactions, order, poison rows.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::postgres::TestDb;
use waybill_core::{MemoryBroker, Message, PublishFault};
use waybill_outbox::{OutboxError, PgOutbox, PgRelay, RelayConfig};

fn relay(db: &TestDb, broker: &MemoryBroker) -> PgRelay {
    let config = RelayConfig::builder()
        .batch_size(100)
        .max_attempts(3)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .unwrap();
    PgRelay::new(db.pool.clone(), Arc::new(broker.publisher()), config)
}

async fn drain(relay: &PgRelay) {
    while relay.relay_once().await.unwrap() > 0 {}
}

/// Relays until `done` holds. Rows become relayable only once every older transaction on the
/// *server* finished (xids are cluster-wide), so tests running in parallel delay each other.
async fn drain_until(relay: &PgRelay, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        drain(relay).await;
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the relay did not publish what it should within 10 s");
}

#[tokio::test]
async fn a_rolled_back_enqueue_publishes_nothing_and_a_committed_one_publishes_once() {
    let db = TestDb::migrated().await;
    let broker = MemoryBroker::new();
    let outbox = PgOutbox::new();

    let mut tx = db.pool.begin().await.unwrap();
    outbox
        .enqueue(&mut tx, "orders", &Message::new("rolled back"))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let committed = Message::new("committed")
        .with_key("o-1")
        .with_header("h", "v");
    let mut tx = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut tx, "orders", &committed).await.unwrap();
    tx.commit().await.unwrap();

    let relay = relay(&db, &broker);
    drain_until(&relay, || !broker.messages("orders").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drain(&relay).await;
    let published = broker.messages("orders");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].id(), committed.id());
    assert_eq!(published[0].key(), Some("o-1"));
    assert_eq!(published[0].headers().get("h"), Some("v"));
    assert_eq!(published[0].payload().as_ref(), b"committed");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM waybill_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "confirmed rows are deleted");
    db.drop_db().await;
}

#[tokio::test]
async fn a_slow_transaction_holds_back_later_rows_of_its_key() {
    let db = TestDb::migrated().await;
    let broker = MemoryBroker::new();
    let outbox = PgOutbox::new();
    let first = Message::new("K#1").with_key("K");
    let second = Message::new("K#2").with_key("K");

    let mut slow = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut slow, "orders", &first).await.unwrap();
    let mut fast = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut fast, "orders", &second).await.unwrap();
    fast.commit().await.unwrap();

    let relay = relay(&db, &broker);
    drain(&relay).await;
    assert!(
        broker.messages("orders").is_empty(),
        "K#2 must wait while an older transaction is open"
    );
    slow.commit().await.unwrap();
    drain_until(&relay, || broker.messages("orders").len() == 2).await;
    let order: Vec<_> = broker.messages("orders").iter().map(|m| m.id()).collect();
    assert_eq!(order, vec![first.id(), second.id()]);
    db.drop_db().await;
}

#[tokio::test]
async fn per_key_order_holds_across_batches_and_keys_interleave() {
    let db = TestDb::migrated().await;
    let broker = MemoryBroker::new();
    let outbox = PgOutbox::new();
    let messages: Vec<Message> = (0..1_000)
        .map(|i| {
            Message::new(i.to_string())
                .with_key(format!("k{}", i % 7))
                .with_header("seq", i.to_string())
        })
        .collect();
    for chunk in messages.chunks(250) {
        let mut tx = db.pool.begin().await.unwrap();
        outbox
            .enqueue_batch(&mut tx, "orders", chunk)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    let relay = relay(&db, &broker);
    drain_until(&relay, || broker.messages("orders").len() >= 1_000).await;
    let published = broker.messages("orders");
    assert_eq!(published.len(), 1_000);
    for k in 0..7 {
        let seqs: Vec<u64> = published
            .iter()
            .filter(|m| m.key() == Some(&format!("k{k}")))
            .map(|m| m.headers().get("seq").unwrap().parse().unwrap())
            .collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "key k{k} out of order"
        );
    }
    assert_eq!(relay.stats().published, 1_000);
    db.drop_db().await;
}

#[tokio::test]
async fn a_poison_row_goes_dead_while_other_keys_flow() {
    let db = TestDb::migrated().await;
    let broker = MemoryBroker::new();
    broker.faults().on_publish(|ctx| {
        ctx.message
            .headers()
            .contains("poison")
            .then_some(PublishFault::NotSent)
    });
    let outbox = PgOutbox::new();
    let mut tx = db.pool.begin().await.unwrap();
    let poison = Message::new("bad")
        .with_key("bad-key")
        .with_header("poison", "1");
    let behind = Message::new("after the poison").with_key("bad-key");
    outbox.enqueue(&mut tx, "orders", &poison).await.unwrap();
    outbox.enqueue(&mut tx, "orders", &behind).await.unwrap();
    for i in 0..20 {
        outbox
            .enqueue(
                &mut tx,
                "orders",
                &Message::new(i.to_string()).with_key(format!("good-{i}")),
            )
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();

    let relay = relay(&db, &broker);
    drain(&relay).await;
    assert_eq!(
        broker.messages("orders").len(),
        20,
        "good keys are not held back"
    );
    assert!(
        !broker
            .messages("orders")
            .iter()
            .any(|m| m.id() == behind.id()),
        "the poison's key waits"
    );
    for _ in 0..50 {
        if relay.stats().dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        drain(&relay).await;
    }
    let (dead, attempts, error): (bool, i32, Option<String>) = sqlx::query_as(
        "SELECT dead, attempts, last_error FROM waybill_outbox WHERE message_id = $1",
    )
    .bind(poison.id().as_uuid())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(dead, "dead after the attempt cap");
    assert_eq!(attempts, 3);
    assert!(error.unwrap().contains("injected fault"));
    drain_until(&relay, || {
        broker
            .messages("orders")
            .iter()
            .any(|m| m.id() == behind.id())
    })
    .await;
    assert!(
        broker
            .messages("orders")
            .iter()
            .any(|m| m.id() == behind.id()),
        "once the poison is dead its key moves on"
    );
    db.drop_db().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let db = TestDb::empty().await;
    let outbox = PgOutbox::with_max_message_bytes(1024);
    let mut tx = db.pool.begin().await.unwrap();
    let err = outbox
        .enqueue(&mut tx, "orders", &Message::new("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotMigrated(_)), "{err}");
    assert!(err.to_string().contains("migrations"), "{err}");
    drop(tx);

    PgOutbox::migrate(&db.pool).await.unwrap();
    PgOutbox::migrate(&db.pool)
        .await
        .expect("migrations are idempotent");
    let mut tx = db.pool.begin().await.unwrap();
    let big = Message::new(vec![0u8; 2048]);
    let err = outbox.enqueue(&mut tx, "orders", &big).await.unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::Oversized {
                size: 2048,
                limit: 1024
            }
        ),
        "{err}"
    );
    let err = outbox
        .enqueue(&mut tx, "", &Message::new("x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("topic"), "{err}");
    let kept = Message::new("kept");
    outbox.enqueue(&mut tx, "orders", &kept).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = db.pool.begin().await.unwrap();
    let err = outbox.enqueue(&mut tx, "orders", &kept).await.unwrap_err();
    assert!(
        matches!(err, OutboxError::DuplicateId(id) if id == kept.id()),
        "{err}"
    );
    drop(tx);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM waybill_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(count, 1, "the accepted message is still there");

    // An unreachable database and a missing one, as the relay meets them.
    let broker = MemoryBroker::new();
    let lazy = |url: &str| {
        sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(url)
            .unwrap()
    };
    let down = lazy(&db.url.replace("127.0.0.1:5432", "127.0.0.1:1"));
    let relay_down = PgRelay::new(down, Arc::new(broker.publisher()), RelayConfig::default());
    let err = relay_down.relay_once().await.unwrap_err();
    assert!(matches!(err, OutboxError::Unreachable(_)), "{err}");
    assert!(err.is_transient());
    let missing = lazy(&(db.url.rsplit_once('/').unwrap().0.to_owned() + "/wb_no_such_db"));
    let relay_missing = PgRelay::new(
        missing,
        Arc::new(broker.publisher()),
        RelayConfig::default(),
    );
    let err = relay_missing.relay_once().await.unwrap_err();
    assert!(matches!(err, OutboxError::Refused(_)), "{err}");
    assert!(!err.is_transient());
    db.drop_db().await;
}
