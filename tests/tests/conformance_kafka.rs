//! The conformance suite against a real Kafka-protocol broker (tansu locally, or the cluster
//! at WAYBILL_KAFKA_BROKERS).

mod support;

use support::kafka::{require_broker, target};
use waybill_core::testkit::conformance::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_passes_the_conformance_suite() {
    require_broker().await;
    let target = target();
    let report = run(&target).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.unsupported().is_empty(), "{report}");
}
