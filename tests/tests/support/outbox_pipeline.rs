//! The relay's pipelined path, run on every database: a key's rows of a batch go to the
//! broker in one call, and a failure in the middle resends the key from the failed row on.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use waybill_core::PublishFault::{Ambiguous, NotSent};
use waybill_core::{
    BrokerError, MemoryBroker, Message, MessageId, PublishError, PublishFault, Publisher, Receipt,
};
use waybill_outbox::RelayConfig;

use super::outbox_cases::{drain_until, wait_until_relayed};
use super::outbox_db::{keyed_seqs, numbered, out_of_order_keys, seqs_of_key, Db};

/// 200 rows over 10 keys fit one batch.
fn config() -> RelayConfig {
    RelayConfig::builder()
        .batch_size(1_000)
        .max_attempts(5)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .lease_ttl(Duration::from_millis(900))
        .build()
        .unwrap()
}

/// Forwards to the in-memory broker's publisher, its key-order promise included, counting
/// `publish_batch` calls and lingering `linger` before returning each batch's results. When
/// `misreport` names a message, its first confirm is reported as lost although the broker
/// stored it (and the key's later messages): a backend breaking its promise.
struct TestPublisher {
    inner: Arc<dyn Publisher>,
    calls: AtomicUsize,
    linger: Duration,
    misreport: Mutex<Option<MessageId>>,
}

impl TestPublisher {
    fn new(broker: &MemoryBroker, linger: Duration, misreport: Option<MessageId>) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(broker.publisher()),
            calls: AtomicUsize::new(0),
            linger,
            misreport: Mutex::new(misreport),
        })
    }
}

#[async_trait]
impl Publisher for TestPublisher {
    async fn publish(&self, topic: &str, message: Message) -> Result<Receipt, PublishError> {
        self.inner.publish(topic, message).await
    }
    async fn publish_batch(
        &self,
        topic: &str,
        messages: Vec<Message>,
    ) -> Vec<Result<Receipt, PublishError>> {
        self.calls.fetch_add(1, SeqCst);
        let misreport = *self.misreport.lock().unwrap();
        let at = misreport.and_then(|id| messages.iter().position(|m| m.id() == id));
        let copy = at.map(|at| messages[at].clone());
        let mut results = self.inner.publish_batch(topic, messages).await;
        if let (Some(at), Some(message)) = (at, copy) {
            *self.misreport.lock().unwrap() = None;
            results[at] = Err(PublishError::ambiguous(topic, message, "confirm lost"));
        }
        tokio::time::sleep(self.linger).await;
        results
    }
    fn keeps_key_order_in_batch(&self) -> bool {
        self.inner.keeps_key_order_in_batch()
    }
    async fn close(&self) -> Result<(), BrokerError> {
        self.inner.close().await
    }
}

/// Injects `faults` into `broker`'s publishes, each once; returns the ids that fired.
fn fault_once(
    broker: &MemoryBroker,
    faults: Vec<(MessageId, PublishFault)>,
) -> Arc<Mutex<HashSet<MessageId>>> {
    let fired: Arc<Mutex<HashSet<MessageId>>> = Arc::default();
    broker.faults().on_publish({
        let fired = Arc::clone(&fired);
        move |ctx| {
            let id = ctx.message.id();
            let (_, fault) = faults.iter().find(|(faulty, _)| *faulty == id)?;
            fired.lock().unwrap().insert(id).then_some(*fault)
        }
    });
    fired
}

