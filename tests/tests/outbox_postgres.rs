//! The outbox, relay and SQL inbox against a real PostgreSQL server: transactions, commit
//! order, per-key order over three relays, poison rows, aborted relays, bad input.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::outbox_cases as cases;
use support::outbox_db::Db;
use support::postgres::TestDb;
use waybill_core::{MemoryBroker, Message};
use waybill_outbox::{Outbox, OutboxError, Relay, RelayConfig};

#[tokio::test]
async fn a_rolled_back_enqueue_publishes_nothing_and_a_committed_one_publishes_once() {
    cases::rolled_back_publishes_nothing_and_committed_publishes_once(Db::postgres().await).await;
}

#[tokio::test]
async fn per_key_order_holds_across_batches() {
    cases::per_key_order_holds_across_batches(Db::postgres().await).await;
}

#[tokio::test]
async fn a_poison_row_goes_dead_and_can_be_replayed_and_purged() {
    cases::a_poison_row_goes_dead_and_can_be_replayed_and_purged(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_aborted_between_confirm_and_delete_duplicates_no_effect() {
    cases::relay_aborted_between_confirm_and_delete_duplicates_no_effect(Db::postgres().await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_share_the_keys_and_keep_their_order() {
    cases::three_relays_share_the_keys_and_keep_their_order(Db::postgres().await).await;
}

#[tokio::test]
async fn the_inbox_follows_the_claim_protocol() {
    cases::inbox_claim_protocol(Db::postgres().await).await;
}

#[tokio::test]
async fn the_inbox_purger_deletes_expired_rows() {
    cases::the_inbox_purger_deletes_expired_rows(Db::postgres().await).await;
}

#[tokio::test]
async fn the_inbox_marker_commits_and_rolls_back_with_the_effect() {
    cases::the_marker_commits_and_rolls_back_with_the_effect(Db::postgres().await).await;
}

#[tokio::test]
async fn a_relay_with_another_shard_count_refuses_to_run() {
    let db = Db::postgres().await;
    let broker = MemoryBroker::new();
    let sixteen = db.relay(Arc::new(broker.publisher()), cases::config());
    assert_eq!(sixteen.relay_once().await.unwrap(), 0);
    assert_eq!(sixteen.shards_owned().await, 16);
    let eight = db.relay(
        Arc::new(broker.publisher()),
        RelayConfig::builder().shard_count(8).build().unwrap(),
    );
    let err = eight.relay_once().await.unwrap_err();
    assert!(
        matches!(err, OutboxError::ShardLayout { shard_count: 8 }),
        "{err}"
    );
    assert!(err.to_string().contains("same shard count"), "{err}");
    db.drop_db().await;
}

fn relay(db: &TestDb, broker: &MemoryBroker) -> Relay {
    Relay::postgres(
        db.pool.clone(),
        Arc::new(broker.publisher()),
        cases::config(),
    )
}

#[tokio::test]
async fn a_slow_transaction_holds_back_later_rows_of_its_key() {
    let db = TestDb::migrated().await;
    let broker = MemoryBroker::new();
    let outbox = Outbox::new();
    let first = Message::new("K#1").with_key("K");
    let second = Message::new("K#2").with_key("K");

    let mut slow = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut slow, "orders", &first).await.unwrap();
    let mut fast = db.pool.begin().await.unwrap();
    outbox.enqueue(&mut fast, "orders", &second).await.unwrap();
    fast.commit().await.unwrap();

    let relay = relay(&db, &broker);
    cases::drain(&relay).await;
    assert!(
        broker.messages("orders").is_empty(),
        "K#2 must wait while an older transaction is open"
    );
    slow.commit().await.unwrap();
    cases::drain_until(&relay, || broker.messages("orders").len() == 2).await;
    let order: Vec<_> = broker.messages("orders").iter().map(|m| m.id()).collect();
    assert_eq!(order, vec![first.id(), second.id()]);
    db.drop_db().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let db = TestDb::empty().await;
    let outbox = Outbox::with_max_message_bytes(1024);
    let mut tx = db.pool.begin().await.unwrap();
    let err = outbox
        .enqueue(&mut tx, "orders", &Message::new("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotMigrated(_)), "{err}");
    assert!(err.to_string().contains("migrations"), "{err}");
    drop(tx);

    waybill_outbox::postgres::migrate(&db.pool).await.unwrap();
    waybill_outbox::postgres::migrate(&db.pool)
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
    let relay_down = Relay::postgres(down, Arc::new(broker.publisher()), RelayConfig::default());
    let err = relay_down.relay_once().await.unwrap_err();
    assert!(matches!(err, OutboxError::Unreachable(_)), "{err}");
    assert!(err.is_transient());
    let missing = lazy(&(db.url.rsplit_once('/').unwrap().0.to_owned() + "/wb_no_such_db"));
    let relay_missing = Relay::postgres(
        missing,
        Arc::new(broker.publisher()),
        RelayConfig::default(),
    );
    let err = relay_missing.relay_once().await.unwrap_err();
    assert!(matches!(err, OutboxError::Refused(_)), "{err}");
    assert!(!err.is_transient());
    db.drop_db().await;
}

#[tokio::test]
async fn an_undecodable_row_is_quarantined_and_the_rest_flow() {
    cases::an_undecodable_row_is_quarantined_and_the_rest_flow(Db::postgres().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_relay_takes_over_lapsed_shards() {
    cases::another_relay_takes_over_lapsed_shards(Db::postgres().await).await;
}
