//! Outbox, relay and inbox scenarios run on every database (see `outbox_db.rs`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use waybill_core::{
    handler_fn, BrokerError, Claim, ClaimToken, Completion, DeadLetterMode, HandlerError,
    HeldClaim, IncomingMessage, MemoryBroker, Message, MessageId, Ordering, Origin, Processor,
    PublishError, PublishFault, Publisher, Receipt, Subscriber,
};
use waybill_outbox::{DeadFilter, Relay, RelayConfig};

use super::outbox_db::{keyed_seqs, numbered, out_of_order_keys, seqs_of_key, Db};

/// Small batches, 3 attempts, short backoff and leases.
pub fn config() -> RelayConfig {
    RelayConfig::builder()
        .batch_size(100)
        .max_attempts(3)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .lease_ttl(Duration::from_millis(900))
        .build()
        .unwrap()
}

/// Relays until no batch is ready.
pub async fn drain(relay: &Relay) {
    while relay.relay_once().await.unwrap() > 0 {}
}

/// Relays until `done` holds. On PostgreSQL rows become relayable only once every older
/// transaction on the *server* finished (xids are cluster-wide), so tests running in parallel
/// delay each other.
pub async fn drain_until(relay: &Relay, mut done: impl FnMut() -> bool) {
    for _ in 0..800 {
        drain(relay).await;
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the relay did not publish what it should within 20 s");
}

/// Waits until the outbox table is empty, relaying with `relay` when given.
pub async fn wait_until_relayed(db: &Db, relay: Option<&Relay>) {
    for _ in 0..2400 {
        if let Some(relay) = relay {
            drain(relay).await;
        }
        if db.outbox_rows().await == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{} rows left in the outbox after 60 s",
        db.outbox_rows().await
    );
}

pub async fn rolled_back_publishes_nothing_and_committed_publishes_once(db: Db) {
    let broker = MemoryBroker::new();
    db.enqueue("orders", &[Message::new("rolled back")], false)
        .await;
    let committed = Message::new("committed")
        .with_key("o-1")
        .with_header("h", "v");
    db.enqueue("orders", std::slice::from_ref(&committed), true)
        .await;

    let relay = db.relay(Arc::new(broker.publisher()), config());
    drain_until(&relay, || !broker.messages("orders").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    drain(&relay).await;
    let published = broker.messages("orders");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].id(), committed.id());
    assert_eq!(published[0].key(), Some("o-1"));
    assert_eq!(published[0].headers().get("h"), Some("v"));
    assert_eq!(published[0].payload().as_ref(), b"committed");
    assert_eq!(
        published[0].created_at(),
        std::time::UNIX_EPOCH
            + Duration::from_millis(
                committed
                    .created_at()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64
            ),
        "creation time kept to the millisecond"
    );
    assert_eq!(db.outbox_rows().await, 0, "confirmed rows are deleted");
    db.drop_db().await;
}

pub async fn per_key_order_holds_across_batches(db: Db) {
    let broker = MemoryBroker::new();
    let messages = numbered(1_000, 7);
    for chunk in messages.chunks(250) {
        db.enqueue("orders", chunk, true).await;
    }
    let relay = db.relay(Arc::new(broker.publisher()), config());
    drain_until(&relay, || broker.messages("orders").len() >= 1_000).await;
    let published = broker.messages("orders");
    assert_eq!(published.len(), 1_000);
    let applied = keyed_seqs(&published);
    assert_eq!(out_of_order_keys(&applied), Vec::<String>::new());
    assert_eq!(relay.stats().published, 1_000);
    assert!(relay.stats().batches >= 10, "batches of 100");
    db.drop_db().await;
}