/// Two confirms lost in the middle of a full pipeline: one of a message the broker did not
/// store, one of a message it stored. Each key resends from its failed row on, in order, and
/// every other row goes out in the same call as the rest of the batch.
pub async fn a_failure_mid_pipeline_resends_its_key_from_the_failed_row_in_order(db: Db) {
    let broker = MemoryBroker::new();
    let messages = numbered(200, 10);
    // Rows are numbered i, key k(i % 10): k3's fifth row and k5's third row.
    let fired = fault_once(
        &broker,
        vec![
            (messages[3 + 10 * 4].id(), Ambiguous { stored: false }),
            (messages[5 + 10 * 2].id(), Ambiguous { stored: true }),
        ],
    );
    db.enqueue("orders", &messages, true).await;
    let publisher = TestPublisher::new(&broker, Duration::ZERO, None);
    assert!(publisher.keeps_key_order_in_batch());
    let relay = db.relay(publisher.clone(), config());
    drain_until(&relay, || broker.messages("orders").len() >= 201).await;
    wait_until_relayed(&db, Some(&relay)).await;

    assert_eq!(fired.lock().unwrap().len(), 2, "both faults happened");
    let k3: Vec<i64> = (0..20).map(|i| 3 + 10 * i).collect();
    assert_eq!(
        seqs_of_key(&broker.messages("orders"), "k3"),
        k3,
        "k3: the rows after the lost one waited for it and followed it in order"
    );
    let mut k5: Vec<i64> = (0..20).map(|i| 5 + 10 * i).collect();
    k5.insert(3, 25);
    assert_eq!(
        seqs_of_key(&broker.messages("orders"), "k5"),
        k5,
        "k5: the stored row was sent again (a copy the inbox drops), then the rest in order"
    );
    let published = broker.messages("orders");
    assert_eq!(published.len(), 201, "every row once, the stored row twice");
    assert_eq!(
        out_of_order_keys(&keyed_seqs(&published)),
        Vec::<String>::new()
    );
    let stats = relay.stats();
    assert_eq!(stats.failed, 2, "{stats:?}");
    assert_eq!(stats.published, 200, "{stats:?}");
    assert_eq!(stats.order_breaches, 0, "{stats:?}");
    let calls = publisher.calls.load(SeqCst);
    assert!(
        calls <= 4,
        "{calls} publish_batch calls: a key's rows were not pipelined (one row per key at a time \
         takes at least 20)"
    );
    db.drop_db().await;
}

/// A backend that confirms a key's later rows after an earlier one failed breaks the promise
/// the pipeline relies on: the relay deletes the confirmed rows (they are stored), resends the
/// failed one, and counts each confirm after the failure as an order breach.
pub async fn a_confirm_after_its_keys_failure_is_counted_as_an_order_breach(db: Db) {
    let broker = MemoryBroker::new();
    let messages = numbered(30, 3);
    db.enqueue("orders", &messages, true).await;
    // k1 holds rows 1, 4, 7, ..., 28: row 4 fails, rows 7 to 28 (eight) are confirmed after it.
    let publisher = TestPublisher::new(&broker, Duration::ZERO, Some(messages[4].id()));
    let relay = db.relay(publisher, config());
    drain_until(&relay, || broker.messages("orders").len() >= 31).await;
    wait_until_relayed(&db, Some(&relay)).await;
    let stats = relay.stats();
    assert_eq!(stats.order_breaches, 8, "{stats:?}");
    assert_eq!(stats.failed, 1, "{stats:?}");
    assert_eq!(stats.published, 30, "{stats:?}");
    assert_eq!(
        seqs_of_key(&broker.messages("orders"), "k1"),
        [1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 4],
        "the failed row, stored, was sent again after its key's later rows"
    );
    db.drop_db().await;
}

/// A running relay takes its next batch while the current one awaits its confirms (each
/// batch's confirms linger 100 ms here, so the next batch is always taken before the current
/// one's failures are parked). A key that fails in one batch must not go on with its rows of
/// the batch taken meanwhile: they wait behind the failed row.
pub async fn a_key_that_fails_while_its_next_batch_is_taken_keeps_its_order(db: Db) {
    let broker = MemoryBroker::new();
    // 600 rows over 10 keys, batches of 50: every batch holds 5 rows of each key.
    let messages = numbered(600, 10);
    let fired = fault_once(
        &broker,
        vec![
            (messages[3 + 10 * 7].id(), Ambiguous { stored: false }),
            (messages[7 + 10 * 31].id(), NotSent),
            (messages[9 + 10 * 52].id(), Ambiguous { stored: false }),
        ],
    );
    db.enqueue("orders", &messages, true).await;
    let publisher = TestPublisher::new(&broker, Duration::from_millis(100), None);
    let config = RelayConfig::builder()
        .batch_size(50)
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .lease_ttl(Duration::from_millis(900))
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let running = db.relay(publisher, config).spawn();
    wait_until_relayed(&db, None).await;
    let stats = running.shutdown().await.unwrap();

    assert_eq!(fired.lock().unwrap().len(), 3, "every fault happened");
    let published = broker.messages("orders");
    assert_eq!(
        published.len(),
        600,
        "every row once (no fault stored a row)"
    );
    assert_eq!(
        out_of_order_keys(&keyed_seqs(&published)),
        Vec::<String>::new(),
        "no key overtook its failed row"
    );
    assert_eq!(stats.failed, 3, "{stats:?}");
    assert_eq!(stats.order_breaches, 0, "{stats:?}");
    db.drop_db().await;
}
