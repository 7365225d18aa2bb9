//! The conformance suite against a real RabbitMQ server.

mod support;

use support::rabbitmq::{require_broker, target};
use waybill_core::testkit::conformance::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_passes_the_conformance_suite() {
    require_broker().await;
    let target = target();
    let report = run(&target).await;
    target.cleanup().await;
    report.assert_passed();
    assert!(report.unsupported().is_empty(), "{report}");
}
