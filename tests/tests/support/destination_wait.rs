//! The relay and a destination that does not exist yet: its rows wait, their keys held,
//! nothing goes dead, and once the destination appears every row is delivered in key order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use waybill_core::{Publisher, Subscriber};
use waybill_outbox::{Relay, RelayConfig};

use super::outbox_db::{numbered, out_of_order_keys, Db};

/// Rows enqueued, over [`KEYS`] keys.
pub const ROWS: usize = 40;
/// Keys of the rows.
pub const KEYS: usize = 4;

/// The attempt cap of the other relay tests (3), which a missing destination must not use
/// up, and a short backoff so the relay notices the destination soon after it appears.
pub fn config() -> RelayConfig {
    RelayConfig::builder()
        .batch_size(100)
        .max_attempts(3)
        .backoff(Duration::from_millis(50), Duration::from_millis(500))
        .poll_interval(Duration::from_millis(100))
        .build()
        .unwrap()
}

/// A relay running in the background.
pub struct Running {
    relay: Arc<Relay>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Running {
    /// The relay.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Stops the relay and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// Enqueues [`ROWS`] numbered rows for `topic`, which does not exist yet, and relays them
/// through `publisher` until every key failed more often than the attempt cap allows;
/// asserts that no row went dead and every row is still there. Returns the running relay.
pub async fn relay_while_missing(db: &Db, topic: &str, publisher: Arc<dyn Publisher>) -> Running {
    db.enqueue(topic, &numbered(ROWS, KEYS), true).await;
    let relay = Arc::new(db.relay(publisher, config()));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            relay
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        })
    };
    let enough = (KEYS * 4) as u64;
    let started = Instant::now();
    while relay.stats().failed < enough && relay.stats().dead == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the relay did not try the missing destination {enough} times in 90 s: {:?}",
            relay.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let backlog = db.inspector().backlog().await.unwrap();
    println!(
        "after {:?} with {topic} missing: {:?}, {backlog:?}",
        started.elapsed(),
        relay.stats()
    );
    assert_eq!(
        backlog.dead,
        0,
        "rows went dead while their destination was not there yet: {:?}",
        relay.stats()
    );
    assert_eq!(backlog.pending, ROWS as i64, "every row waits");
    Running { relay, stop, task }
}

/// Receives until [`ROWS`] distinct messages arrived (acking each), at most 90 s; asserts
/// each key's rows came in order.
pub async fn receive_all_in_order(subscriber: &mut dyn Subscriber) {
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut applied = Vec::new();
    let started = Instant::now();
    while seen.len() < ROWS {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "only {} of {ROWS} rows arrived in 90 s",
            seen.len()
        );
        let Ok(received) = tokio::time::timeout(Duration::from_secs(5), subscriber.receive()).await
        else {
            continue;
        };
        let delivery = received.unwrap().expect("the subscription is open");
        let message = delivery.message().message().clone();
        delivery.ack().await.unwrap();
        if seen.insert(message.id().to_string(), ()).is_none() {
            let seq: i64 = message.headers().get("seq").unwrap().parse().unwrap();
            applied.push((message.key().map(str::to_owned), seq));
        }
    }
    assert_eq!(out_of_order_keys(&applied), Vec::<String>::new());
}

/// Waits until the outbox is empty and asserts that no row went dead; stops the relay.
pub async fn finish(db: &Db, running: Running) {
    super::outbox_cases::wait_until_relayed(db, None).await;
    let backlog = db.inspector().backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.dead), (0, 0));
    assert_eq!(running.relay().stats().published, ROWS as u64);
    running.stop().await;
}

