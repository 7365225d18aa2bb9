//! The conformance suite against a real RabbitMQ server, over plain groups (one work queue)
//! and over partitioned groups (keys hashed onto single-active-consumer queues).

mod support;

use support::rabbitmq::{require_broker, target};
use tokio::sync::Mutex;
use waybill_core::testkit::conformance::run;
use waybill_rabbitmq::RabbitTarget;

/// The two runs take turns: each declares dozens of quorum queues, and a 2-core machine's
/// broker answers slowly when both do at once.
static ONE_SUITE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

async fn passes(target: RabbitTarget) {
    let _turn = ONE_SUITE_AT_A_TIME.lock().await;
    require_broker().await;
    let report = run(&target).await;
    target.cleanup().await;
    report.assert_passed();
    assert!(report.unsupported().is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_passes_the_conformance_suite() {
    passes(target()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_partitioned_groups_pass_the_conformance_suite() {
    passes(target().partitioned(4)).await;
}