pub async fn a_scheduled_message_waits_for_its_time_and_holds_its_key(db: Db) {
    let broker = MemoryBroker::new();
    let wait = Duration::from_secs(4);
    let scheduled = Message::new("reminder").with_key("order-1");
    let behind = Message::new("shipped").with_key("order-1");
    let other = Message::new("other key").with_key("order-2");
    let started = std::time::Instant::now();
    db.enqueue_at("orders", &scheduled, SystemTime::now() + wait)
        .await;
    db.enqueue("orders", std::slice::from_ref(&behind), true)
        .await;
    db.enqueue("orders", std::slice::from_ref(&other), true)
        .await;
    let relay = db.relay(Arc::new(broker.publisher()), config());
    drain_until(&relay, || !broker.messages("orders").is_empty()).await;
    let early: Vec<MessageId> = broker.messages("orders").iter().map(Message::id).collect();
    assert_eq!(
        early,
        vec![other.id()],
        "only the other key flows before the scheduled time"
    );
    assert!(
        started.elapsed() < wait,
        "the check ran before the scheduled time"
    );
    drain_until(&relay, || broker.messages("orders").len() >= 3).await;
    assert!(
        started.elapsed() >= wait,
        "the scheduled row was published no earlier than its time"
    );
    let order: Vec<MessageId> = broker.messages("orders").iter().map(Message::id).collect();
    assert_eq!(
        order,
        vec![other.id(), scheduled.id(), behind.id()],
        "the key's later message waited behind the scheduled one"
    );
    db.drop_db().await;
}