/// A destination that never appears: with `destination_wait` 3 s, the rows of a key wait (not
/// dead, the key held, other keys flowing, more failures than `max_attempts`), the wait
/// survives a relay restart (it counts from the first failure, stored with the row), and then
/// each row goes dead in turn with an error saying for how long its destination was missing.
/// An oversized message, truly permanent, is still dead at its first attempt.
pub async fn a_destination_that_never_appears_goes_dead_after_the_wait(db: Db) {
    use waybill_core::{MemoryBroker, Message};
    use waybill_outbox::DeadFilter;

    let broker = MemoryBroker::builder()
        .auto_create_topics(false)
        .max_message_bytes(1000)
        .build()
        .unwrap();
    broker.create_topic("orders").unwrap();
    let waiting = Message::new("first").with_key("a");
    let behind = Message::new("second").with_key("a");
    let other = Message::new("other key").with_key("b");
    db.enqueue("nowhere", &[waiting.clone(), behind.clone()], true)
        .await;
    db.enqueue("orders", std::slice::from_ref(&other), true)
        .await;
    let config = || {
        RelayConfig::builder()
            .name("destination-wait")
            .max_attempts(3)
            .backoff(Duration::from_millis(50), Duration::from_millis(200))
            .lease_ttl(Duration::from_millis(900))
            .destination_wait(Duration::from_secs(3))
            .build()
            .unwrap()
    };
    let first = db.relay(Arc::new(broker.publisher()), config());
    // Taken before the first publish, so the first failure comes after it; `failed_by` just
    // after it (the relay may take a while to publish at all: on MySQL it first waits for the
    // commit-order horizon, longer while other tests keep transactions open).
    let failed_at = Instant::now();
    super::outbox_cases::drain_until(&first, || broker.messages("orders").len() == 1).await;
    let failed_by = Instant::now();
    assert!(
        first.stats().destination_missing >= 1,
        "{:?}",
        first.stats()
    );
    // More failures than max_attempts (3), well within the wait.
    while first.stats().destination_missing <= 3 && failed_by.elapsed() < Duration::from_secs(2) {
        super::outbox_cases::drain(&first).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = first.stats();
    assert_eq!(stats.dead, 0, "no row dead within the wait: {stats:?}");
    assert!(
        stats.destination_missing > 3,
        "tried more often than max_attempts without going dead: {stats:?}"
    );
    assert_eq!(broker.messages("orders").len(), 1, "the other key flowed");
    drop(first);

    // A restarted relay (same name, so it keeps the shards) goes on with the same wait.
    let second = db.relay(Arc::new(broker.publisher()), config());
    super::outbox_cases::drain_until(&second, || second.stats().dead == 1).await;
    let (dead_after, at_most) = (failed_at.elapsed(), failed_by.elapsed());
    assert!(
        dead_after >= Duration::from_secs(3) && at_most < Duration::from_millis(4500),
        "dead 3 s after the first failure, restart or not: {dead_after:?} ({at_most:?} after \
         the first publish)"
    );
    let dead = db.inspector().dead(&DeadFilter::all(), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].message_id,
        waiting.id(),
        "the key's first row first"
    );
    assert_eq!(dead[0].attempts, 0, "waiting used up no attempts");
    let error = dead[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("\"nowhere\" was missing for 3 s"),
        "says what was missing and for how long: {error}"
    );
    // Its key moved on: the row behind it now waits in turn, and goes dead too.
    super::outbox_cases::drain_until(&second, || second.stats().dead == 2).await;
    let backlog = db.inspector().backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.dead), (0, 2));
    assert!(broker.messages("nowhere").is_empty());

    // A truly permanent failure does not wait: an oversized message is dead on its first try.
    let big = Message::new(vec![7u8; 2000]).with_key("big");
    db.enqueue("orders", std::slice::from_ref(&big), true).await;
    let failed_before = second.stats().failed;
    super::outbox_cases::drain_until(&second, || second.stats().dead == 3).await;
    assert_eq!(second.stats().failed, failed_before + 1, "one try, no wait");
    let dead = db
        .inspector()
        .dead(&DeadFilter::ids([big.id()]), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "dead at the first attempt");
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("exceeds the limit"),
        "{:?}",
        dead[0].last_error
    );
    db.drop_db().await;
}
