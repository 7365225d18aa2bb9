//! The outbox, relay and SQL inbox against a real PostgreSQL server: transactions, commit
//! order, per-key order over three relays, poison rows, rows that do not decode, aborted
//! relays, shard takeover after a lapsed lease, bad input, and a stuck relay's LISTEN session
//! under a flood of notifications.

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
async fn a_scheduled_message_waits_for_its_time_and_holds_its_key() {
    cases::a_scheduled_message_waits_for_its_time_and_holds_its_key(Db::postgres().await).await;
}

#[tokio::test]
async fn per_key_order_holds_across_batches() {
    cases::per_key_order_holds_across_batches(Db::postgres().await).await;
}

#[tokio::test]
async fn a_failure_mid_pipeline_resends_its_key_from_the_failed_row_in_order() {
    support::outbox_pipeline::a_failure_mid_pipeline_resends_its_key_from_the_failed_row_in_order(
        Db::postgres().await,
    )
    .await;
}

#[tokio::test]
async fn a_key_that_fails_while_its_next_batch_is_taken_keeps_its_order() {
    support::outbox_pipeline::a_key_that_fails_while_its_next_batch_is_taken_keeps_its_order(
        Db::postgres().await,
    )
    .await;
}

#[tokio::test]
async fn a_confirm_after_its_keys_failure_is_counted_as_an_order_breach() {
    support::outbox_pipeline::a_confirm_after_its_keys_failure_is_counted_as_an_order_breach(
        Db::postgres().await,
    )
    .await;
}

#[tokio::test]
async fn a_batch_handler_commits_each_effect_once_with_its_marker_in_key_order() {
    support::batch_inbox::a_batch_handler_commits_each_effect_once_with_its_marker_in_key_order()
        .await;
}

#[tokio::test]
async fn a_failed_message_fails_alone_and_a_failed_batch_is_retried_one_by_one() {
    support::batch_inbox::a_failed_message_fails_alone_and_a_failed_batch_is_retried_one_by_one()
        .await;
}

#[tokio::test]
async fn a_lapsed_claim_rolls_back_the_whole_batch_and_claims_are_answered_per_id() {
    support::batch_inbox::a_lapsed_claim_rolls_back_the_whole_batch_and_claims_are_answered_per_id(
    )
    .await;
}

