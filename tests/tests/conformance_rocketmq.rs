//! The conformance suite against a real RocketMQ name server and broker (the Rust servers
//! from crates.io locally, or the cluster at WAYBILL_ROCKETMQ_NAMESRV).

mod support;

use support::rocketmq::{require_broker, target};
use waybill_core::testkit::conformance::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_passes_the_conformance_suite() {
    require_broker().await.close().await;
    let target = target();
    let report = run(&target).await;
    println!("{report}");
    report.assert_passed();
    assert!(report.unsupported().is_empty(), "{report}");
}
