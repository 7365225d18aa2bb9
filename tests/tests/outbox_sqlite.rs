//! The outbox, relay and SQL inbox on SQLite (embedded, a temporary file per test):
//! transactions, commit order, per-key order over three relays, poison rows, rows that do not
//! decode, aborted relays, shard takeover after a lapsed lease, bad input.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::outbox_cases as cases;
use support::outbox_db::Db;
use waybill_core::{MemoryBroker, Message};
use waybill_outbox::{Outbox, OutboxError, Relay, RelayConfig};

#[tokio::test]
async fn a_rolled_back_enqueue_publishes_nothing_and_a_committed_one_publishes_once() {
    cases::rolled_back_publishes_nothing_and_committed_publishes_once(Db::sqlite().await).await;
}

#[tokio::test]
async fn a_destination_that_never_appears_goes_dead_after_the_wait() {
    support::destination_wait::a_destination_that_never_appears_goes_dead_after_the_wait(
        Db::sqlite().await,
    )
    .await;
}

#[tokio::test]
async fn a_scheduled_message_waits_for_its_time_and_holds_its_key() {
    cases::a_scheduled_message_waits_for_its_time_and_holds_its_key(Db::sqlite().await).await;
}

#[tokio::test]
async fn per_key_order_holds_across_batches() {
    cases::per_key_order_holds_across_batches(Db::sqlite().await).await;
}

#[tokio::test]
async fn a_failure_mid_pipeline_resends_its_key_from_the_failed_row_in_order() {
    support::outbox_pipeline::a_failure_mid_pipeline_resends_its_key_from_the_failed_row_in_order(
        Db::sqlite().await,
    )
    .await;
}

#[tokio::test]
async fn a_key_that_fails_while_its_next_batch_is_taken_keeps_its_order() {
    support::outbox_pipeline::a_key_that_fails_while_its_next_batch_is_taken_keeps_its_order(
        Db::sqlite().await,
    )
    .await;
}

#[tokio::test]
async fn a_confirm_after_its_keys_failure_is_counted_as_an_order_breach() {
    support::outbox_pipeline::a_confirm_after_its_keys_failure_is_counted_as_an_order_breach(
        Db::sqlite().await,
    )
    .await;
}

#[tokio::test]
async fn a_dead_row_holds_its_key_until_replayed_in_key_holding_mode() {
    cases::a_dead_row_holds_its_key_until_replayed(Db::sqlite().await).await;
}