#[tokio::test]
async fn a_dead_row_holds_its_key_until_replayed_in_key_holding_mode() {
    cases::a_dead_row_holds_its_key_until_replayed(Db::postgres().await).await;
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

/// A broker that never confirms: every publish hangs (after saying it started).
struct NeverConfirms(Arc<std::sync::atomic::AtomicBool>);

#[async_trait::async_trait]
impl waybill_core::Publisher for NeverConfirms {
    async fn publish(
        &self,
        _topic: &str,
        _message: Message,
    ) -> Result<waybill_core::Receipt, waybill_core::PublishError> {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        std::future::pending().await
    }
    async fn publish_batch(
        &self,
        _topic: &str,
        _messages: Vec<Message>,
    ) -> Vec<Result<waybill_core::Receipt, waybill_core::PublishError>> {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        std::future::pending().await
    }
    async fn close(&self) -> Result<(), waybill_core::BrokerError> {
        Ok(())
    }
}

/// Pages (8 kB) of the server-wide notification queue in use: PostgreSQL 15 reports the
/// fraction of its 8 GB maximum (1,048,575 pages).
async fn notification_queue_pages(pool: &sqlx::PgPool) -> f64 {
    let usage: f64 = sqlx::query_scalar("SELECT pg_notification_queue_usage()")
        .fetch_one(pool)
        .await
        .unwrap();
    usage * 1_048_575.0
}

/// A relay stuck in a publish keeps its LISTEN session open. If nothing reads that session,
/// the server cannot hand it the notifications of later commits: once the socket buffers
/// between them are full (the kernel lets the server's send buffer grow to 4 MB here, some
/// 150,000 payload-less notifications; 20,000 commits did not fill it), its
/// backend stops advancing through the server-wide notification queue, which then grows with
/// every commit anywhere on the server until NOTIFY, and so every enqueueing COMMIT, fails.
///
/// Reaching that point with one notification per commit takes minutes of writes, so the test
/// first sends 400,000 distinct notifications on the relay's channel in one transaction (as
/// that many commits would), then keeps enqueueing in committed transactions, and checks that
/// the queue drains back to a few pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_relay_keeps_the_notification_queue_drained() {
    const BURST: i64 = 400_000;
    const COMMITS: usize = 4_000;
    const WRITERS: usize = 8;
    /// Head-to-tail distance allowed once drained: the server frees the queue's tail every
    /// 4 pages.
    const MAX_PAGES: f64 = 16.0;
    let db = TestDb::migrated().await;
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay = Relay::postgres(
        db.pool.clone(),
        Arc::new(NeverConfirms(Arc::clone(&stalled))),
        RelayConfig::builder()
            .poll_interval(Duration::from_millis(200))
            .build()
            .unwrap(),
    );
    let task = tokio::spawn(async move { relay.run(std::future::pending()).await });
    wait_for_listener(&db).await;
    let outbox = Outbox::new();
    let mut tx = db.pool.begin().await.unwrap();
    outbox
        .enqueue(&mut tx, "orders", &Message::new("stuck"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    for _ in 0..400 {
        if stalled.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        stalled.load(std::sync::atomic::Ordering::SeqCst),
        "the relay is stuck"
    );
    let n: i64 = sqlx::query_scalar(LISTENING)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1, "the stuck relay still has its LISTEN session");
    let before = notification_queue_pages(&db.pool).await;

    let started = std::time::Instant::now();
    sqlx::query("SELECT count(pg_notify('waybill_outbox', g::text)) FROM generate_series(1, $1) g")
        .bind(BURST)
        .execute(&db.pool)
        .await
        .unwrap();
    let mut peak = notification_queue_pages(&db.pool).await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (pool, outbox) = (db.pool.clone(), outbox.clone());
            tokio::spawn(async move {
                for i in 0..COMMITS / WRITERS {
                    let mut tx = pool.begin().await.unwrap();
                    let message = Message::new(format!("{w}-{i}")).with_key(format!("k{w}"));
                    outbox.enqueue(&mut tx, "orders", &message).await.unwrap();
                    tx.commit().await.unwrap();
                }
            })
        })
        .collect();
    while !writers.iter().all(|w| w.is_finished()) {
        peak = peak.max(notification_queue_pages(&db.pool).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let written = started.elapsed();
    let mut after = notification_queue_pages(&db.pool).await;
    for _ in 0..100 {
        if after <= MAX_PAGES {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = notification_queue_pages(&db.pool).await;
    }
    println!(
        "{BURST} notifications and {COMMITS} commits in {written:?} with the relay stuck: \
         notification queue {before:.0} pages before, {peak:.0} at peak, {after:.0} after \
         (bound {MAX_PAGES})"
    );
    assert!(
        after <= MAX_PAGES,
        "the notification queue still holds {after:.0} pages 10 s after the writes: the \
         stuck relay's LISTEN session is not read"
    );
    task.abort();
    let _ = task.await;
    db.drop_db().await;
}

/// A creation time of `infinity` (valid for `timestamptz`, written by another tool) cannot be
/// a message's creation time: that row is quarantined too, instead of failing the query.
#[tokio::test]
async fn a_row_created_at_infinity_is_quarantined() {
    let db = Db::postgres().await;
    let broker = MemoryBroker::new();
    let messages = support::outbox_db::numbered(20, 2);
    db.enqueue("orders", &messages[..10], true).await;
    let id = db.insert_raw_row("orders", "k0", "{}").await;
    db.execute(&format!(
        "UPDATE waybill_outbox SET created_at = 'infinity' WHERE message_id = '{id}'"
    ))
    .await;
    db.enqueue("orders", &messages[10..], true).await;

    let relay = db.relay(Arc::new(broker.publisher()), cases::config());
    for _ in 0..800 {
        match relay.relay_once().await {
            Ok(_) if broker.messages("orders").len() >= 20 => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => panic!("one row failed the whole batch: {e}"),
        }
    }
    assert_eq!(broker.messages("orders").len(), 20);
    let dead = db
        .inspector()
        .dead(&waybill_outbox::DeadFilter::all(), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message_id, id);
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("created_at"), "{error:?}");
    db.drop_db().await;
}

/// An idle relay wakes on the insert trigger's notification, long before its poll interval
/// (60 s here). Later enqueues keep notifying, in case the first row was not yet safe to
/// relay when the relay woke (another transaction on the server was older).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_wakes_an_idle_relay() {
    let db = TestDb::migrated().await;
    let broker = MemoryBroker::new();
    let relay = Relay::postgres(
        db.pool.clone(),
        Arc::new(broker.publisher()),
        RelayConfig::builder()
            .poll_interval(Duration::from_secs(60))
            .build()
            .unwrap(),
    );
    let task = tokio::spawn(async move { relay.run(std::future::pending()).await });
    wait_for_listener(&db).await;
    // Let it go idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outbox = Outbox::new();
    let enqueue = |message: Message| {
        let (pool, outbox) = (db.pool.clone(), outbox.clone());
        async move {
            let mut tx = pool.begin().await.unwrap();
            outbox.enqueue(&mut tx, "orders", &message).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    let first = Message::new("wake up");
    let started = std::time::Instant::now();
    enqueue(first.clone()).await;
    while !broker
        .messages("orders")
        .iter()
        .any(|m| m.id() == first.id())
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the relay slept through its notifications"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        enqueue(Message::new("nudge")).await;
    }
    println!("published {:?} after the commit", started.elapsed());
    task.abort();
    let _ = task.await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_slower_than_its_lease_has_one_effect() {
    support::inbox_cases::a_handler_slower_than_its_lease_has_one_effect(Db::postgres().await)
        .await;
}

#[tokio::test]
async fn a_stale_holder_cannot_commit_its_marker() {
    cases::a_stale_holder_cannot_commit_its_marker(Db::postgres().await).await;
}

#[tokio::test]
async fn a_destination_that_never_appears_goes_dead_after_the_wait() {
    support::destination_wait::a_destination_that_never_appears_goes_dead_after_the_wait(
        Db::postgres().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_for_a_kafka_topic_not_created_yet_wait_for_it_in_key_order() {
    use support::destination_wait as wait;
    use waybill_kafka::{create_topic, KafkaPublisher, KafkaSubscriber};

    support::kafka::require_broker().await;
    let db = Db::postgres().await;
    let topic = support::kafka::topic("wb-later");
    let publisher = KafkaPublisher::connect(support::kafka::config())
        .await
        .unwrap();
    let running = wait::relay_while_missing(&db, &topic, Arc::new(publisher)).await;
    create_topic(
        &support::kafka::config(),
        &topic,
        support::kafka::PARTITIONS,
        1,
    )
    .await
    .unwrap();
    let mut subscriber = KafkaSubscriber::connect(support::kafka::config(), &topic, "wb-later")
        .await
        .unwrap();
    wait::receive_all_in_order(&mut subscriber).await;
    wait::finish(&db, running).await;
    waybill_core::Subscriber::close(&mut subscriber)
        .await
        .unwrap();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_for_a_rabbitmq_topic_without_a_queue_yet_wait_for_it_in_key_order() {
    use support::destination_wait as wait;
    use waybill_rabbitmq::{delete_group_topology, RabbitPublisher, RabbitSubscriber};

    support::rabbitmq::require_broker().await;
    let db = Db::postgres().await;
    let topic = support::unique_topic("wb-later");
    let publisher = RabbitPublisher::connect(support::rabbitmq::config())
        .await
        .unwrap();
    // The exchange exists, no consumer group has bound its queue yet: unroutable.
    publisher.declare_topic(&topic).await.unwrap();
    let running = wait::relay_while_missing(&db, &topic, Arc::new(publisher)).await;
    let mut subscriber = RabbitSubscriber::connect(support::rabbitmq::config(), &topic, "g")
        .await
        .unwrap();
    wait::receive_all_in_order(&mut subscriber).await;
    wait::finish(&db, running).await;
    waybill_core::Subscriber::close(&mut subscriber)
        .await
        .unwrap();
    delete_group_topology(&support::rabbitmq::config(), &topic, "g", true)
        .await
        .unwrap();
    db.drop_db().await;
}

/// Waits (up to 5 s) until a session of the test database has issued LISTEN: the relay's
/// listener is connected.
async fn wait_for_listener(db: &TestDb) {
    for _ in 0..200 {
        let n: i64 = sqlx::query_scalar(LISTENING)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if n > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sessions of the test database that issued LISTEN.
const LISTENING: &str = "SELECT count(*) FROM pg_stat_activity \
     WHERE datname = current_database() AND query ILIKE 'LISTEN%'";

#[tokio::test]
async fn the_sent_log_reconciles_with_the_inbox() {
    cases::the_sent_log_reconciles_with_the_inbox(Db::postgres().await).await;
}
