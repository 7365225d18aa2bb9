//! The conformance suite against the in-memory broker.

use waybill_core::testkit::conformance::{run, MemoryTarget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_broker_passes_the_conformance_suite() {
    let report = run(&MemoryTarget::new()).await;
    report.assert_passed();
    assert!(
        report.unsupported().is_empty(),
        "the in-memory broker declares every capability: {:?}",
        report.unsupported()
    );
    assert!(report.passed().len() >= 12, "{report}");
}
