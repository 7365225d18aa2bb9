//! A consumer process SIGKILLed in the middle of a run and started again: one consumer process
//! consumes a group while a producer publishes; it is SIGKILLed, and a new process started in
//! its place must get the work back. At the end every confirmed message has exactly one effect
//! in PostgreSQL (effect and inbox marker in one transaction) and each key's effects are in
//! publish order.

use std::sync::Arc;
use std::time::Duration;

use waybill_core::testkit::Ledger;
use waybill_core::Publisher;

use super::consumer_process::{ConsumerProcess, ConsumerSpec};
use super::effects::EffectsDb;
use super::workload::{poll_until, unchanged, wait_for, Workload};

/// Keys per round.
const KEYS: usize = 40;

/// A kill run's broker side.
pub struct KillRun {
    /// The exact name of the test, which its consumer processes run in the consumer role.
    pub test: &'static str,
    /// The topic (created, and bound where the broker needs it before publishing).
    pub topic: String,
    /// The group.
    pub group: String,
    /// A publisher.
    pub publisher: Arc<dyn Publisher>,
}

/// Runs the scenario and asserts its outcome.
pub async fn run(run: KillRun) {
    let owned = EffectsDb::create().await;
    let db = &owned;
    let spec = ConsumerSpec {
        topic: run.topic.clone(),
        group: run.group.clone(),
        database_url: db.url().to_owned(),
    };
    let ledger = Arc::new(Ledger::new());
    let workload = Workload::start(
        Arc::clone(&run.publisher),
        &run.topic,
        KEYS,
        100..400,
        Duration::from_millis(20),
        Arc::clone(&ledger),
        unchanged,
    );
    let victim = ConsumerProcess::spawn(run.test, "a", &spec);
    wait_for(
        "the consumer process applies effects",
        Duration::from_secs(60),
        || async move { db.count_by("a").await >= 100 },
    )
    .await;
    victim.sigkill().await;
    // A COMMIT the process sent just before the kill still completes on the server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let applied_by_victim = db.count_by("a").await;
    let replacement = ConsumerProcess::spawn(run.test, "a2", &spec);
    let restarted = wait_for(
        "the restarted consumer process applies effects",
        Duration::from_secs(60),
        || async move { db.count_by("a2").await >= 100 },
    )
    .await;
    let published = workload.finish().await;
    let total = published.messages as i64;
    let applied = poll_until(Duration::from_secs(60), || async move {
        db.count().await >= total
    })
    .await;
    // Let late copies arrive before stopping.
    tokio::time::sleep(Duration::from_secs(1)).await;
    replacement.stop().await;
    let report = db.report(&ledger).await;
    println!(
        "{} messages in {} rounds ({} publish failures); effects: a {applied_by_victim} \
         (SIGKILLed), a2 {}; the restarted process applied effects after {restarted:?}, all \
         after {applied:?}; lost {}, applied twice {}, keys out of order {}",
        published.messages,
        published.rounds,
        published.failures,
        db.count_by("a2").await,
        report.lost.len(),
        report.duplicated.len(),
        report.order_violations.len(),
    );
    assert_eq!(
        db.count_by("a").await,
        applied_by_victim,
        "the killed consumer applied nothing after its kill"
    );
    assert!(
        report.is_clean(),
        "lost {}, applied twice {}, unexpected {}, keys out of order {:?}",
        report.lost.len(),
        report.duplicated.len(),
        report.unexpected.len(),
        report.inversion_samples
    );
    assert_eq!(report.delivered, published.messages);
    let _ = run.publisher.close().await;
    owned.drop_db().await;
}
