//! Cases every SQL inbox must pass with the Processor on top: fencing of lapsed claims.

use std::sync::Arc;
use std::time::Duration;

use waybill_core::{
    handler_fn, HandlerError, IncomingMessage, MemoryBroker, Message, Processor, Publisher,
};

use super::outbox_db::Db;

/// Two consumers get the same message (as after a rebalance) and the handler runs longer than
/// the claim lease: the business effect must be applied once.
pub async fn a_handler_slower_than_its_lease_has_one_effect(db: Db) {
    let db = Arc::new(db);
    db.create_effects().await;
    let broker = MemoryBroker::new();
    let message = Message::new("slow").with_key("k");
    let publisher = broker.publisher();
    // Two subscriptions each receive the one message: the same id reaches two consumers.
    let first = broker.subscriber("t", "copy-a").unwrap();
    let second = broker.subscriber("t", "copy-b").unwrap();
    publisher.publish("t", message.clone()).await.unwrap();

    let lease = Duration::from_millis(300);
    let handling = Duration::from_millis(1_200);
    let mut running = Vec::new();
    for subscriber in [first, second] {
        let inbox = db.inbox();
        let db = Arc::clone(&db);
        let handler = handler_fn(move |m: IncomingMessage| {
            let db = Arc::clone(&db);
            async move {
                db.apply_slowly(&m, handling)
                    .await
                    .map_err(HandlerError::transient)
            }
        });
        running.push(
            Processor::builder("g")
                .idempotency(inbox)
                .claim_lease(lease)
                .build()
                .unwrap()
                .start(subscriber, handler),
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while running
        .iter()
        .map(|r| r.counters().handled + r.counters().duplicates_skipped)
        .sum::<u64>()
        < 2
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "both copies settle within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in running {
        r.shutdown().await.unwrap();
    }
    assert_eq!(
        db.effects_of(&message).await,
        1,
        "a handler that outlived its lease and a second consumer both applied the effect"
    );
    Arc::try_unwrap(db)
        .ok()
        .expect("no other holder")
        .drop_db()
        .await;
}
