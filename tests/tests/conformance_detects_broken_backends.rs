//! The conformance suite must fail a backend that breaks the contract while claiming success:
//! one that loses confirmed messages, one that duplicates deliveries, one that reorders a
//! key's messages, and one that gives every member of a group every message.

mod broken_backends;

use broken_backends::{Breakage, BrokenTarget};
use waybill_core::testkit::conformance::{run, CaseOutcome};

/// How a case must fail to count as catching a breakage.
#[derive(Clone, Copy, PartialEq)]
enum Failure {
    /// Any failure, running out of time included (a lost message shows as one that never
    /// arrives).
    Any,
    /// A failed assertion: a case that merely ran out of time may have been slow.
    Assertion,
}

/// Runs the suite against the in-memory broker broken as `breakage` says and asserts that each
/// of `cases` failed as `failure` says.
async fn assert_caught(breakage: Breakage, failure: Failure, cases: &[&str]) {
    let report = run(&BrokenTarget::new(breakage)).await;
    println!("{report}");
    for case in cases {
        let outcome = report
            .cases
            .iter()
            .find(|c| c.name == *case)
            .map(|c| &c.outcome)
            .unwrap_or_else(|| panic!("no case {case} in the suite"));
        match outcome {
            CaseOutcome::Failed(why) => assert!(
                failure == Failure::Any || !why.starts_with("timed out after"),
                "{case} only timed out against a {breakage:?} backend:\n{report}"
            ),
            _ => panic!("{case} should fail against a {breakage:?} backend:\n{report}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_loses_confirmed_messages_fails_the_suite() {
    assert_caught(
        Breakage::Lossy,
        Failure::Any,
        &[
            "id_key_payload_and_headers_round_trip",
            "publish_batch_confirms_each_message",
            "many_publishers_and_subscribers_lose_nothing",
            "processor_keeps_per_key_order_under_retries",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_duplicates_deliveries_fails_the_suite() {
    assert_caught(
        Breakage::Duplicating,
        Failure::Assertion,
        &[
            "id_key_payload_and_headers_round_trip",
            "publish_batch_confirms_each_message",
            "competing_consumers_lose_nothing",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_reorders_a_keys_messages_fails_the_suite() {
    assert_caught(
        Breakage::Reordering,
        Failure::Assertion,
        &["processor_keeps_per_key_order_under_retries"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_gives_every_member_every_message_fails_the_suite() {
    assert_caught(
        Breakage::Broadcasting,
        Failure::Assertion,
        &[
            "competing_consumers_lose_nothing",
            "many_publishers_and_subscribers_lose_nothing",
        ],
    )
    .await;
}
