//! Per-key order across a consumer-group rebalance: a first consumer runs alone, a second one
//! joins mid-run, then the first leaves cleanly, while a producer publishes all along. Every
//! confirmed message must have exactly one effect (PostgreSQL inbox and effects table); the
//! order promise depends on the broker ([`OrderPromise`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use waybill_core::testkit::Ledger;
use waybill_core::{Publisher, Subscriber};

use super::effects::{self, EffectsDb};
use super::workload::{poll_until, unchanged, wait_for, Workload};

/// What the broker promises about per-key order while the group changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderPromise {
    /// Throughout (Kafka): a partition has one owner at a time, the new owner starts at the
    /// committed offset, and the inbox claim holds it back while the old owner still handles
    /// a message, so each key's effects follow publish order across the rebalance.
    Throughout,
    /// Once one consumer is left (RabbitMQ's competing consumers of one queue; RocketMQ's
    /// Rust broker, which tells no member about a rebalance so members overlap until the next
    /// periodic one): while two consumers share the work a key's messages may be handled out
    /// of order (never lost or applied twice); messages published after the first consumer
    /// left are handled by the second alone, in order.
    OnceAlone,
}

/// The run's broker side.
pub struct Group<S> {
    /// The topic (created).
    pub topic: String,
    /// The group.
    pub group: String,
    /// A publisher.
    pub publisher: Arc<dyn Publisher>,
    /// Opens a subscriber of the group.
    pub subscribe: S,
    /// The partitions or queues a consumer that is alone must end up reading (their numbers
    /// as the deliveries' origin gives them; empty where deliveries carry none).
    pub partitions: Vec<i32>,
    /// The promise to check.
    pub promise: OrderPromise,
}

/// Keys per round.
const KEYS: usize = 40;

/// Runs the scenario and asserts its outcome.
pub async fn run<S, F>(group: Group<S>)
where
    S: Fn() -> F,
    F: Future<Output = Box<dyn Subscriber>>,
{
    let owned = EffectsDb::create().await;
    let db = &owned;
    let first =
        effects::start_consumer(db.url(), "first", &group.group, (group.subscribe)().await).await;
    let ledger = Arc::new(Ledger::new());
    let workload = Workload::start(
        Arc::clone(&group.publisher),
        &group.topic,
        KEYS,
        120..500,
        Duration::from_millis(20),
        Arc::clone(&ledger),
        unchanged,
    );
    wait_for(
        "the first consumer applies effects",
        Duration::from_secs(60),
        || async move { db.count_by("first").await >= 200 },
    )
    .await;
    let second =
        effects::start_consumer(db.url(), "second", &group.group, (group.subscribe)().await).await;
    let joined = wait_for(
        "the second consumer gets a share",
        Duration::from_secs(60),
        || async move { db.count_by("second").await >= 200 },
    )
    .await;
    let first_totals = first
        .shutdown()
        .await
        .expect("the first consumer leaves cleanly");
    let alone_from = workload.rounds() as i64 + 1;
    let mark = db.last_n().await;
    let partitions = &group.partitions;
    let took_over = wait_for(
        "the remaining consumer reads every partition",
        Duration::from_secs(60),
        || async move {
            let read = db.partitions_of("second", mark).await;
            partitions.iter().all(|p| read.contains(p))
                && db.count_by("second").await > 0
                && workload_round_reached(db, alone_from).await
        },
    )
    .await;
    let published = workload.finish().await;
    let total = published.messages as i64;
    let applied = poll_until(Duration::from_secs(90), || async move {
        db.count().await >= total
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second_totals = second.shutdown().await.expect("the second consumer stops");

    let report = db.report(&ledger).await;
    let late_out_of_order = db.keys_out_of_order_from(alone_from).await;
    println!(
        "{} messages, all applied after {applied:?}; the second consumer got a share {joined:?} after joining and every \
         partition {took_over:?} after the first left (round {alone_from}); effects: first {}, \
         second {}; keys out of order overall {}, from round {alone_from} on {}; first \
         {first_totals:?}; second {second_totals:?}",
        published.messages,
        db.count_by("first").await,
        db.count_by("second").await,
        report.order_violations.len(),
        late_out_of_order.len(),
    );
    effects::assert_applied_once(&report, published.messages);
    assert_eq!(
        late_out_of_order,
        Vec::<String>::new(),
        "per-key order once one consumer is left"
    );
    if group.promise == OrderPromise::Throughout {
        assert!(
            report.order_violations.is_empty(),
            "per-key order across the rebalance: {:?}",
            report.inversion_samples
        );
    }
    let _ = group.publisher.close().await;
    owned.drop_db().await;
}

/// Whether an effect of round `round` or later was applied.
async fn workload_round_reached(db: &EffectsDb, round: i64) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT exists(SELECT 1 FROM effects WHERE seq >= $1)")
        .bind(round)
        .fetch_one(db.pool())
        .await
        .expect("read effects")
}