#[tokio::test]
async fn a_poison_row_goes_dead_and_can_be_replayed_and_purged() {
    cases::a_poison_row_goes_dead_and_can_be_replayed_and_purged(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_aborted_between_confirm_and_delete_duplicates_no_effect() {
    cases::relay_aborted_between_confirm_and_delete_duplicates_no_effect(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_share_the_keys_and_keep_their_order() {
    cases::three_relays_share_the_keys_and_keep_their_order(Db::sqlite().await).await;
}

#[tokio::test]
async fn the_inbox_purger_deletes_expired_rows() {
    cases::the_inbox_purger_deletes_expired_rows(Db::sqlite().await).await;
}

#[tokio::test]
async fn the_inbox_marker_commits_and_rolls_back_with_the_effect() {
    cases::the_marker_commits_and_rolls_back_with_the_effect(Db::sqlite().await).await;
}

/// SQLite lets one writer in at a time: a later transaction for key K cannot commit before an
/// open earlier one, so the relay can never see K#2 without K#1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_transaction_holds_back_later_rows_of_its_key() {
    let db = Db::sqlite().await;
    let Db::Sqlite { pool, .. } = &db else {
        unreachable!()
    };
    let broker = MemoryBroker::new();
    let outbox = Outbox::new();
    let first = Message::new("K#1").with_key("K");
    let second = Message::new("K#2").with_key("K");

    let relay = Relay::sqlite(pool.clone(), Arc::new(broker.publisher()), cases::config());
    // Leases first: renewing them needs the write lock, which the slow transaction will hold.
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    let mut slow = pool.begin().await.unwrap();
    outbox.enqueue(&mut slow, "orders", &first).await.unwrap();
    let later = {
        let (pool, outbox, second) = (pool.clone(), outbox.clone(), second.clone());
        tokio::spawn(async move {
            let mut fast = pool.begin().await.unwrap();
            outbox.enqueue(&mut fast, "orders", &second).await.unwrap();
            fast.commit().await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !later.is_finished(),
        "the later writer waits for the open transaction"
    );
    assert_eq!(
        relay.relay_once().await.unwrap(),
        0,
        "nothing committed yet (readers do not wait)"
    );
    slow.commit().await.unwrap();
    later.await.unwrap();
    cases::drain_until(&relay, || broker.messages("orders").len() == 2).await;
    let order: Vec<_> = broker.messages("orders").iter().map(|m| m.id()).collect();
    assert_eq!(order, vec![first.id(), second.id()]);
    db.drop_db().await;
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_loses_nothing() {
    let db = Db::sqlite_empty().await;
    let Db::Sqlite { pool, .. } = &db else {
        unreachable!()
    };
    let outbox = Outbox::with_max_message_bytes(1024);
    let mut tx = pool.begin().await.unwrap();
    let err = outbox
        .enqueue(&mut tx, "orders", &Message::new("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::NotMigrated(_)), "{err}");
    assert!(err.to_string().contains("migrations"), "{err}");
    drop(tx);

    waybill_outbox::sqlite::migrate(pool).await.unwrap();
    waybill_outbox::sqlite::migrate(pool)
        .await
        .expect("migrations are idempotent");
    let mut tx = pool.begin().await.unwrap();
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

    let mut tx = pool.begin().await.unwrap();
    let err = outbox.enqueue(&mut tx, "orders", &kept).await.unwrap_err();
    assert!(
        matches!(err, OutboxError::DuplicateId(id) if id == kept.id()),
        "{err}"
    );
    drop(tx);
    assert_eq!(
        db.outbox_rows().await,
        1,
        "the accepted message is still there"
    );

    // A database file that cannot be created, and a URL that is not SQLite.
    let err = waybill_outbox::sqlite::connect("sqlite:///no/such/dir/waybill.db", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, OutboxError::Unreachable(_)), "{err}");
    let err = waybill_outbox::sqlite::connect("postgres://x", 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SQLite"), "{err}");
    // A relay on a database without the tables says so.
    let empty = Db::sqlite_empty().await;
    let Db::Sqlite { pool: bare, .. } = &empty else {
        unreachable!()
    };
    let relay = Relay::sqlite(
        bare.clone(),
        Arc::new(MemoryBroker::new().publisher()),
        RelayConfig::default(),
    );
    let err = relay.relay_once().await.unwrap_err();
    assert!(matches!(err, OutboxError::NotMigrated(_)), "{err}");
    empty.drop_db().await;
    db.drop_db().await;
}

#[tokio::test]
async fn an_undecodable_row_is_quarantined_and_the_rest_flow() {
    cases::an_undecodable_row_is_quarantined_and_the_rest_flow(Db::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_relay_takes_over_lapsed_shards() {
    cases::another_relay_takes_over_lapsed_shards(Db::sqlite().await).await;
}

/// SQLite keeps whatever type a writer gives: another tool may store the message id as UUID
/// text instead of 16 bytes. Such a row is quarantined like any undecodable row, and it can
/// still be listed and purged by its id.
#[tokio::test]
async fn a_row_with_a_text_message_id_is_quarantined_listed_and_purged() {
    let db = Db::sqlite().await;
    let broker = MemoryBroker::new();
    let messages = support::outbox_db::numbered(20, 2);
    db.enqueue("orders", &messages[..10], true).await;
    let id = waybill_core::MessageId::new();
    db.execute(&format!(
        "INSERT INTO waybill_outbox (message_id, topic, key, shard_hash, payload, headers, \
           created_at_ms, enqueued_at_ms, available_at_ms) \
         VALUES ('{id}', 'orders', 'k0', 0, X'00', '{{}}', 0, 0, 0)"
    ))
    .await;
    db.enqueue("orders", &messages[10..], true).await;

    let relay = db.relay(Arc::new(broker.publisher()), cases::config());
    cases::drain_until(&relay, || broker.messages("orders").len() >= 20).await;
    assert_eq!(broker.messages("orders").len(), 20);
    let inspector = db.inspector();
    let dead = inspector
        .dead(&waybill_outbox::DeadFilter::all(), 10)
        .await
        .expect("the dead rows can be listed");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message_id, id);
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("message_id"), "{error:?}");
    assert_eq!(
        inspector
            .purge(&waybill_outbox::DeadFilter::ids([id]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.outbox_rows().await, 0);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_its_lease_has_one_effect() {
    support::inbox_cases::a_handler_slower_than_its_lease_has_one_effect(Db::sqlite().await).await;
}

#[tokio::test]
async fn a_stale_holder_cannot_commit_its_marker() {
    cases::a_stale_holder_cannot_commit_its_marker(Db::sqlite().await).await;
}

#[tokio::test]
async fn the_sent_log_reconciles_with_the_inbox() {
    cases::the_sent_log_reconciles_with_the_inbox(Db::sqlite().await).await;
}