pub async fn a_poison_row_goes_dead_and_can_be_replayed_and_purged(db: Db) {
    let broker = MemoryBroker::new();
    let poisoned = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let switch = Arc::clone(&poisoned);
    broker.faults().on_publish(move |ctx| {
        (ctx.message.headers().contains("poison")
            && switch.load(std::sync::atomic::Ordering::SeqCst))
        .then_some(PublishFault::NotSent)
    });
    let poison = Message::new("bad")
        .with_key("bad-key")
        .with_header("poison", "1");
    let behind = Message::new("after the poison").with_key("bad-key");
    let mut batch = vec![poison.clone(), behind.clone()];
    batch.extend((0..20).map(|i| Message::new(i.to_string()).with_key(format!("good-{i}"))));
    db.enqueue("orders", &batch, true).await;

    let relay = db.relay(Arc::new(broker.publisher()), config());
    drain_until(&relay, || broker.messages("orders").len() >= 20).await;
    let has = |id: MessageId| broker.messages("orders").iter().any(|m| m.id() == id);
    assert_eq!(
        broker.messages("orders").len(),
        20,
        "good keys are not held back"
    );
    assert!(!has(behind.id()), "the poison's key waits");

    drain_until(&relay, || relay.stats().dead == 1).await;
    let inspector = db.inspector();
    let dead = inspector.dead(&DeadFilter::all(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, poison.id());
    assert_eq!(dead[0].attempts, 3, "dead after the attempt cap");
    assert_eq!(dead[0].key.as_deref(), Some("bad-key"));
    assert!(dead[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("injected fault"));
    drain_until(&relay, || has(behind.id())).await;
    let backlog = inspector.backlog().await.unwrap();
    assert_eq!(
        (backlog.pending, backlog.dead),
        (0, 1),
        "once dead, its key moved on"
    );
    let topics = inspector.topics().await.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!((topics[0].topic.as_str(), topics[0].dead), ("orders", 1));

    // Replay once the cause is fixed: published with its original id.
    poisoned.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        inspector.replay(&DeadFilter::topic("other")).await.unwrap(),
        0
    );
    assert_eq!(
        inspector
            .replay(&DeadFilter::ids([poison.id()]))
            .await
            .unwrap(),
        1
    );
    drain_until(&relay, || has(poison.id())).await;
    assert_eq!(db.outbox_rows().await, 0);

    // Purge: a second poison row, dead at once (permanent), purged by id; retention keeps it.
    broker.faults().on_publish(|ctx| {
        ctx.message
            .headers()
            .contains("poison")
            .then_some(PublishFault::Permanent)
    });
    let second = Message::new("bad again").with_header("poison", "1");
    db.enqueue("orders", std::slice::from_ref(&second), true)
        .await;
    drain_until(&relay, || relay.stats().dead == 2).await;
    let young = DeadFilter {
        older_than: Some(Duration::from_secs(3600)),
        ..DeadFilter::all()
    };
    assert_eq!(inspector.purge(&young).await.unwrap(), 0, "not old enough");
    assert_eq!(
        inspector
            .purge(&DeadFilter::ids([second.id()]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.outbox_rows().await, 0);
    db.drop_db().await;
}

/// Under `DeadLetterMode::HoldKey` a dead row holds the later rows of its key: the other keys
/// flow, the held rows stay pending, and once the cause is fixed and the dead row replayed,
/// the key's rows are published in their order, each once.
pub async fn a_dead_row_holds_its_key_until_replayed(db: Db) {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let broker = MemoryBroker::new();
    let messages = numbered(30, 3);
    // Key k1 holds rows 1, 4, 7, ..., 28: row 4 is refused until the fix.
    let poison = messages[4].id();
    let broken = Arc::new(AtomicBool::new(true));
    let switch = Arc::clone(&broken);
    broker.faults().on_publish(move |ctx| {
        (ctx.message.id() == poison && switch.load(SeqCst)).then_some(PublishFault::Permanent)
    });
    db.enqueue("orders", &messages, true).await;
    let holding = RelayConfig::builder()
        .batch_size(100)
        .max_attempts(3)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .lease_ttl(Duration::from_millis(900))
        .dead_letter_mode(DeadLetterMode::HoldKey)
        .build()
        .unwrap();
    let relay = db.relay(Arc::new(broker.publisher()), holding);
    let published_seqs = |key: &str| seqs_of_key(&broker.messages("orders"), key);
    drain_until(&relay, || {
        relay.stats().dead == 1 && broker.messages("orders").len() >= 21
    })
    .await;
    // More rounds change nothing: the key stays held behind its dead row.
    for _ in 0..5 {
        drain(&relay).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(published_seqs("k1"), vec![1], "k1 stops at its dead row");
    assert_eq!(published_seqs("k0").len(), 10, "other keys flow");
    assert_eq!(published_seqs("k2").len(), 10, "other keys flow");
    assert_eq!(db.outbox_rows().await, 9, "the dead row and the 8 it holds");
    let inspector = db.inspector();
    let dead = inspector.dead(&DeadFilter::all(), 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message_id, poison);

    broken.store(false, SeqCst);
    assert_eq!(
        inspector.replay(&DeadFilter::ids([poison])).await.unwrap(),
        1
    );
    drain_until(&relay, || broker.messages("orders").len() >= 30).await;
    let published = broker.messages("orders");
    let mut ids: Vec<MessageId> = published.iter().map(Message::id).collect();
    ids.sort();
    let mut expected: Vec<MessageId> = messages.iter().map(Message::id).collect();
    expected.sort();
    assert_eq!(ids, expected, "every row published once");
    assert_eq!(
        published_seqs("k1"),
        (0..10).map(|i| 1 + 3 * i).collect::<Vec<i64>>(),
        "the replayed row went before the rows it held"
    );
    assert_eq!(db.outbox_rows().await, 0);
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
        tokio::time::sleep(Duration::from_millis(10)).await;
        results
    }
    async fn close(&self) -> Result<(), BrokerError> {
        self.0.close().await
    }
}

/// Consumes `subscriber` with the SQL inbox in transactional mode until `expected` effects are
/// applied and `published` deliveries seen; checks exactly-once effect and per-key order.
pub async fn consume_exactly_once(
    db: &Arc<Db>,
    subscriber: impl Subscriber + 'static,
    expected: usize,
    published: usize,
) -> waybill_core::CountersSnapshot {
    let handler = {
        let db = Arc::clone(db);
        handler_fn(move |m: IncomingMessage| {
            let db = Arc::clone(&db);
            async move { db.apply(&m, true).await.map_err(HandlerError::permanent) }
        })
    };
    let running = Processor::builder("billing")
        .ordering(Ordering::PerKey)
        .concurrency(16)
        .idempotency(db.inbox())
        .build()
        .unwrap()
        .start(subscriber, handler);
    // Waits while deliveries keep being settled: on a loaded 2-core machine 10,000 inbox
    // transactions take well over a minute. Stops 30 s after the last progress.
    let mut last = (0, std::time::Instant::now());
    loop {
        let c = running.counters();
        let done = c.handled + c.duplicates_skipped;
        if done >= published as u64 || last.1.elapsed() > Duration::from_secs(30) {
            break;
        }
        if done > last.0 {
            last = (done, std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let totals = running.shutdown().await.unwrap();
    let applied = db.applied().await;
    assert_eq!(
        applied.len(),
        expected,
        "every message applied exactly once"
    );
    assert_eq!(
        totals.failed_attempts, 0,
        "no second effect was ever attempted"
    );
    assert_eq!(totals.dead_lettered, 0);
    assert_eq!(
        out_of_order_keys(&applied),
        Vec::<String>::new(),
        "per-key order"
    );
    totals
}

pub async fn relay_aborted_between_confirm_and_delete_duplicates_no_effect(db: Db) {
    const MESSAGES: usize = 10_000;
    let db = Arc::new(db);
    for chunk in numbered(MESSAGES, 50).chunks(1_000) {
        db.enqueue("orders", chunk, true).await;
    }
    let broker = MemoryBroker::new();
    let subscriber = broker.subscriber("orders", "billing").unwrap();
    let publisher: Arc<dyn Publisher> = Arc::new(SlowConfirm(Arc::new(broker.publisher())));
    let config = RelayConfig::builder().batch_size(200).build().unwrap();
    let mut kills = 0u64;
    while kills < 10 {
        // Same name each time, as a restarted sidecar would have: it resumes its shards.
        let relay = db.relay(Arc::clone(&publisher), config.clone());
        let before = broker.messages("orders").len();
        let task = tokio::spawn(async move { relay.run(std::future::pending()).await });
        // Abort right after a confirm, while the relay lingers before deleting.
        for _ in 0..20_000 {
            if broker.messages("orders").len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        task.abort();
        let _ = task.await;
        kills += 1;
    }
    let relay = db.relay(Arc::clone(&publisher), config);
    wait_until_relayed(&db, Some(&relay)).await;
    let published = broker.messages("orders").len();
    assert!(published >= MESSAGES);
    let totals = consume_exactly_once(&db, subscriber, MESSAGES, published).await;
    println!(
        "{}: {MESSAGES} enqueued, {kills} relay aborts, {published} published ({} duplicates), {totals:?}",
        db.kind(),
        published - MESSAGES
    );
    assert!(
        published > MESSAGES,
        "the aborts left confirmed rows behind to republish"
    );
    assert_eq!(totals.duplicates_skipped as usize, published - MESSAGES);
    Arc::into_inner(db).unwrap().drop_db().await;
}

pub async fn three_relays_share_the_keys_and_keep_their_order(db: Db) {
    const MESSAGES: usize = 10_000;
    let db = Arc::new(db);
    let broker = MemoryBroker::new();
    let subscriber = broker.subscriber("orders", "billing").unwrap();
    let publisher: Arc<dyn Publisher> = Arc::new(SlowConfirm(Arc::new(broker.publisher())));
    let relays: Vec<Arc<Relay>> = (0..3)
        .map(|i| {
            let config = RelayConfig::builder()
                .batch_size(100)
                .shard_count(12)
                .lease_ttl(Duration::from_millis(900))
                .poll_interval(Duration::from_millis(20))
                .name(format!("relay-{i}"))
                .build()
                .unwrap();
            Arc::new(db.relay(Arc::clone(&publisher), config))
        })
        .collect();
    let (stop_first, first_stopped) = tokio::sync::oneshot::channel::<()>();
    let mut stops = vec![Some(first_stopped)];
    stops.extend((1..3).map(|_| None));
    let tasks: Vec<_> = relays
        .iter()
        .zip(stops)
        .map(|(relay, stop)| {
            let relay = Arc::clone(relay);
            tokio::spawn(async move {
                match stop {
                    Some(stop) => {
                        relay
                            .run(async {
                                let _ = stop.await;
                            })
                            .await
                    }
                    None => relay.run(std::future::pending()).await,
                }
            })
        })
        .collect();
    // Enqueue while they run, in many small transactions over 100 keys.
    let messages = numbered(MESSAGES, 100);
    let mut stop_first = Some(stop_first);
    for (i, chunk) in messages.chunks(100).enumerate() {
        db.enqueue("orders", chunk, true).await;
        if i == 50 {
            // Halfway, once each relay has published, the first one stops: the others take
            // its shards over.
            let owned = settled_leases(&relays).await;
            assert_eq!(owned, vec![4, 4, 4], "a fair share of the 12 shards each");
            for _ in 0..800 {
                if relays.iter().all(|r| r.stats().published > 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            let _ = stop_first.take().unwrap().send(());
        }
    }
    wait_until_relayed(&db, None).await;
    let mut tasks = tasks.into_iter();
    tasks.next().unwrap().await.unwrap().unwrap();
    assert_eq!(
        relays[0].shards_owned().await,
        0,
        "the stopped relay gave its shards back"
    );
    let per_relay: Vec<u64> = relays.iter().map(|r| r.stats().published).collect();
    let published = broker.messages("orders").len();
    println!(
        "{}: 3 relays published {per_relay:?}, {published} in all",
        db.kind()
    );
    assert!(
        per_relay.iter().all(|n| *n > 0),
        "every relay took part: {per_relay:?}"
    );
    let totals = consume_exactly_once(&db, subscriber, MESSAGES, published).await;
    assert_eq!(totals.duplicates_skipped as usize, published - MESSAGES);
    for task in tasks {
        task.abort();
    }
    Arc::into_inner(db).unwrap().drop_db().await;
}

async fn settled_leases(relays: &[Arc<Relay>]) -> Vec<usize> {
    // Leases settle within a few renewals (a third of the 900 ms lease time each).
    let mut owned = Vec::new();
    for _ in 0..40 {
        owned.clear();
        for relay in relays {
            owned.push(relay.shards_owned().await);
        }
        if owned.iter().all(|n| *n == 4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    owned
}

/// The token of an `Acquired` claim.
pub fn acquired(claim: Claim) -> ClaimToken {
    match claim {
        Claim::Acquired(token) => token,
        other => panic!("expected the claim to be acquired, got {other:?}"),
    }
}

/// The purger deletes markers past their retention and lapsed leases, in the background, and
/// leaves live ones alone.
pub async fn the_inbox_purger_deletes_expired_rows(db: Db) {
    let retention = Duration::from_millis(300);
    let (store, purger) = db.purged_inbox(retention, Duration::from_millis(50));
    let expiring: Vec<MessageId> = (0..5).map(|_| MessageId::new()).collect();
    for id in &expiring {
        let token = acquired(store.claim("g", *id, retention).await.unwrap());
        store
            .complete("g", *id, token, Completion::Handled)
            .await
            .unwrap();
    }
    let lapsing = MessageId::new();
    acquired(store.claim("g", lapsing, retention).await.unwrap());
    assert_eq!(db.inbox_rows().await, 6);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The purger counts a purge once its DELETE has returned, which may be a moment after the
    // rows are gone: wait for both.
    while db.inbox_rows().await > 0 || purger.purged() < 6 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} rows left, {} purged, {} failed purges",
            db.inbox_rows().await,
            purger.purged(),
            purger.failures()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(purger.purged() >= 6, "{} purged", purger.purged());
    assert_eq!(purger.failures(), 0);

    // A live marker (written with a day's retention) stays through several purges.
    let live = MessageId::new();
    let keeping = db.inbox();
    let token = acquired(keeping.claim("g", live, retention).await.unwrap());
    keeping
        .complete("g", live, token, Completion::Handled)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        store.claim("g", live, retention).await.unwrap(),
        Claim::AlreadyDone
    );
    assert_eq!(db.inbox_rows().await, 1);
    purger.stop();
    db.drop_db().await;
}

/// The transactional mode: the marker commits and rolls back with the business change, and
/// only the current holder's marker is accepted.
pub async fn the_marker_commits_and_rolls_back_with_the_effect(db: Db) {
    let store = db.inbox();
    let message = Message::new("x").with_header("seq", "1");
    let id = message.id();
    let claimed = |token| {
        IncomingMessage::new(message.clone(), test_origin(), false).with_claim(HeldClaim::new(
            "g".into(),
            id,
            token,
        ))
    };
    let first = acquired(store.claim("g", id, super::outbox_db::DAY).await.unwrap());
    db.apply(&claimed(first), false).await.unwrap();
    store.release("g", id, first).await.unwrap();
    let second = acquired(store.claim("g", id, super::outbox_db::DAY).await.unwrap());
    assert_eq!(db.applied().await.len(), 0, "rolled back: not done");
    let unclaimed = IncomingMessage::new(message.clone(), test_origin(), false);
    let refused = db.apply(&unclaimed, true).await.unwrap_err();
    assert!(refused.contains("carries no claim"), "{refused}");
    db.apply(&claimed(second), true).await.unwrap();
    assert_eq!(
        store.claim("g", id, super::outbox_db::DAY).await.unwrap(),
        Claim::AlreadyDone
    );
    assert_eq!(db.applied().await.len(), 1);
    db.drop_db().await;
}

/// A holder whose lease lapsed and was taken over cannot commit its marker: its transaction
/// fails, and on PostgreSQL and MySQL even a COMMIT after the refusal commits no effect.
pub async fn a_stale_holder_cannot_commit_its_marker(db: Db) {
    let store = db.inbox();
    let message = Message::new("x").with_header("seq", "7");
    let id = message.id();
    let lease = Duration::from_millis(200);
    let stale = acquired(store.claim("g", id, lease).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let holder = acquired(store.claim("g", id, lease).await.unwrap());
    let incoming = IncomingMessage::new(message, test_origin(), false).with_claim(HeldClaim::new(
        "g".into(),
        id,
        stale,
    ));
    let refused = db.commit_despite_a_refused_marker(&incoming).await;
    assert!(refused.contains("taken over"), "{refused}");
    if matches!(db.kind(), "postgres" | "mysql") {
        assert_eq!(
            db.applied().await.len(),
            0,
            "the aborted transaction committed nothing"
        );
    }
    store
        .complete("g", id, holder, Completion::Handled)
        .await
        .expect("the current holder completes");
    assert_eq!(
        store.claim("g", id, lease).await.unwrap(),
        Claim::AlreadyDone
    );
    db.drop_db().await;
}

fn test_origin() -> Origin {
    Origin {
        topic: "t".into(),
        group: "g".into(),
        partition: None,
        offset: None,
    }
}

/// A row another tool wrote with headers that do not decode (`{"a": 1}`: not a string) is
/// quarantined: marked dead with the decode error, while the rows around it, its own key's
/// included, are published in key order.
pub async fn an_undecodable_row_is_quarantined_and_the_rest_flow(db: Db) {
    let broker = MemoryBroker::new();
    let messages = numbered(30, 3);
    db.enqueue("orders", &messages[..10], true).await;
    let bad = db.insert_raw_row("orders", "k1", r#"{"a": 1}"#).await;
    db.enqueue("orders", &messages[10..], true).await;

    let relay = db.relay(Arc::new(broker.publisher()), config());
    for _ in 0..800 {
        match relay.relay_once().await {
            Ok(_) if broker.messages("orders").len() >= 30 => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            Err(e) => panic!("one undecodable row failed the whole batch: {e}"),
        }
    }
    let published = broker.messages("orders");
    let ids: Vec<MessageId> = published.iter().map(Message::id).collect();
    let expected: Vec<MessageId> = messages.iter().map(Message::id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "every good row published once");
    let applied = keyed_seqs(&published);
    assert_eq!(out_of_order_keys(&applied), Vec::<String>::new());

    let dead = db.inspector().dead(&DeadFilter::all(), 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].message_id, bad);
    assert_eq!(dead[0].key.as_deref(), Some("k1"));
    let error = dead[0].last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("headers") && error.contains("decode"),
        "a readable decode error: {error:?}"
    );
    println!("{}: quarantined with {error:?}", db.kind());
    assert_eq!(relay.stats().dead, 1);
    assert_eq!(
        db.outbox_rows().await,
        1,
        "only the quarantined row is left"
    );
    db.drop_db().await;
}

/// Relay A is aborted mid-run, as a killed sidecar would be, so it never gives its leases
/// back. Relay B, under another name, takes nothing while A's leases hold, takes every shard
/// once they lapsed, and publishes everything A left: nothing lost, each key in order (rows A
/// confirmed but had not deleted yet come again, never before an earlier row of their key).
pub async fn another_relay_takes_over_lapsed_shards(db: Db) {
    const MESSAGES: usize = 2_000;
    let broker = MemoryBroker::new();
    let publisher: Arc<dyn Publisher> = Arc::new(SlowConfirm(Arc::new(broker.publisher())));
    let lease = Duration::from_secs(3);
    let named = |name: &str| {
        RelayConfig::builder()
            .batch_size(100)
            .lease_ttl(lease)
            .poll_interval(Duration::from_millis(20))
            .name(name)
            .build()
            .unwrap()
    };
    let messages = numbered(MESSAGES, 20);
    for chunk in messages.chunks(500) {
        db.enqueue("orders", chunk, true).await;
    }
    let a = Arc::new(db.relay(Arc::clone(&publisher), named("relay-a")));
    let task = {
        let a = Arc::clone(&a);
        tokio::spawn(async move { a.run(std::future::pending()).await })
    };
    for _ in 0..2_000 {
        if broker.messages("orders").len() >= 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let left = db.outbox_rows().await;
    assert!(
        left > 0 && a.stats().published > 0,
        "A published some rows and left {left}"
    );

    let b = db.relay(Arc::clone(&publisher), named("relay-b"));
    assert_eq!(b.relay_once().await.unwrap(), 0, "A's leases still hold");
    assert_eq!(b.shards_owned().await, 0);
    let before_b = broker.messages("orders").len();
    wait_until_relayed(&db, Some(&b)).await;
    assert_eq!(b.shards_owned().await, 16, "B took every lapsed shard");
    assert!(
        b.stats().published >= u64::try_from(left).unwrap(),
        "B published what A left: {} of {left}",
        b.stats().published
    );

    let published = broker.messages("orders");
    let mut ids: Vec<MessageId> = published.iter().map(Message::id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), MESSAGES, "nothing lost");
    let applied = keyed_seqs(&published);
    assert_eq!(
        out_of_order_keys(&applied),
        Vec::<String>::new(),
        "per-key order across the takeover"
    );
    println!(
        "{}: A published {} before its abort, left {left}; B published {} ({} messages in all, {} before B)",
        db.kind(),
        a.stats().published,
        b.stats().published,
        published.len(),
        before_b
    );
    db.drop_db().await;
}

/// The sent log and the audit on this database: a relay keeping a sent log records every
/// confirmed row (and deletes entries past its retention at start); the inbox records when
/// each message was finished; an audit of the two counts applied, dead-lettered, missing and
/// unexpected messages per topic.
pub async fn the_sent_log_reconciles_with_the_inbox(db: Db) {
    use waybill_outbox::audit::{Audit, AuditWindow};

    let old_entry = match db.kind() {
        "postgres" => {
            "INSERT INTO waybill_sent (message_id, topic, position, confirmed_at) \
             VALUES (gen_random_uuid(), 'old', 'x', now() - interval '2 hours')"
        }
        "sqlite" => {
            "INSERT INTO waybill_sent (message_id, topic, position, confirmed_at_ms) \
             VALUES (randomblob(16), 'old', 'x', \
                     CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) - 7200000)"
        }
        _ => {
            "INSERT INTO waybill_sent (message_id, topic, position, confirmed_at) \
             VALUES (RANDOM_BYTES(16), 'old', 'x', UTC_TIMESTAMP(6) - INTERVAL 2 HOUR)"
        }
    };
    db.execute(old_entry).await;
    let orders = numbered(50, 5);
    let payments = numbered(5, 5);
    db.enqueue("orders", &orders, true).await;
    db.enqueue("payments", &payments, true).await;
    let broker = MemoryBroker::new();
    let config = RelayConfig::builder()
        .batch_size(20)
        .poll_interval(Duration::from_millis(20))
        .sent_log_retention(Some(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let relay = db.relay(Arc::new(broker.publisher()), config);
    // The relay's own loop, which also cleans up, until everything is published.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = async {
        for _ in 0..800 {
            if broker.messages("orders").len() == 50 && broker.messages("payments").len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = stop.send(());
    };
    let (ran, ()) = tokio::join!(
        relay.run(async {
            let _ = stopped.await;
        }),
        watch
    );
    ran.unwrap();
    assert_eq!(broker.messages("orders").len(), 50);
    assert_eq!(db.count("SELECT COUNT(*) FROM waybill_sent").await, 55);
    assert_eq!(
        db.count("SELECT COUNT(*) FROM waybill_sent WHERE topic = 'old'")
            .await,
        0,
        "an entry past the retention is deleted"
    );

    // Group g finishes 48 orders, dead-letters one, leaves one claimed but unfinished, and
    // applies one message nobody sent.
    let store = db.inbox();
    let finish = |id: MessageId, completion: Completion| {
        let store = store.clone();
        async move {
            let token = acquired(store.claim("g", id, super::outbox_db::DAY).await.unwrap());
            store.complete("g", id, token, completion).await.unwrap();
        }
    };
    for message in &orders[..48] {
        finish(message.id(), Completion::Handled).await;
    }
    finish(orders[48].id(), Completion::DeadLettered).await;
    acquired(
        store
            .claim("g", orders[49].id(), super::outbox_db::DAY)
            .await
            .unwrap(),
    );
    let stray = MessageId::new();
    finish(stray, Completion::Handled).await;

    let audit = Audit::new(db.audit_source(), db.audit_source());
    let now = SystemTime::now();
    let window = AuditWindow::new(
        now - Duration::from_secs(600),
        now + Duration::from_secs(60),
        Duration::ZERO,
    )
    .unwrap();
    let report = audit
        .run(
            &["orders".to_owned(), "payments".to_owned()],
            &["g".to_owned()],
            &window,
        )
        .await
        .unwrap();
    let group = &report.groups[0];
    let orders_audit = group.topics.iter().find(|t| t.topic == "orders").unwrap();
    assert_eq!(
        (
            orders_audit.sent,
            orders_audit.applied,
            orders_audit.dead_lettered,
            orders_audit.missing
        ),
        (50, 48, 1, 1),
        "{group:?}"
    );
    assert_eq!(orders_audit.missing_samples, vec![orders[49].id()]);
    let payments_audit = group.topics.iter().find(|t| t.topic == "payments").unwrap();
    assert_eq!(payments_audit.missing, 5, "nobody applied the payments");
    assert_eq!(group.unexpected, 1);
    assert_eq!(group.unexpected_samples, vec![stray]);

    // A window before anything was sent holds nothing.
    let before = AuditWindow::new(
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
        Duration::ZERO,
    )
    .unwrap();
    let empty = audit
        .run(&["orders".to_owned()], &["g".to_owned()], &before)
        .await
        .unwrap();
    assert!(empty.is_empty(), "{empty:?}");
    db.drop_db().await;
}
