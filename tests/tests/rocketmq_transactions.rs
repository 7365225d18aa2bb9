//! RocketMQ transactional messages against the real servers: the local transaction decides,
//! and when the producer never tells the broker (a crash), the broker's check-back is answered
//! from the application's database.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::SqlitePool;
use support::rocketmq::{config, create_topic_for_test};
use waybill_core::{Message, MessageId, Subscriber};
use waybill_rocketmq::{
    RocketSubscriber, RocketTransactionalProducer, TransactionCheck, TransactionState,
    TransactionalError,
};

/// The application's database: an order row is written with the id of its message.
async fn database() -> SqlitePool {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect("sqlite::memory:")
        .await
        .unwrap();
    sqlx::query("CREATE TABLE orders (message_id TEXT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    pool
}

async fn place_order(db: &SqlitePool, id: MessageId) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO orders (message_id) VALUES (?)")
        .bind(id.to_string())
        .execute(db)
        .await
        .map(|_| ())
}

/// The check-back: committed when the order row exists.
struct OrderExists(SqlitePool);

#[async_trait]
impl TransactionCheck for OrderExists {
    async fn check(&self, message: &Message) -> TransactionState {
        let found: Option<(String,)> =
            sqlx::query_as("SELECT message_id FROM orders WHERE message_id = ?")
                .bind(message.id().to_string())
                .fetch_optional(&self.0)
                .await
                .unwrap_or(None);
        println!(
            "check-back for {}: order row {}",
            message.id(),
            if found.is_some() { "found" } else { "missing" }
        );
        if found.is_some() {
            TransactionState::Commit
        } else {
            TransactionState::Rollback
        }
    }
}

/// Ids received on `topic` within `wait`, stopping early once `expected` all arrived.
async fn receive_ids(
    subscriber: &mut RocketSubscriber,
    expected: &HashSet<MessageId>,
    wait: Duration,
) -> HashSet<MessageId> {
    let mut got = HashSet::new();
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline && !expected.is_subset(&got) {
        if let Ok(Ok(Some(d))) =
            tokio::time::timeout(Duration::from_millis(500), subscriber.receive()).await
        {
            got.insert(d.message().message().id());
            d.ack().await.unwrap();
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_transaction_and_check_back_decide_delivery() {
    let topic = create_topic_for_test("wb-tx").await;
    let db = database().await;
    let producer_config = waybill_rocketmq::RocketConfig::builder(support::rocketmq::name_server())
        .producer_group("wb_tx_producer")
        .build()
        .unwrap();
    let producer = RocketTransactionalProducer::connect(producer_config, OrderExists(db.clone()))
        .await
        .unwrap();
    let mut subscriber = RocketSubscriber::connect(config(), &topic, "wb-g-tx")
        .await
        .unwrap();

    // 1. The local transaction commits: delivered.
    let committed = Message::new("committed").with_key("order-1");
    let committed_id = committed.id();
    let outcome = producer
        .send(&topic, committed, || place_order(&db, committed_id))
        .await
        .unwrap();
    println!("committed: {:?}", outcome.receipt);

    // 2. The local transaction fails: rolled back, never delivered.
    let rolled_back = Message::new("rolled back").with_key("order-2");
    let rolled_back_id = rolled_back.id();
    let err = producer
        .send(&topic, rolled_back, || async {
            Err::<(), _>("payment declined")
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, TransactionalError::Local("payment declined")),
        "{err}"
    );

    // 3. The process "dies" after its local transaction committed, before telling the broker:
    //    the check-back finds the order row and commits.
    let crashed_committed = Message::new("crash after commit").with_key("order-3");
    let crashed_committed_id = crashed_committed.id();
    let dropped = tokio::time::timeout(
        Duration::from_secs(2),
        producer.send(&topic, crashed_committed, || async {
            place_order(&db, crashed_committed_id).await?;
            std::future::pending::<Result<(), sqlx::Error>>().await
        }),
    )
    .await;
    assert!(dropped.is_err(), "the send was cut off before its decision");

    // 4. The process dies before its local transaction committed: the check-back finds no
    //    row and rolls back.
    let crashed_early = Message::new("crash before commit").with_key("order-4");
    let crashed_early_id = crashed_early.id();
    let dropped = tokio::time::timeout(
        Duration::from_secs(2),
        producer.send(&topic, crashed_early, || {
            std::future::pending::<Result<(), sqlx::Error>>()
        }),
    )
    .await;
    assert!(dropped.is_err());

    // The check-back runs every 5 s for half messages older than 3 s (scripts/brokers).
    let expected: HashSet<MessageId> = [committed_id, crashed_committed_id].into();
    let got = receive_ids(&mut subscriber, &expected, Duration::from_secs(60)).await;
    // Give a wrong check-back the time to deliver what it must not.
    let late = receive_ids(
        &mut subscriber,
        &HashSet::from([rolled_back_id]),
        Duration::from_secs(12),
    )
    .await;
    let got: HashSet<MessageId> = got.union(&late).copied().collect();
    println!("delivered: {got:?}");
    assert!(
        got.contains(&committed_id),
        "the committed message was delivered"
    );
    assert!(
        got.contains(&crashed_committed_id),
        "the check-back committed the message whose order exists"
    );
    assert!(
        !got.contains(&rolled_back_id),
        "a rolled-back message was delivered"
    );
    assert!(
        !got.contains(&crashed_early_id),
        "the check-back rolled back the message without an order"
    );
    subscriber.close().await.unwrap();
    producer.close().await;
}
